/** graphile-worker's Logger, writing through sluice's pino logger. */
import { Logger as GraphileLogger } from 'graphile-worker';
import type { Logger } from '../logger.js';

export function toGraphileLogger(log: Logger): GraphileLogger {
  const base = log.child({ component: 'graphile-worker' });
  return new GraphileLogger((scope) => {
    const scoped = base.child({
      ...(scope.workerId ? { gw_worker: scope.workerId } : {}),
      ...(scope.taskIdentifier ? { task: scope.taskIdentifier } : {}),
      ...(scope.jobId ? { job_id: scope.jobId } : {}),
    });
    return (level, message, meta) => {
      // One "Completed task" line per job is noise at 10k+ jobs/s: keep it at debug.
      const effective = level === 'info' && message.startsWith('Completed task') ? 'debug' : level;
      const fields = { error: (meta as { error?: { message?: string } } | undefined)?.error?.message };
      switch (effective) {
        case 'error':
          scoped.error(fields, message);
          break;
        case 'warning':
          scoped.warn(fields, message);
          break;
        case 'info':
          scoped.info(message);
          break;
        default:
          scoped.debug(message);
      }
    };
  });
}
