/**
 * Worker shapes beyond the default: an ingest-only worker (--drainers 0) takes
 * sluice_ingest jobs but never drain jobs and holds no drain connection; a
 * worker with many job slots on a small pool (--pool-size) stays inside a plan
 * counted from the pool, not from its concurrency.
 */
import { describe, expect, it } from 'vitest';
import { ConnectionSampler, workerConnections } from '../src/db/connection-sampler.js';
import { createTestDatabase } from './helpers/database.js';
import { distinctIds, durableIds, makeEvents, stagedCount } from './helpers/events.js';
import { waitFor } from './helpers/wait.js';
import { startWorker } from './helpers/worker.js';

const db = await createTestDatabase('worker_roles');

async function enqueue(stream: string, events: readonly unknown[], perJob: number): Promise<void> {
  for (let i = 0; i < events.length; i += perJob) {
    await db.query(`SELECT graphile_worker.add_job('sluice_ingest', $1::json)`, [JSON.stringify({ stream, events: events.slice(i, i + perJob) })]);
  }
}

async function pendingJobs(task: string): Promise<number> {
  const { rows } = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM graphile_worker.jobs WHERE task_identifier = $1`, [task]);
  return rows[0]?.n ?? 0;
}

describe('worker roles', () => {
  it('an ingest-only worker (--drainers 0) stages events but leaves draining to others', async () => {
    await db.query(`SELECT sluice.create_stream('ingest_only')`);
    const ingestOnly = await startWorker(db, { drainers: 0, concurrency: 4 });
    expect(ingestOnly.plan).toMatchObject({ drainers: 0, total: 5 + 1 });
    const { events, unique } = makeEvents(600, 21);
    await enqueue('ingest_only', events, 50);
    await waitFor(() => pendingJobs('sluice_ingest'), (n) => n === 0, { what: 'ingest jobs done' });

    // Staged, kicked for drainers, but nobody here drains.
    expect(await stagedCount(db, 'ingest_only')).toBe(events.length);
    expect(await pendingJobs('sluice_drain')).toBeGreaterThan(0);
    const roles = await workerConnections(db.pool, ingestOnly.id);
    expect(roles.length).toBeGreaterThan(0);
    expect(roles.filter((name) => /\/drain-\d+$/.test(name))).toEqual([]);
    expect((await durableIds(db, 'ingest_only')).rows).toBe(0);

    // A worker with drainers picks up the queued drain jobs.
    await startWorker(db, { drainers: 1, concurrency: 2 });
    await waitFor(() => stagedCount(db, 'ingest_only'), (n) => n === 0, { what: 'staging drained by the second worker' });
    const durable = await durableIds(db, 'ingest_only');
    expect(durable.rows).toBe(unique);
    expect(durable.ids).toEqual(distinctIds(events));
  });

  it('many job slots on a small pool: the plan counts the pool, and the worker stays inside it', async () => {
    await db.query(`SELECT sluice.create_stream('small_pool')`);
    const worker = await startWorker(db, { concurrency: 24, poolSize: 4, drainers: 1, maxConnections: 6 });
    expect(worker.plan).toEqual({ concurrency: 24, pool: 4, flushers: 1, drainers: 1, total: 6 });
    const sampler = new ConnectionSampler(db.pool, worker.id, 20);
    const { events, unique } = makeEvents(1_500, 22);
    await enqueue('small_pool', events, 5);
    await waitFor(
      async () => ({ jobs: await pendingJobs('sluice_ingest'), staged: await stagedCount(db, 'small_pool'), durable: (await durableIds(db, 'small_pool')).rows }),
      (s) => s.jobs === 0 && s.staged === 0 && s.durable === unique,
      { what: 'every event durable', timeoutMs: 60_000 },
    );
    const { peak } = await sampler.stop();
    expect(peak).toBeGreaterThan(0);
    expect(peak).toBeLessThanOrEqual(6);
    expect((await durableIds(db, 'small_pool')).ids).toEqual(distinctIds(events));
  });
});
