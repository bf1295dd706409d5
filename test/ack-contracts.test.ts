/**
 * The acknowledgement contracts hold at the edges:
 * - "durable" is never acknowledged for rows that left staging without reaching
 *   the durable table (crash recovery empties UNLOGGED staging; simulated here);
 * - a batch that fails for good makes flush()/close() fail, never succeed silently;
 * - close() racing ingest() fails the late caller at once instead of hanging it;
 * - jobs waiting on a durable ack cannot starve the drains that would release them,
 *   and a shutdown does not hang on them.
 */
import { describe, expect, it } from 'vitest';
import { createIngestor } from '../src/ingest/create-ingestor.js';
import { createTestDatabase } from './helpers/database.js';
import { distinctIds, durableIds, makeEvents, stagedCount } from './helpers/events.js';
import { waitFor } from './helpers/wait.js';
import { startWorker } from './helpers/worker.js';

const db = await createTestDatabase('ack_contracts');

describe('acknowledgement contracts', () => {
  it('a durable ack is refused when staged rows vanish instead of being drained', async () => {
    await db.query(`SELECT sluice.create_stream('vanish')`);
    const ingestor = await createIngestor({ connectionString: db.url, stream: 'vanish', ack: 'durable' });
    const { events } = makeEvents(50, 31, {}, 0);
    const receipt = ingestor.ingest(events);
    receipt.catch(() => undefined); // asserted below; do not let an early rejection count as unhandled
    // No worker runs: once the rows are staged, empty staging the way crash recovery would.
    await waitFor(() => stagedCount(db, 'vanish'), (n) => n === events.length, { what: 'rows staged' });
    await db.query('TRUNCATE sluice_staging.vanish');
    await expect(receipt).rejects.toMatchObject({ code: 'not_durable' });
    await expect(receipt).rejects.toThrow(/left staging without reaching the durable table/);
    expect((await durableIds(db, 'vanish')).rows).toBe(0);
    await ingestor.close().catch(() => undefined);
  });

  it('a batch that fails for good makes flush() and close() fail: nothing is acknowledged silently', async () => {
    await db.query(`SELECT sluice.create_stream('broken')`);
    const ingestor = await createIngestor({ connectionString: db.url, stream: 'broken' });
    await db.query('ALTER TABLE sluice_staging.broken RENAME TO broken_away');
    try {
      for (const e of makeEvents(10, 32).events) await ingestor.push(e);
      await expect(ingestor.flush()).rejects.toThrow(/failed.*10 event\(s\) were not stored/);
      // Still failing later: the failure is sticky, the events were never stored.
      await expect(ingestor.flush()).rejects.toThrow(/not stored/);
      await expect(ingestor.close()).rejects.toThrow(/not stored/);
    } finally {
      await db.query('ALTER TABLE sluice_staging.broken_away RENAME TO broken');
    }
    expect(await stagedCount(db, 'broken')).toBe(0);
  });

  it('ingest() after close() has begun fails at once instead of waiting forever', async () => {
    await db.query(`SELECT sluice.create_stream('closing')`);
    const ingestor = await createIngestor({ connectionString: db.url, stream: 'closing', flushAgeMs: 60_000 });
    const first = ingestor.ingest(makeEvents(20, 33).events);
    first.catch(() => undefined);
    const closing = ingestor.close();
    await expect(ingestor.ingest(makeEvents(5, 34).events)).rejects.toThrow(/closed/);
    await closing;
    expect((await first).accepted).toBe(20);
    expect(await stagedCount(db, 'closing')).toBe(20);
  });

  it('more durable-ack jobs than job slots still complete: they drain their own stream', async () => {
    await db.query(`SELECT sluice.create_stream('durable_jobs')`);
    const worker = await startWorker(db, { concurrency: 2, drainers: 1 });
    const { events, unique } = makeEvents(300, 35);
    for (let i = 0; i < events.length; i += 50) {
      await db.query(`SELECT graphile_worker.add_job('sluice_ingest', $1::json)`, [
        JSON.stringify({ stream: 'durable_jobs', events: events.slice(i, i + 50), ack: 'durable' }),
      ]);
    }
    await waitFor(
      async () => (await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM graphile_worker.jobs WHERE task_identifier = 'sluice_ingest'`)).rows[0]?.n,
      (n) => n === 0,
      { what: 'all durable-ack jobs completed', timeoutMs: 30_000 },
    );
    const durable = await durableIds(db, 'durable_jobs');
    expect(durable.rows).toBe(unique);
    expect(durable.ids).toEqual(distinctIds(events));
    await worker.stop('test');
  });

  it('a shutdown does not hang on jobs waiting for a durable ack; their events stay safe for the next worker', async () => {
    await db.query(`SELECT sluice.create_stream('durable_stop')`);
    // An ingest-only worker cannot drain, so its durable-ack jobs wait until the shutdown.
    const worker = await startWorker(db, { concurrency: 2, drainers: 0 });
    const { events, unique } = makeEvents(100, 36);
    await db.query(`SELECT graphile_worker.add_job('sluice_ingest', $1::json)`, [JSON.stringify({ stream: 'durable_stop', events, ack: 'durable' })]);
    await waitFor(() => stagedCount(db, 'durable_stop'), (n) => n === events.length, { what: 'rows staged' });
    const started = Date.now();
    await worker.stop('test');
    expect(Date.now() - started).toBeLessThan(10_000);
    // The job was not acknowledged: it failed and will run again.
    const job = await db.query<{ attempts: number; last_error: string }>(`SELECT attempts, last_error FROM graphile_worker.jobs WHERE task_identifier = 'sluice_ingest'`);
    expect(job.rows).toHaveLength(1);
    expect(job.rows[0]?.last_error).toMatch(/durable/);
    // A worker that drains takes it from here.
    await db.query(`UPDATE graphile_worker._private_jobs SET run_at = now()`);
    await startWorker(db, { concurrency: 2, drainers: 1 });
    await waitFor(async () => (await durableIds(db, 'durable_stop')).rows, (n) => n === unique, { what: 'events durable', timeoutMs: 30_000 });
  });
});
