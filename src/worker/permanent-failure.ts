/**
 * graphile-worker retries every thrown error (25 attempts by default). For
 * errors no retry can fix (unknown stream, malformed payload) we mark the
 * running job as on its last attempt — the way graphile-worker's own add_job
 * retires a superseded locked job (attempts = max_attempts) — and then throw:
 * the job stays in the queue as permanently failed, the reason in last_error.
 */
import type { JobHelpers } from 'graphile-worker';

const RETIRE_JOB = `UPDATE graphile_worker._private_jobs SET max_attempts = attempts WHERE id = $1::bigint`;

export async function markLastAttempt(helpers: JobHelpers): Promise<void> {
  await helpers.query(RETIRE_JOB, [helpers.job.id]);
}
