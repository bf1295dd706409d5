/**
 * `sluice budget`: the cluster plan against max_connections, each live
 * worker's declared budget next to the connections it actually holds
 * (pg_stat_activity by application_name), and everything else connected.
 */
import type pg from 'pg';
import { clusterCapacity, type ClusterCapacity } from '../db/budget.js';
import { workerStatuses, type WorkerStatus } from './stream-status.js';

export interface BudgetReport {
  readonly capacity: ClusterCapacity;
  readonly workers: WorkerStatus[];
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

export async function budgetReport(db: pg.Pool | pg.ClientBase, reserve: number, staleAfterMs: number): Promise<BudgetReport> {
  const capacity = await clusterCapacity(db, reserve);
  const workers = (await workerStatuses(db, staleAfterMs)).filter((w) => w.live);
  const declared = workers.reduce((n, w) => n + w.budget, 0);
  const { rows } = await db.query<{ total: number; other: number }>(CONNECTIONS_NOW);
  return {
    capacity,
    workers,
    declared,
    headroom: capacity.available - declared,
    connectionsNow: rows[0]?.total ?? 0,
    otherConnections: rows[0]?.other ?? 0,
  };
}
