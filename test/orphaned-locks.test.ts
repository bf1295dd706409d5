/**
 * A live worker's own orphaned job locks (src/worker/orphaned-locks.ts).
 *
 * graphile-worker completes jobs fire-and-forget; when the connection dies at
 * that instant (a Postgres restart) the job stays locked under the live
 * worker's pool id, for 4 hours. Seen in the chaos suite: one job left locked
 * after an immediate restart. Here the lost completion is reproduced exactly:
 * a job locked under the worker's pool id that the worker does not hold.
 */
import { describe, expect, it } from 'vitest';
import { createTestDatabase } from './helpers/database.js';
import { durableIds, makeEvents } from './helpers/events.js';
import { waitFor } from './helpers/wait.js';
import { startWorker } from './helpers/worker.js';

const db = await createTestDatabase('orphaned_locks');

const lockIdOf = async (workerId: string): Promise<string> => {
  const { rows } = await db.query<{ id: string }>(`SELECT job_lock_ids[1] AS id FROM sluice.workers WHERE id = $1`, [workerId]);
  const id = rows[0]?.id;
  if (!id) throw new Error(`worker ${workerId} recorded no job lock id`);
  return id;
};

/** Enqueue an ingest job far in the future (no worker takes it), then lock it as a lost completion would leave it. */
async function orphanJob(stream: string, lockId: string, lockedAgo: string, count = 5, seed = 1): Promise<{ jobId: string; ids: string[] }> {
  const { events } = makeEvents(count, seed, {}, 0);
  const { rows } = await db.query<{ id: string }>(
    `SELECT id::text FROM graphile_worker.add_job('sluice_ingest', $1::json, run_at => now() + interval '1 day')`,
    [JSON.stringify({ stream, events })],
  );
  const jobId = rows[0]!.id;
  await db.query(
    `UPDATE graphile_worker._private_jobs SET locked_by = $2, locked_at = now() - $3::interval, run_at = now() - interval '1 hour' WHERE id = $1`,
    [jobId, lockId, lockedAgo],
  );
  return { jobId, ids: events.map((e) => e.event_id) };
}

const lockedBy = async (jobId: string) =>
  (await db.query<{ locked_by: string | null }>(`SELECT locked_by FROM graphile_worker._private_jobs WHERE id = $1`, [jobId])).rows[0]?.locked_by;

describe("a live worker's orphaned job locks", () => {
  it('are released within its stale window, and the job then runs (its events become durable)', async () => {
    const stream = 'orphan_live';
    await db.query(`SELECT sluice.create_stream($1)`, [stream]);
    const worker = await startWorker(db, { heartbeatMs: 200, staleAfterMs: 1_000, drainers: 1 });
    const lockId = await lockIdOf(worker.id);
    const { jobId } = await orphanJob(stream, lockId, '1 hour');
    expect(await lockedBy(jobId)).toBe(lockId);
    const durable = await waitFor(() => durableIds(db, stream), (d) => d.rows === 5, { what: "the orphaned job's 5 events durable", timeoutMs: 15_000 });
    expect(durable.ids.size).toBe(5);
    const left = await db.query(`SELECT 1 FROM graphile_worker._private_jobs WHERE id = $1`, [jobId]);
    expect(left.rowCount).toBe(0);
    await worker.stop();
  });

  it('are released when the worker stops, even a fresh one the periodic sweep leaves alone', async () => {
    const stream = 'orphan_stop';
    await db.query(`SELECT sluice.create_stream($1)`, [stream]);
    const worker = await startWorker(db, { heartbeatMs: 200, staleAfterMs: 1_000, drainers: 1 });
    const lockId = await lockIdOf(worker.id);
    const { jobId } = await orphanJob(stream, lockId, '0 seconds', 3, 2);
    // Several sweeps pass: a lock younger than the grace window (a fetch may still be on its way) stays.
    await new Promise((r) => setTimeout(r, 2_500));
    expect(await lockedBy(jobId)).toBe(lockId);
    await worker.stop();
    expect(await lockedBy(jobId)).toBeNull();
    const { rows } = await db.query<{ locked: number }>(`SELECT count(*)::int AS locked FROM graphile_worker._private_jobs WHERE locked_by = $1`, [lockId]);
    expect(rows[0]?.locked).toBe(0);
  });

  it('never include a job the worker is running, however old its lock', async () => {
    const stream = 'orphan_held';
    await db.query(`SELECT sluice.create_stream($1)`, [stream]);
    const worker = await startWorker(db, { heartbeatMs: 200, staleAfterMs: 1_000, drainers: 1 });
    const lockId = await lockIdOf(worker.id);
    // A second session holds staging: the ingest job blocks in its COPY, running and locked.
    const blocker = await db.pool.connect();
    try {
      await blocker.query('BEGIN');
      await blocker.query(`LOCK TABLE sluice_staging.${stream} IN ACCESS EXCLUSIVE MODE`);
      const { events } = makeEvents(4, 3, {}, 0);
      const { rows } = await db.query<{ id: string }>(`SELECT id::text FROM graphile_worker.add_job('sluice_ingest', $1::json)`, [
        JSON.stringify({ stream, events, ack: 'staged' }),
      ]);
      const jobId = rows[0]!.id;
      await waitFor(() => lockedBy(jobId), (by) => by === lockId, { what: 'the worker to take the job' });
      // Make the running job's lock look ancient: only "held" protects it now.
      await db.query(`UPDATE graphile_worker._private_jobs SET locked_at = now() - interval '1 hour' WHERE id = $1`, [jobId]);
      await new Promise((r) => setTimeout(r, 2_500));
      expect(await lockedBy(jobId)).toBe(lockId);
      await blocker.query('COMMIT');
      await waitFor(
        () => db.query(`SELECT 1 FROM graphile_worker._private_jobs WHERE id = $1`, [jobId]).then((r) => r.rowCount),
        (n) => n === 0,
        { what: 'the job to complete' },
      );
      // It ran once: its 4 events reached staging or the durable table once each.
      const durable = await waitFor(() => durableIds(db, stream), (d) => d.rows === 4, { what: '4 events durable', timeoutMs: 15_000 });
      expect(durable.ids.size).toBe(4);
    } finally {
      await blocker.query('ROLLBACK').catch(() => undefined);
      blocker.release();
    }
    await worker.stop();
  });

  it('never stall the heartbeat: a job row another session holds is skipped, then released once free', async () => {
    const stream = 'orphan_held_row';
    await db.query(`SELECT sluice.create_stream($1)`, [stream]);
    const worker = await startWorker(db, { heartbeatMs: 200, staleAfterMs: 1_000, drainers: 1 });
    const lockId = await lockIdOf(worker.id);
    const { jobId } = await orphanJob(stream, lockId, '1 hour', 4, 4);
    const heartbeatAgeMs = async () =>
      (await db.query<{ ms: number }>(`SELECT (extract(epoch FROM now() - heartbeat_at) * 1000)::float8 AS ms FROM sluice.workers WHERE id = $1`, [worker.id])).rows[0]?.ms;
    const blocker = await db.pool.connect();
    try {
      await blocker.query('BEGIN');
      await blocker.query(`SELECT 1 FROM graphile_worker._private_jobs WHERE id = $1 FOR UPDATE`, [jobId]);
      await new Promise((r) => setTimeout(r, 3_500)); // several sweeps pass while the row is held
      // Heartbeats every 200 ms go on: the last one is recent (a sweep waiting on the row would have stopped them).
      expect(await heartbeatAgeMs()).toBeLessThan(1_000);
      expect(await lockedBy(jobId)).toBe(lockId);
      await blocker.query('COMMIT');
    } finally {
      await blocker.query('ROLLBACK').catch(() => undefined);
      blocker.release();
    }
    const durable = await waitFor(() => durableIds(db, stream), (d) => d.rows === 4, { what: "the held orphan's 4 events durable once free", timeoutMs: 15_000 });
    expect(durable.ids.size).toBe(4);
    await worker.stop();
  });

  it("never stall the heartbeat on a dead worker's job row another session holds either; it is released once free", async () => {
    const stream = 'dead_held_row';
    await db.query(`SELECT sluice.create_stream($1)`, [stream]);
    // A dead registration (no session left) whose pool id still holds a job.
    await db.query(
      `INSERT INTO sluice.workers (id, host, pid, version, budget, plan, heartbeat_at, heartbeat_ms, stale_after_ms, job_lock_ids)
       VALUES ('dead-holder', 'h', 2, 'v', 5, '{}', now() - interval '1 hour', 5000, 30000, '{pool-deadbeef}')`,
    );
    const { jobId } = await orphanJob(stream, 'pool-deadbeef', '1 hour', 3, 5);
    const blocker = await db.pool.connect();
    let worker: Awaited<ReturnType<typeof startWorker>> | undefined;
    try {
      await blocker.query('BEGIN');
      await blocker.query(`SELECT 1 FROM graphile_worker._private_jobs WHERE id = $1 FOR UPDATE`, [jobId]);
      worker = await startWorker(db, { heartbeatMs: 200, staleAfterMs: 1_000, drainers: 1 });
      await new Promise((r) => setTimeout(r, 3_500));
      const { rows } = await db.query<{ ms: number }>(
        `SELECT (extract(epoch FROM now() - heartbeat_at) * 1000)::float8 AS ms FROM sluice.workers WHERE id = $1`,
        [worker.id],
      );
      expect(rows[0]!.ms).toBeLessThan(1_000);
      expect(await lockedBy(jobId)).toBe('pool-deadbeef');
      await blocker.query('COMMIT');
    } finally {
      await blocker.query('ROLLBACK').catch(() => undefined);
      blocker.release();
    }
    const durable = await waitFor(() => durableIds(db, stream), (d) => d.rows === 3, { what: "the dead worker's job run once its row was free", timeoutMs: 15_000 });
    expect(durable.ids.size).toBe(3);
    await worker!.stop();
  });
});
