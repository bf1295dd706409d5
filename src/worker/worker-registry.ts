/**
 * The worker registry (sluice.workers): registration under an advisory lock
 * with the cluster budget check, heartbeats, and deregistration. Each row
 * carries its worker's own heartbeat interval and stale window; a row whose
 * heartbeat is older than its own window belongs to a dead worker and no
 * longer counts, whoever looks.
 *
 * Under --budget-scope cluster the check also counts the workers of the
 * cluster's other databases, from their sessions' application_name
 * (budget-claims.ts). The advisory lock serialises registrations of one
 * database only; across databases the check is claim-then-check: a worker's
 * claim (its budget in the name of every session it opens) is visible before
 * its own check runs, so of two workers starting at once in two databases at
 * least one sees the other, and one that does not fit beside it is refused.
 * Both may be refused when they start at the same instant; neither can slip in
 * unseen.
 */
import { withTransaction } from '../db/transaction.js';
import os from 'node:os';
import type pg from 'pg';
import { SluiceError } from '../errors.js';
import { clusterCapacity, describeCapacity, type ClusterCapacity, type ConnectionPlan } from '../db/budget.js';
import { budgetClaimsElsewhere, describeClaims, type BudgetClaim } from '../db/budget-claims.js';
import type { BudgetScope } from '../config.js';
import { SLUICE_VERSION } from '../version.js';

/**
 * The check-then-insert below is only sound if the SELECT of the live budgets
 * sees every registration committed before the lock was granted. READ
 * COMMITTED takes a snapshot per statement, so the SELECT that follows the lock
 * statement does; under REPEATABLE READ (a database default some sites set)
 * the snapshot would be taken by the lock statement itself, before the wait,
 * and two workers could both fit into the same free connections.
 */
const LOCK_REGISTRY = `SELECT pg_advisory_xact_lock(hashtext('sluice.workers'))`;
// $1: this observer's --stale-after-ms, only for rows that did not record their own. A row whose worker
// has no session left is dead at once (a killed worker's restart is not refused for its stale window).
const LIVE_BUDGETS = `
SELECT id, budget
  FROM sluice.workers
 WHERE sluice.worker_is_live(id, heartbeat_at, stale_after_ms, $1::int) AND id <> $2
 ORDER BY budget DESC, id`;
const UPSERT_WORKER = `
INSERT INTO sluice.workers (id, host, pid, version, budget, plan, heartbeat_ms, stale_after_ms)
VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8)
ON CONFLICT (id) DO UPDATE
   SET host = excluded.host, pid = excluded.pid, version = excluded.version, budget = excluded.budget,
       plan = excluded.plan, heartbeat_ms = excluded.heartbeat_ms, stale_after_ms = excluded.stale_after_ms,
       started_at = now(), heartbeat_at = now()`;
const PRUNE_DEAD = `DELETE FROM sluice.workers WHERE heartbeat_at < now() - interval '1 day'`;
const HEARTBEAT = `UPDATE sluice.workers SET heartbeat_at = now(), stats = $2::jsonb WHERE id = $1`;
const DEREGISTER = `DELETE FROM sluice.workers WHERE id = $1`;

export interface Registration {
  readonly capacity: ClusterCapacity;
  /** Budgets of the other live workers registered in this database. */
  readonly liveBudget: number;
  readonly liveWorkers: number;
  /** Live workers of the cluster's other databases (--budget-scope cluster; empty otherwise). */
  readonly elsewhere: readonly BudgetClaim[];
  readonly elsewhereBudget: number;
}

export interface RegisterInput {
  readonly workerId: string;
  readonly budget: number;
  readonly plan: ConnectionPlan;
  readonly reserve: number;
  /** This worker's heartbeat interval, recorded with its registration. */
  readonly heartbeatMs: number;
  /**
   * This worker's stale window: others count it dead this long after its last
   * heartbeat. Also the window this worker applies to rows that recorded none.
   */
  readonly staleAfterMs: number;
  /** 'cluster': also count the workers of the cluster's other databases. */
  readonly scope: BudgetScope;
}

/** At most this many workers are named in a refusal; the rest are counted. */
const NAMED_MAX = 12;

/** Register this worker, or throw SluiceError('cluster_over_budget') saying whose budgets fill the cluster. */
export async function registerWorker(client: pg.PoolClient | pg.Client, input: RegisterInput): Promise<Registration> {
  return withTransaction(
    client,
    async () => {
      await client.query(LOCK_REGISTRY);
      const capacity = await clusterCapacity(client, input.reserve);
      const { rows: here } = await client.query<{ id: string; budget: number }>(LIVE_BUDGETS, [input.staleAfterMs, input.workerId]);
      const elsewhere = input.scope === 'cluster' ? await budgetClaimsElsewhere(client) : [];
      const liveBudget = here.reduce((n, w) => n + w.budget, 0);
      const elsewhereBudget = elsewhere.reduce((n, c) => n + c.budget, 0);
      if (liveBudget + elsewhereBudget + input.budget > capacity.available) {
        throw new SluiceError(
          'cluster_over_budget',
          `cluster connection budget exceeded: ${here.length + elsewhere.length} live worker(s) declare ${liveBudget + elsewhereBudget} connections` +
            ` (${whoFills(here, elsewhere)}) and this worker asks for ${input.budget}, but only ${capacity.available} are available` +
            ` (${describeCapacity(capacity)}). Lower --max-connections here or on other workers, lower --reserve, or raise max_connections. ` +
            'See `sluice budget`.',
        );
      }
      await client.query(UPSERT_WORKER, [
        input.workerId,
        os.hostname(),
        process.pid,
        SLUICE_VERSION,
        input.budget,
        JSON.stringify(input.plan),
        input.heartbeatMs,
        input.staleAfterMs,
      ]);
      await client.query(PRUNE_DEAD);
      return { capacity, liveBudget, liveWorkers: here.length, elsewhere, elsewhereBudget };
    },
    { isolation: 'READ COMMITTED' },
  );
}

/** `in this database: a (6), b (4); in other databases: c (8) in database d` (the largest first, at most NAMED_MAX). */
function whoFills(here: ReadonlyArray<{ id: string; budget: number }>, elsewhere: readonly BudgetClaim[]): string {
  const parts: string[] = [];
  let named = 0;
  const take = <T>(list: readonly T[]): T[] => {
    const shown = list.slice(0, Math.max(0, NAMED_MAX - named));
    named += shown.length;
    return shown;
  };
  const hereShown = take(here);
  if (hereShown.length) parts.push(`in this database: ${hereShown.map((w) => `${w.id} (${w.budget})`).join(', ')}`);
  const elsewhereShown = take(elsewhere);
  if (elsewhereShown.length) parts.push(`in other databases: ${describeClaims(elsewhereShown)}`);
  const rest = here.length + elsewhere.length - named;
  if (rest > 0) parts.push(`and ${rest} more`);
  return parts.length ? parts.join('; ') : 'none';
}

export async function heartbeat(db: pg.Pool | pg.ClientBase, workerId: string, stats: object): Promise<boolean> {
  const result = await db.query(HEARTBEAT, [workerId, JSON.stringify(stats)]);
  return (result.rowCount ?? 0) > 0;
}

export async function deregisterWorker(db: pg.Pool | pg.ClientBase, workerId: string): Promise<void> {
  await db.query(DEREGISTER, [workerId]);
}
