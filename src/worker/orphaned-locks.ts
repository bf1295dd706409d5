/**
 * Releasing a live worker's own orphaned job locks.
 *
 * graphile-worker 0.18 completes and fails jobs fire-and-forget: when the
 * connection dies at that moment (a Postgres restart, an admin termination) the
 * DELETE or UPDATE never runs and the job stays locked under this worker's
 * pool id. Likewise a job-fetch whose reply was lost leaves a job locked that
 * this worker never saw. graphile-worker frees such locks only after 4 hours,
 * and dead-workers.ts only frees the locks of dead workers: this worker is alive.
 *
 * So the worker tracks the jobs it really holds (fetched into its local queue,
 * or started) and, after a reconnect, once per --stale-after-ms (the window in
 * which a dead worker's jobs are released too) and when it stops, unlocks jobs
 * locked by its pool id that it does not hold. A lock younger than
 * the grace window is left alone: the fetch that took it may still be on its way
 * back. A job that finished moments ago stays "held" for the same window, so
 * its completion (still in flight) is not raced.
 */
import type pg from 'pg';
import type { Job, WorkerEvents } from 'graphile-worker';

/** Locks younger than this are never swept: a fetch or a completion may still be in flight. */
export const ORPHAN_GRACE_MS = 10_000;

// Unlock the jobs (and the job queues they locked) held under this pool id by nobody.
// SKIP LOCKED: a row another session holds is left for the next sweep; waiting on it would
// stall the heartbeat loop this runs in, and a worker whose heartbeat stalls is taken for dead.
const RELEASE_ORPHANS = `
WITH candidates AS (
  SELECT id FROM graphile_worker._private_jobs
   WHERE locked_by = $1
     AND id <> ALL($2::bigint[])
     AND locked_at < now() - make_interval(secs => $3::float8 / 1000)
     FOR UPDATE SKIP LOCKED
), orphans AS (
  UPDATE graphile_worker._private_jobs j
     SET locked_by = NULL, locked_at = NULL
    FROM candidates c
   WHERE j.id = c.id AND j.locked_by = $1
  RETURNING j.id, j.job_queue_id
), queues AS (
  UPDATE graphile_worker._private_job_queues q
     SET locked_by = NULL, locked_at = NULL
    FROM orphans o
   WHERE q.id = o.job_queue_id AND q.locked_by = $1
  RETURNING q.id
)
SELECT (SELECT count(*) FROM orphans)::int AS jobs, (SELECT count(*) FROM queues)::int AS queues`;

export interface ReleasedOrphans {
  readonly jobs: number;
  readonly queues: number;
}

/** The job ids this worker's graphile-worker pool holds, kept from its events. */
export class HeldJobs {
  private readonly held = new Set<string>();
  /** Recently finished job id → when; its completion may still be on the wire. */
  private readonly finished = new Map<string, number>();

  constructor(private readonly graceMs = ORPHAN_GRACE_MS) {}

  /** Follow a graphile-worker pool's events. */
  follow(events: WorkerEvents): void {
    const hold = (jobs: readonly Job[]) => jobs.forEach((j) => this.held.add(j.id));
    const letGo = (jobs: readonly Job[]) => jobs.forEach((j) => this.held.delete(j.id));
    events.on('localQueue:getJobs:complete', ({ jobs }) => hold(jobs));
    events.on('localQueue:returnJobs', ({ jobs }) => letGo(jobs));
    events.on('job:start', ({ job }) => hold([job]));
    events.on('job:complete', ({ job }) => {
      this.held.delete(job.id);
      this.finished.set(job.id, Date.now());
    });
  }

  /** Ids to leave alone now: held, or finished within the grace window. */
  ids(now = Date.now()): string[] {
    for (const [id, at] of this.finished) if (now - at > this.graceMs) this.finished.delete(id);
    return [...this.held, ...this.finished.keys()];
  }
}

/**
 * Unlock jobs locked by `lockId` that are not in `heldIds` and were locked more
 * than `graceMs` ago. At shutdown, once the pool has stopped, pass no ids and a
 * grace of 0: nothing of this worker runs any more.
 */
export async function releaseOrphanedLocks(
  pool: pg.Pool,
  lockId: string,
  heldIds: readonly string[],
  graceMs = ORPHAN_GRACE_MS,
): Promise<ReleasedOrphans> {
  const { rows } = await pool.query<ReleasedOrphans>(RELEASE_ORPHANS, [lockId, heldIds, graceMs]);
  return rows[0] ?? { jobs: 0, queues: 0 };
}
