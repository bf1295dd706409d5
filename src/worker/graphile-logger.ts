/**
 * graphile-worker's Logger, writing through sluice's pino logger.
 *
 * graphile-worker scopes a logger per job; at thousands of jobs a second that
 * must cost nothing when nothing is logged, so the pino child is made lazily,
 * only for a message whose level is enabled.
 */
import { Logger as GraphileLogger } from 'graphile-worker';
import type { Logger } from '../logger.js';

type PinoLevel = 'error' | 'warn' | 'info' | 'debug';

function pinoLevel(level: string, message: string): PinoLevel {
  if (level === 'error') return 'error';
  if (level === 'warning') return 'warn';
  // One "Completed task" line per job is noise at 10k+ jobs/s: keep it at debug.
  if (level === 'info') return message.startsWith('Completed task') ? 'debug' : 'info';
  return 'debug';
}

export function toGraphileLogger(log: Logger): GraphileLogger {
  const base = log.child({ component: 'graphile-worker' });
  return new GraphileLogger((scope) => (level, message, meta) => {
    const target = pinoLevel(level, message);
    if (!base.isLevelEnabled(target)) return;
    const scoped = base.child({
      ...(scope.workerId ? { gw_worker: scope.workerId } : {}),
      ...(scope.taskIdentifier ? { task: scope.taskIdentifier } : {}),
      ...(scope.jobId ? { job_id: scope.jobId } : {}),
    });
    const error = (meta as { error?: { message?: string } } | undefined)?.error?.message;
    scoped[target](error ? { error } : {}, message);
  });
}
