/**
 * Health thresholds: defaults here (sources in docs/health.md: check_postgres,
 * pgmonitor, or sluice's own), overridden per database by rows in
 * sluice.health_thresholds (`INSERT … ON CONFLICT (name) DO UPDATE`).
 */
import type { Queryable } from '../streams/registry.js';

export const THRESHOLD_DEFAULTS = {
  /** User tables smaller than this (pg_table_size) are skipped by dead-tuple/vacuum checks; sluice's tables never. */
  min_table_mb: 10,
  /** n_dead_tup against the table's own autovacuum trigger: warn at 1×, critical at 4×. */
  dead_tuples_warn_factor: 1,
  dead_tuples_critical_factor: 4,
  /** Over its trigger and this share of rows dead → critical. */
  dead_ratio_critical_pct: 50,
  /**
   * Staging tables are queues (sluice): dead tuples come and go with every drain, so they are judged by
   * whether autovacuum keeps visiting: over their trigger and not vacuumed for 10 min → warn, 1 h → critical.
   */
  staging_vacuum_age_warn_s: 600,
  staging_vacuum_age_critical_s: 3_600,
  /** check_postgres last_vacuum / last_autovacuum: 1 day, 2 days (only for tables due a vacuum). */
  vacuum_age_warn_s: 86_400,
  vacuum_age_critical_s: 172_800,
  /** check_postgres last_analyze / last_autoanalyze: 1 day, 2 days (only for tables due an analyze). */
  analyze_age_warn_s: 86_400,
  analyze_age_critical_s: 172_800,
  /** pgmonitor percent_towards_emergency_autovac: 110 %, 125 % of (autovacuum_)(multixact_)freeze_max_age. */
  freeze_warn_pct: 110,
  freeze_critical_pct: 125,
  /** pgmonitor percent_towards_wraparound: 50 %, 75 % of 2^31. */
  wraparound_warn_pct: 50,
  wraparound_critical_pct: 75,
  /** pgmonitor PGQueryTime: 12 h, 24 h. */
  long_xact_warn_s: 43_200,
  long_xact_critical_s: 86_400,
  /** pgmonitor PGIdleTxn: 5 min, 15 min. */
  idle_xact_warn_s: 300,
  idle_xact_critical_s: 900,
  /** check_postgres prepared_txns: 1 s, 30 s. */
  prepared_xact_warn_s: 1,
  prepared_xact_critical_s: 30,
  /** WAL a replication slot retains (sluice). Inactive slots are critical (pgmonitor PGReplicationSlotsInactive). */
  slot_retained_warn_mb: 1_024,
  slot_retained_critical_mb: 10_240,
  /** XID age of a slot's xmin / a standby's hot_standby_feedback xmin (sluice). */
  horizon_xid_age_warn: 10_000_000,
  horizon_xid_age_critical: 100_000_000,
  /** pgmonitor PGConnPerc: 75 %, 90 % of max_connections − reserved. */
  connections_warn_pct: 75,
  connections_critical_pct: 90,
  /** Age of the oldest staged row (sluice). */
  staged_age_warn_s: 60,
  staged_age_critical_s: 600,
  /** Rows staged and no drain progress for this long → critical (sluice). */
  drain_stall_s: 120,
  /** Rejects in the last hour as a share of rejects + drained rows (sluice). */
  rejects_warn_pct: 1,
  rejects_critical_pct: 10,
  /** A matview older than this many refresh intervals (sluice). */
  matview_stale_warn_factor: 2,
  matview_stale_critical_factor: 4,
  /** The hourly rotation has not recorded a run for this long (sluice). */
  rotation_age_warn_s: 7_200,
} as const;

export type ThresholdName = keyof typeof THRESHOLD_DEFAULTS;
export type Thresholds = Readonly<Record<ThresholdName, number>>;

const OVERRIDES = `SELECT name, value FROM sluice.health_thresholds ORDER BY name`;

export interface LoadedThresholds {
  readonly thresholds: Thresholds;
  /** Rows naming no known threshold (typos): reported, not ignored. */
  readonly unknown: string[];
}

export function isThresholdName(name: string): name is ThresholdName {
  return Object.prototype.hasOwnProperty.call(THRESHOLD_DEFAULTS, name);
}

export async function loadThresholds(db: Queryable): Promise<LoadedThresholds> {
  const values: Record<string, number> = { ...THRESHOLD_DEFAULTS };
  const unknown: string[] = [];
  const { rows } = await db.query<{ name: string; value: number }>(OVERRIDES);
  for (const row of rows) {
    if (isThresholdName(row.name)) values[row.name] = Number(row.value);
    else unknown.push(row.name);
  }
  return { thresholds: values as Thresholds, unknown };
}
