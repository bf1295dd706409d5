/**
 * SIGTERM under load loses nothing: a real `sluice worker` process stopped
 * with SIGTERM while a client and SQL producers are busy exits 0, says it
 * stopped and deregisters; producers keep being acknowledged without it; a
 * new worker then finishes the backlog, and every acknowledged event (and
 * every event of every enqueued add_job) is in the durable table exactly once.
 */
import { setTimeout as delay } from 'node:timers/promises';
import { afterAll, describe, expect, it } from 'vitest';
import { createIngestor } from '../src/ingest/create-ingestor.js';
import { spawnCli, type CliResult, type SpawnedCli } from './helpers/cli.js';
import { createTestDatabase } from './helpers/database.js';
import { makeEvents, stagedCount } from './helpers/events.js';
import { waitFor } from './helpers/wait.js';
import { startWorker } from './helpers/worker.js';

const db = await createTestDatabase('sigterm');

const SHUTDOWN_TIMEOUT_MS = 10_000;
const FIRST_WORKER = 'sigterm-first';

let child: SpawnedCli | undefined;
afterAll(() => {
  if (child && child.child.exitCode === null && child.child.signalCode === null) child.child.kill('SIGKILL');
});

async function drainedBy(workerId: string): Promise<number> {
  const { rows } = await db.query<{ moved: number }>(
    `SELECT coalesce(sum(moved), 0)::int AS moved FROM sluice.drain_stats WHERE drainer LIKE $1`,
    [`${workerId}/%`],
  );
  return rows[0]!.moved;
}

async function pendingIngestJobs(): Promise<number> {
  const { rows } = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM graphile_worker.jobs WHERE task_identifier = 'sluice_ingest'`);
  return rows[0]!.n;
}

/** Resolves with the exit, or with undefined if the process is still running after `ms`. */
function exitWithin(spawned: SpawnedCli, ms: number): Promise<CliResult | undefined> {
  return Promise.race([spawned.exited, delay(ms).then(() => undefined)]);
}

describe('SIGTERM under load', () => {
  it('every acknowledged event is durable exactly once after a SIGTERM and a restart', async () => {
    child = spawnCli(['worker', '--concurrency', '4', '--drainers', '2', '--no-migrate', '--worker-id', FIRST_WORKER], {
      DATABASE_URL: db.url,
      SLUICE_LOG_LEVEL: 'info',
      SLUICE_SHUTDOWN_TIMEOUT_MS: String(SHUTDOWN_TIMEOUT_MS),
    });
    const first = child;
    await first.waitForOutput(/running/);

    // Producer (a): a client with ack 'staged'; an event counts as acknowledged once its ingest() resolved.
    const acknowledged = new Set<string>();
    const enqueued = new Set<string>();
    const producerErrors: unknown[] = [];
    let producing = true;
    const ingestor = await createIngestor({ connectionString: db.url, stream: 'events', ack: 'staged', clientId: 'sigterm-client', flushRows: 200 });
    const clientLoop = (async () => {
      for (let i = 0; producing; i++) {
        const { events } = makeEvents(100, 10_000 + i, {}, 0);
        try {
          const receipt = await ingestor.ingest(events);
          if (receipt.rejected !== 0) producerErrors.push(receipt.rejections);
          for (const e of events) acknowledged.add(e.event_id);
        } catch (err) {
          producerErrors.push(err);
        }
        await delay(10);
      }
    })();
    // Producer (b): SQL add_job, 20 events a job; an event counts once add_job committed.
    const sqlLoop = (async () => {
      for (let i = 0; producing; i++) {
        const { events } = makeEvents(20, 50_000 + i, {}, 0);
        try {
          await db.query(`SELECT graphile_worker.add_job('sluice_ingest', $1::json)`, [JSON.stringify({ stream: 'events', events })]);
          for (const e of events) enqueued.add(e.event_id);
        } catch (err) {
          producerErrors.push(err);
        }
        await delay(10);
      }
    })();

    // Under load: events acknowledged, SQL jobs flowing, and the first worker has drained rows.
    await waitFor(
      async () => ({ acked: acknowledged.size, enqueued: enqueued.size, drained: await drainedBy(FIRST_WORKER) }),
      (s) => s.acked >= 1_000 && s.enqueued >= 400 && s.drained > 0,
      { what: 'load running and the first worker draining', timeoutMs: 30_000 },
    );

    first.child.kill('SIGTERM');
    const exit = await exitWithin(first, SHUTDOWN_TIMEOUT_MS + 5_000);
    expect(exit, `worker still running ${SHUTDOWN_TIMEOUT_MS + 5_000} ms after SIGTERM`).toBeDefined();
    expect(exit!.signal).toBeNull();
    expect(exit!.code, exit!.stderr.slice(-3_000)).toBe(0);
    expect(exit!.stderr).toMatch(/worker: stopped/);
    expect(exit!.stderr).toMatch(new RegExp(`worker ${FIRST_WORKER} stopped`));
    expect((await db.query(`SELECT 1 FROM sluice.workers WHERE id = $1`, [FIRST_WORKER])).rowCount).toBe(0);
    // Its backends exit just after the process hung up: wait for them to go.
    await waitFor(
      async () => (await db.query(`SELECT 1 FROM pg_stat_activity WHERE application_name LIKE $1`, [`sluice/${FIRST_WORKER}/%`])).rowCount,
      (n) => n === 0,
      { what: 'no connections of the stopped worker left', timeoutMs: 10_000 },
    );
    const drainedByFirst = await drainedBy(FIRST_WORKER);
    expect(drainedByFirst).toBeGreaterThan(0);

    // No worker now: staged acks and add_job keep working (staging and the job queue are just tables).
    const ackedAtExit = acknowledged.size;
    const enqueuedAtExit = enqueued.size;
    await waitFor(
      async () => ({ acked: acknowledged.size, enqueued: enqueued.size }),
      (s) => s.acked >= ackedAtExit + 500 && s.enqueued >= enqueuedAtExit + 100,
      { what: 'producers acknowledged without a worker', timeoutMs: 20_000 },
    );
    producing = false;
    await Promise.all([clientLoop, sqlLoop]);
    await ingestor.close();
    expect(producerErrors).toEqual([]);
    expect(await stagedCount(db)).toBeGreaterThan(0); // a backlog the next worker must drain

    // A new worker finishes the backlog.
    const second = await startWorker(db, { concurrency: 4, drainers: 2 });
    await waitFor(
      async () => ({ staged: await stagedCount(db), jobs: await pendingIngestJobs() }),
      (s) => s.staged === 0 && s.jobs === 0,
      { what: 'staging empty and no sluice_ingest jobs left', timeoutMs: 30_000 },
    );
    expect(await drainedBy(second.id)).toBeGreaterThan(0);

    const { rows } = await db.query<{ event_id: string; n: number }>(
      `SELECT event_id::text, count(*)::int AS n FROM sluice_data.events GROUP BY event_id`,
    );
    const durable = new Map(rows.map((r) => [r.event_id, r.n]));
    const expected = new Set([...acknowledged, ...enqueued]);
    expect(expected.size).toBe(acknowledged.size + enqueued.size);
    const missing = [...expected].filter((id) => !durable.has(id));
    const duplicated = [...expected].filter((id) => (durable.get(id) ?? 0) > 1);
    expect(missing.slice(0, 10), `${missing.length} acknowledged events missing`).toEqual([]);
    expect(duplicated.slice(0, 10), `${duplicated.length} events stored more than once`).toEqual([]);
    expect(await stagedCount(db)).toBe(0);
    expect((await db.query(`SELECT 1 FROM sluice.rejects`)).rowCount).toBe(0);
    await second.stop();
  });

  it('a second signal exits at once, mid-shutdown, and loses nothing that was acknowledged', async () => {
    const stream = 'second_signal';
    await db.query(`SELECT sluice.create_stream($1)`, [stream]);
    const worker = spawnCli(['worker', '--concurrency', '3', '--drainers', '1', '--no-migrate', '--worker-id', 'sigterm-twice'], {
      DATABASE_URL: db.url,
      SLUICE_LOG_LEVEL: 'info',
      SLUICE_SHUTDOWN_TIMEOUT_MS: '60000',
    });
    child = worker;
    await worker.waitForOutput(/running/);
    // A second session holds staging: the worker's ingest jobs sit in their COPY, so a clean shutdown would wait for them.
    const blocker = await db.pool.connect();
    const enqueued: string[] = [];
    try {
      await blocker.query('BEGIN');
      await blocker.query(`LOCK TABLE sluice_staging.${stream} IN ACCESS EXCLUSIVE MODE`);
      for (let i = 0; i < 3; i++) {
        const { events } = makeEvents(50, 90_000 + i, {}, 0);
        await db.query(`SELECT graphile_worker.add_job('sluice_ingest', $1::json)`, [JSON.stringify({ stream, events, ack: 'durable' })]);
        enqueued.push(...events.map((e) => e.event_id));
      }
      await waitFor(
        () => db.query<{ n: number }>(`SELECT count(*)::int AS n FROM graphile_worker.jobs WHERE task_identifier = 'sluice_ingest' AND locked_at IS NOT NULL`).then((r) => r.rows[0]!.n),
        (n) => n >= 1,
        { what: 'an ingest job running' },
      );
      worker.child.kill('SIGTERM');
      await worker.waitForOutput(/shutting down cleanly/);
      // Still waiting for the blocked jobs: the clean shutdown does not finish while staging is held.
      expect(await exitWithin(worker, 1_500)).toBeUndefined();
      const forcedAt = Date.now();
      worker.child.kill('SIGTERM');
      const exit = await exitWithin(worker, 5_000);
      expect(exit, 'the second signal should end the process at once').toBeDefined();
      expect(exit!.code).toBe(130);
      expect(Date.now() - forcedAt).toBeLessThan(5_000);
    } finally {
      await blocker.query('ROLLBACK').catch(() => undefined);
      blocker.release();
    }
    // Nothing was acknowledged to a producer but the jobs' enqueue: a new worker takes the jobs over
    // (the forced worker's registration has no session left, so its locks are released at once)
    // and every event becomes durable exactly once.
    const next = await startWorker(db, { concurrency: 3, drainers: 1 });
    await waitFor(pendingIngestJobs, (n) => n === 0, { what: 'the forced worker\'s ingest jobs done by the next worker', timeoutMs: 30_000 });
    const { rows } = await db.query<{ event_id: string; n: number }>(`SELECT event_id::text, count(*)::int AS n FROM sluice_data.${stream} GROUP BY 1`);
    expect(rows.length).toBe(enqueued.length);
    expect(rows.filter((r) => r.n > 1)).toEqual([]);
    expect(new Set(rows.map((r) => r.event_id))).toEqual(new Set(enqueued));
    await next.stop();
  });
});
