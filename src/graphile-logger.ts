/**
 * graphile-worker's Logger, writing through sluice's pino logger.
 *
 * graphile-worker scopes a logger per job; at thousands of jobs a second that
 * must cost nothing when nothing is logged, so the pino child is made lazily,
 * only for a message whose level is enabled.
 *
 * Two of graphile-worker's lines are rewritten, each recognised by the
 * structured `meta` graphile-worker passes with it, never by its text:
 * - "Failed task … attempt 1 of 25" (meta `failure`, `job`, `error`) for a job
 *   sluice retired on purpose (a PermanentJobError, or a batch job noted with
 *   noteRetiredJob): one warning, without a stack, saying it will not be retried;
 * - "having maxPoolSize (N) smaller than concurrency (M)" (meta `max`,
 *   `concurrency`) when sluice planned that pool: the worker logs its own line.
 */
import { Logger as GraphileLogger } from 'graphile-worker';
import { PermanentJobError } from './errors.js';
import type { Logger } from './logger.js';

type PinoLevel = 'error' | 'warn' | 'info' | 'debug';

function pinoLevel(level: string, message: string): PinoLevel {
  if (level === 'error') return 'error';
  if (level === 'warning') return 'warn';
  // One "Completed task" line per job is noise at 10k+ jobs/s: keep it at debug.
  if (level === 'info') return message.startsWith('Completed task') ? 'debug' : 'info';
  return 'debug';
}

/**
 * Batch jobs retired for good: graphile-worker wraps their entries' errors in a
 * plain "Batch failures" Error, so the job object (the very one it logs) says it.
 */
const retiredJobs = new WeakMap<object, PermanentJobError>();

/** Note that `job` (helpers.job) was retired for `reason`: its failure is logged as a warning. */
export function noteRetiredJob(job: object, reason: PermanentJobError): void {
  retiredJobs.set(job, reason);
}

interface FailureMeta {
  failure?: unknown;
  error?: unknown;
  job?: { id?: unknown; task_identifier?: unknown; attempts?: unknown };
}

/** The reason a failed job will not be retried, when sluice retired it; undefined for any other line. */
function permanentFailure(meta: FailureMeta | undefined): PermanentJobError | undefined {
  if (meta?.failure !== true) return undefined;
  if (meta.error instanceof PermanentJobError) return meta.error;
  return meta.job && typeof meta.job === 'object' ? retiredJobs.get(meta.job) : undefined;
}

export interface GraphileLoggerOptions {
  /**
   * The pool size and concurrency sluice planned (`--pool-size` below the job slots on purpose):
   * graphile-worker's warning about exactly these numbers is dropped; the worker says why at info.
   */
  readonly plannedPool?: { readonly max: number; readonly concurrency: number };
}

function isPlannedPoolWarning(meta: unknown, planned: GraphileLoggerOptions['plannedPool']): boolean {
  if (!planned || !meta || typeof meta !== 'object') return false;
  const m = meta as { max?: unknown; concurrency?: unknown };
  return m.max === planned.max && m.concurrency === planned.concurrency;
}

export function toGraphileLogger(log: Logger, options: GraphileLoggerOptions = {}): GraphileLogger {
  const base = log.child({ component: 'graphile-worker' });
  return new GraphileLogger((scope) => (level, message, meta) => {
    if (level === 'warning' && isPlannedPoolWarning(meta, options.plannedPool)) return;
    const permanent = permanentFailure(meta as FailureMeta | undefined);
    const target = permanent ? 'warn' : pinoLevel(level, message);
    if (!base.isLevelEnabled(target)) return;
    if (permanent) {
      const job = (meta as FailureMeta).job ?? {};
      const task = String(job.task_identifier ?? scope.taskIdentifier ?? 'job');
      const id = String(job.id ?? scope.jobId ?? '?');
      base.warn(
        {
          ...(scope.workerId ? { gw_worker: scope.workerId } : {}),
          task,
          job_id: id,
          attempts: job.attempts,
          reason: permanent.message,
          ...(permanent.code ? { code: permanent.code } : {}),
        },
        `${task}: job ${id} failed and will not be retried (max_attempts set to its attempts; reason in graphile_worker.jobs.last_error): ${permanent.message}`,
      );
      return;
    }
    const scoped = base.child({
      ...(scope.workerId ? { gw_worker: scope.workerId } : {}),
      ...(scope.taskIdentifier ? { task: scope.taskIdentifier } : {}),
      ...(scope.jobId ? { job_id: scope.jobId } : {}),
    });
    const error = (meta as { error?: { message?: string } } | undefined)?.error?.message;
    scoped[target](error ? { error } : {}, message);
  });
}
