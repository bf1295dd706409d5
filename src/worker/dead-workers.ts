/**
 * Releasing a dead worker's graphile-worker jobs (issue 17, defect 1).
 *
 * graphile-worker locks jobs under its worker pool's id (locked_by =
 * 'pool-<hex>', chosen by graphile-worker, not sluice's worker id) and frees
 * a crashed pool's locks only after 4 hours. Each sluice worker records its
 * pool id in its registration (sluice.workers.job_lock_ids); every live worker,
 * at start and after each heartbeat, force-unlocks the recorded ids of
 * registrations proven dead (sluice.worker_is_live: stale heartbeat, or no
 * session left on this database since the server started), in one transaction
 * with clearing them so each dead worker's ids are released once.
 */
import type pg from 'pg';
import { withTransaction } from '../db/transaction.js';

// FOR UPDATE SKIP LOCKED: two live workers never release the same row at once.
const DEAD_WITH_LOCKS = `
SELECT id, job_lock_ids
  FROM sluice.workers w
 WHERE cardinality(job_lock_ids) > 0
   AND NOT sluice.worker_is_live(w.id, w.heartbeat_at, w.stale_after_ms, $1::int)
   FOR UPDATE SKIP LOCKED`;
const FORCE_UNLOCK = `SELECT graphile_worker.force_unlock_workers($1::text[])`;
const CLEAR_LOCK_IDS = `UPDATE sluice.workers SET job_lock_ids = '{}' WHERE id = ANY($1::text[])`;
const OWN_LOCK_IDS = `SELECT job_lock_ids FROM sluice.workers WHERE id = $1 FOR UPDATE`;
const SET_OWN_LOCK_IDS = `UPDATE sluice.workers SET job_lock_ids = $2::text[] WHERE id = $1`;
// Jobs (and queues) still locked by these ids: reported, so logs show what a release freed.
const LOCKED_JOBS = `SELECT count(*)::int AS n FROM graphile_worker._private_jobs WHERE locked_by = ANY($1::text[])`;

export interface ReleasedWorkers {
  readonly workers: readonly string[];
  readonly lockIds: readonly string[];
  /** Jobs that were locked by those ids and are runnable again. */
  readonly jobs: number;
}

/** Force-unlock the jobs of every registration proven dead; returns what was released. */
/**
 * `lockTimeoutMs`: how long a job row held by another session may hold this up
 * before it is tried again (the caller's heartbeat interval: heartbeats must go on).
 */
export async function releaseDeadWorkers(pool: pg.Pool, observerStaleAfterMs: number, lockTimeoutMs = 2_000): Promise<ReleasedWorkers> {
  const client = await pool.connect();
  try {
    return await withTransaction(
      client,
      async () => {
        const { rows } = await client.query<{ id: string; job_lock_ids: string[] }>(DEAD_WITH_LOCKS, [observerStaleAfterMs]);
        if (rows.length === 0) return { workers: [], lockIds: [], jobs: 0 };
        const lockIds = rows.flatMap((r) => r.job_lock_ids);
        const jobs = await forceUnlock(client, lockIds);
        await client.query(CLEAR_LOCK_IDS, [rows.map((r) => r.id)]);
        return { workers: rows.map((r) => r.id), lockIds, jobs };
      },
      // Runs in the heartbeat loop: a job row held by another session must not stall heartbeats (55P03, retried next beat).
      { isolation: 'READ COMMITTED', lockTimeout: `${Math.max(1, Math.round(lockTimeoutMs))}ms` },
    );
  } finally {
    client.release();
  }
}

/**
 * Record this worker's graphile-worker pool id. Ids left in the row by an
 * earlier process with the same worker id are released first: that process has
 * been replaced (two live processes must never share a worker id; the budget
 * check already counts them as one).
 */
export async function recordOwnLockId(pool: pg.Pool, workerId: string, lockId: string): Promise<ReleasedWorkers> {
  const client = await pool.connect();
  try {
    return await withTransaction(
      client,
      async () => {
        const { rows } = await client.query<{ job_lock_ids: string[] }>(OWN_LOCK_IDS, [workerId]);
        const previous = (rows[0]?.job_lock_ids ?? []).filter((id) => id !== lockId);
        const jobs = previous.length > 0 ? await forceUnlock(client, previous) : 0;
        await client.query(SET_OWN_LOCK_IDS, [workerId, [lockId]]);
        return { workers: previous.length > 0 ? [workerId] : [], lockIds: previous, jobs };
      },
      { isolation: 'READ COMMITTED' },
    );
  } finally {
    client.release();
  }
}

async function forceUnlock(client: pg.ClientBase, lockIds: readonly string[]): Promise<number> {
  const { rows } = await client.query<{ n: number }>(LOCKED_JOBS, [lockIds]);
  await client.query(FORCE_UNLOCK, [lockIds]);
  return rows[0]?.n ?? 0;
}
