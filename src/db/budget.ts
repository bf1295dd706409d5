/**
 * Connection budgets: every service declares an explicit maximum connection
 * budget, and the sum of budgets stays below max_connections with margin for
 * migrations and admin sessions.
 *
 * A worker's plan is what it will open: the graphile-worker pool
 * (concurrency + 1, its LISTEN client included), the dedicated COPY
 * connections and the dedicated drain connections. The plan must fit the
 * worker's declared budget, and the live workers' budgets plus this one must
 * fit the cluster: max_connections − reserved slots − the declared reserve.
 */
import type pg from 'pg';
import { SluiceError } from '../errors.js';

export interface ConnectionPlan {
  /** graphile-worker job slots the pool serves. */
  readonly concurrency: number;
  readonly pool: number;
  readonly flushers: number;
  readonly drainers: number;
  readonly total: number;
}

export interface PlanInput {
  readonly concurrency: number;
  readonly flushers: number;
  readonly drainers: number;
  /**
   * Pool size when set explicitly; by default concurrency + 1 (a connection
   * per job slot plus graphile-worker's LISTEN client, as the blueprint says).
   */
  readonly poolSize?: number | undefined;
}

export function planConnections(input: PlanInput): ConnectionPlan {
  const pool = input.poolSize ?? input.concurrency + 1;
  return { concurrency: input.concurrency, pool, flushers: input.flushers, drainers: input.drainers, total: pool + input.flushers + input.drainers };
}

export function describePlan(plan: ConnectionPlan): string {
  const pool =
    plan.pool === plan.concurrency + 1
      ? `pool ${plan.pool} (concurrency ${plan.concurrency} + 1 listener)`
      : `pool ${plan.pool} (for concurrency ${plan.concurrency}, listener included)`;
  return `${pool} + flushers ${plan.flushers} + drainers ${plan.drainers} = ${plan.total}`;
}

/** Refuse a plan larger than the declared budget, saying what to shrink. */
export function assertPlanFitsBudget(plan: ConnectionPlan, budget: number): void {
  if (plan.total <= budget) return;
  const over = plan.total - budget;
  throw new SluiceError(
    'over_budget',
    `connection plan needs ${plan.total} connections (${describePlan(plan)}) but the declared budget ` +
      `(--max-connections / SLUICE_MAX_CONNECTIONS) is ${budget}: shrink it by ${over}, e.g. ${shrinkHints(plan, budget).join(' or ')}`,
  );
}

/** Concrete flag sets that fit the budget: one flag alone when it can absorb the overage, else a combination. */
function shrinkHints(plan: ConnectionPlan, budget: number): string[] {
  const over = plan.total - budget;
  const hints: string[] = [];
  if (plan.pool !== plan.concurrency + 1) {
    // An explicit pool size: shrinking concurrency would not shrink the pool.
    if (plan.pool - over >= 2) hints.push(`--pool-size ${plan.pool - over}`);
    hints.push(`--max-connections ${plan.total}`);
    return hints;
  }
  const concurrency = plan.concurrency;
  if (concurrency - over >= 1) hints.push(`--concurrency ${concurrency - over}`);
  if (plan.drainers - over >= 1) hints.push(`--drainers ${plan.drainers - over}`);
  if (plan.flushers - over >= 1) hints.push(`--flushers ${plan.flushers - over}`);
  if (hints.length === 0) {
    // Lower concurrency first, then drainers, then flushers, each to no less than 1.
    let left = over;
    const next = { concurrency, drainers: plan.drainers, flushers: plan.flushers };
    for (const key of ['concurrency', 'drainers', 'flushers'] as const) {
      const cut = Math.min(left, next[key] - 1);
      next[key] -= cut;
      left -= cut;
    }
    if (left === 0) {
      const flags = (['concurrency', 'drainers', 'flushers'] as const)
        .filter((k) => next[k] !== (k === 'concurrency' ? concurrency : plan[k]))
        .map((k) => `--${k} ${next[k]}`);
      hints.push(flags.join(' '));
    }
  }
  hints.push(`--max-connections ${plan.total}`);
  return hints;
}

export interface ClusterCapacity {
  readonly maxConnections: number;
  readonly superuserReserved: number;
  /** PG 16+ `reserved_connections` (0 before). */
  readonly reserved: number;
  /** The declared margin for admins and migrations (--reserve). */
  readonly reserve: number;
  /** What sluice workers may declare in total. */
  readonly available: number;
}

const CLUSTER_SETTINGS = `
SELECT current_setting('max_connections')::int AS max_connections,
       current_setting('superuser_reserved_connections')::int AS superuser_reserved,
       coalesce(current_setting('reserved_connections', true)::int, 0) AS reserved`;

export async function clusterCapacity(db: pg.ClientBase | pg.Pool, reserve: number): Promise<ClusterCapacity> {
  const { rows } = await db.query<{ max_connections: number; superuser_reserved: number; reserved: number }>(CLUSTER_SETTINGS);
  const row = rows[0];
  if (!row) throw new Error('sluice: could not read max_connections');
  return {
    maxConnections: row.max_connections,
    superuserReserved: row.superuser_reserved,
    reserved: row.reserved,
    reserve,
    available: row.max_connections - row.superuser_reserved - row.reserved - reserve,
  };
}

export function describeCapacity(c: ClusterCapacity): string {
  return `max_connections ${c.maxConnections} − superuser_reserved_connections ${c.superuserReserved}` +
    `${c.reserved ? ` − reserved_connections ${c.reserved}` : ''} − reserve ${c.reserve} = ${c.available}`;
}
