/**
 * The worker registry (sluice.workers): registration under an advisory lock
 * with the cluster budget check, heartbeats, and deregistration. A row whose
 * heartbeat is older than the stale threshold belongs to a dead worker and
 * no longer counts.
 */
import os from 'node:os';
import type pg from 'pg';
import { SluiceError } from '../errors.js';
import { clusterCapacity, describeCapacity, type ClusterCapacity, type ConnectionPlan } from '../db/budget.js';
import { SLUICE_VERSION } from '../paths.js';

const LOCK_REGISTRY = `SELECT pg_advisory_xact_lock(hashtext('sluice.workers'))`;
const LIVE_BUDGETS = `
SELECT coalesce(sum(budget), 0)::int AS budget, count(*)::int AS workers
  FROM sluice.workers
 WHERE heartbeat_at > now() - make_interval(secs => $1::float8 / 1000) AND id <> $2`;
const UPSERT_WORKER = `
INSERT INTO sluice.workers (id, host, pid, version, budget, plan)
VALUES ($1, $2, $3, $4, $5, $6::jsonb)
ON CONFLICT (id) DO UPDATE
   SET host = excluded.host, pid = excluded.pid, version = excluded.version, budget = excluded.budget,
       plan = excluded.plan, started_at = now(), heartbeat_at = now()`;
const PRUNE_DEAD = `DELETE FROM sluice.workers WHERE heartbeat_at < now() - interval '1 day'`;
const HEARTBEAT = `UPDATE sluice.workers SET heartbeat_at = now(), stats = $2::jsonb WHERE id = $1`;
const DEREGISTER = `DELETE FROM sluice.workers WHERE id = $1`;

export interface Registration {
  readonly capacity: ClusterCapacity;
  readonly liveBudget: number;
  readonly liveWorkers: number;
}

export interface RegisterInput {
  readonly workerId: string;
  readonly budget: number;
  readonly plan: ConnectionPlan;
  readonly reserve: number;
  readonly staleAfterMs: number;
}

/** Register this worker, or throw SluiceError('cluster_over_budget') saying whose budgets fill the cluster. */
export async function registerWorker(client: pg.PoolClient | pg.Client, input: RegisterInput): Promise<Registration> {
  await client.query('BEGIN');
  try {
    await client.query(LOCK_REGISTRY);
    const capacity = await clusterCapacity(client, input.reserve);
    const { rows } = await client.query<{ budget: number; workers: number }>(LIVE_BUDGETS, [input.staleAfterMs, input.workerId]);
    const live = rows[0] ?? { budget: 0, workers: 0 };
    if (live.budget + input.budget > capacity.available) {
      throw new SluiceError(
        'cluster_over_budget',
        `cluster connection budget exceeded: ${live.workers} live worker(s) declare ${live.budget} connections and this worker ` +
          `asks for ${input.budget}, but only ${capacity.available} are available (${describeCapacity(capacity)}). ` +
          'Lower --max-connections here or on other workers, lower --reserve, or raise max_connections. See `sluice budget`.',
      );
    }
    await client.query(UPSERT_WORKER, [input.workerId, os.hostname(), process.pid, SLUICE_VERSION, input.budget, JSON.stringify(input.plan)]);
    await client.query(PRUNE_DEAD);
    await client.query('COMMIT');
    return { capacity, liveBudget: live.budget, liveWorkers: live.workers };
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}

export async function heartbeat(db: pg.Pool | pg.ClientBase, workerId: string, stats: object): Promise<boolean> {
  const result = await db.query(HEARTBEAT, [workerId, JSON.stringify(stats)]);
  return (result.rowCount ?? 0) > 0;
}

export async function deregisterWorker(db: pg.Pool | pg.ClientBase, workerId: string): Promise<void> {
  await db.query(DEREGISTER, [workerId]);
}
