/**
 * graphile-worker retries every thrown error (25 attempts by default). For
 * errors no retry can fix (unknown stream, malformed payload) we mark the
 * running job as on its last attempt — the way graphile-worker's own add_job
 * retires a superseded locked job (attempts = max_attempts) — and then throw:
 * the job stays in the queue as permanently failed, the reason in last_error.
 *
 * The job is also noted for the logger adapter (src/graphile-logger.ts), so its
 * failure is logged once, as a warning saying it will not be retried, instead of
 * graphile-worker's "Failed task … attempt 1 of 25" error with a stack.
 */
import type { JobHelpers } from 'graphile-worker';
import type { PermanentJobError } from '../errors.js';
import { noteRetiredJob } from '../graphile-logger.js';

// graphile-worker's private table: its public permanently_fail_jobs() skips locked jobs,
// and this job is locked by the running worker (docs/design.md, "Permanent job failures").
const RETIRE_JOB = `UPDATE graphile_worker._private_jobs SET max_attempts = attempts WHERE id = $1::bigint`;

/** Retire the running job for `reason` (no retry will be scheduled) and return the reason, for the task to throw. */
export async function retireJob(helpers: JobHelpers, reason: PermanentJobError): Promise<PermanentJobError> {
  await helpers.query(RETIRE_JOB, [helpers.job.id]);
  noteRetiredJob(helpers.job, reason);
  return reason;
}
