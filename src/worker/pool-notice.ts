/**
 * A pool smaller than the job slots, said once and in sluice's words.
 *
 * graphile-worker warns whenever its pool is smaller than its concurrency,
 * because a task of its usual kind holds a pool connection while it runs.
 * sluice's own tasks do not: an ingest job waits on the shared dedicated COPY
 * connection, a drain job on a dedicated drain connection, so `--pool-size`
 * below the job slots is a plan, not a mistake (docs/design.md, "The pool need
 * not grow with concurrency"). The worker then drops graphile-worker's warning
 * (src/graphile-logger.ts) and logs this notice instead: at info for sluice's
 * tasks alone; at warn when your own tasks (--tasks) share the pool, since
 * they may hold a connection (helpers.withPgClient) for their whole run.
 */
import type { ConnectionPlan } from '../db/budget.js';
import { describePlan } from '../db/budget.js';

export interface PoolNotice {
  readonly level: 'info' | 'warn';
  readonly fields: Record<string, unknown>;
  readonly message: string;
}

/** undefined when the pool has a connection per job slot (graphile-worker says nothing then either). */
export function poolNotice(plan: ConnectionPlan, budget: number, userTasks: boolean): PoolNotice | undefined {
  if (plan.pool >= plan.concurrency) return undefined;
  const fields = { pool: plan.pool, concurrency: plan.concurrency, plan: describePlan(plan), budget };
  if (userTasks) {
    return {
      level: 'warn',
      fields,
      message:
        `worker: pool of ${plan.pool} connections for ${plan.concurrency} job slots (--pool-size): your tasks (--tasks) share it, ` +
        `and one that holds helpers.withPgClient for its whole run waits while ${plan.pool - 1} others do (one connection is the LISTEN client); ` +
        'raise --pool-size if your tasks hold connections',
    };
  }
  return {
    level: 'info',
    fields,
    message:
      `worker: pool of ${plan.pool} connections for ${plan.concurrency} job slots, as planned (--pool-size): ` +
      `sluice's jobs wait on the dedicated COPY (${plan.flushers}) and drain (${plan.drainers}) connections, not on the pool; ` +
      `plan ${describePlan(plan)} within a budget of ${budget}`,
  };
}
