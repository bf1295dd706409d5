/**
 * `sluice budget`: the cluster plan against max_connections, each live
 * worker's declared budget next to the connections it actually holds
 * (pg_stat_activity by application_name), and everything else connected.
 * Workers of the cluster's other databases are listed from their sessions'
 * budget claims (db/budget-claims.ts) and, under --budget-scope cluster,
 * counted in the declared total as the registration check counts them.
 */
import type pg from 'pg';
import { clusterCapacity, type ClusterCapacity } from '../db/budget.js';
import { budgetClaimsElsewhere, type BudgetClaim } from '../db/budget-claims.js';
import type { BudgetScope } from '../config.js';
import { workerStatuses, type WorkerStatus } from './stream-status.js';

export interface BudgetReport {
  readonly capacity: ClusterCapacity;
  readonly workers: WorkerStatus[];
  readonly scope: BudgetScope;
  /** Live workers of the cluster's other databases: database, id, declared budget, sessions now. */
  readonly otherDatabases: BudgetClaim[];
  /** This database's live workers' budgets, plus the other databases' under scope 'cluster'. */
  readonly declared: number;
  readonly headroom: number;
  /** Client backends connected now, and how many of them are not sluice workers. */
  readonly connectionsNow: number;
  readonly otherConnections: number;
}

const CONNECTIONS_NOW = `
SELECT count(*)::int AS total,
       count(*) FILTER (WHERE application_name NOT LIKE 'sluice/%')::int AS other
  FROM pg_stat_activity WHERE backend_type = 'client backend'`;

export async function budgetReport(db: pg.Pool | pg.ClientBase, reserve: number, staleAfterMs: number, scope: BudgetScope = 'cluster'): Promise<BudgetReport> {
  const capacity = await clusterCapacity(db, reserve);
  const workers = (await workerStatuses(db, staleAfterMs)).filter((w) => w.live);
  const otherDatabases = await budgetClaimsElsewhere(db);
  const declared =
    workers.reduce((n, w) => n + w.budget, 0) + (scope === 'cluster' ? otherDatabases.reduce((n, c) => n + c.budget, 0) : 0);
  const { rows } = await db.query<{ total: number; other: number }>(CONNECTIONS_NOW);
  return {
    capacity,
    workers,
    scope,
    otherDatabases,
    declared,
    headroom: capacity.available - declared,
    connectionsNow: rows[0]?.total ?? 0,
    otherConnections: rows[0]?.other ?? 0,
  };
}
