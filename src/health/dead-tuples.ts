/**
 * Dead tuples: n_dead_tup against the table's own autovacuum trigger
 * (autovacuum_vacuum_threshold + autovacuum_vacuum_scale_factor × reltuples,
 * per-table reloptions honoured), and the dead ratio. Tables whose statistics
 * were never collected are counted and named, not skipped.
 */
import { count, duration, type Finding, type Severity } from './finding.js';
import { summaryFinding, type HealthCheck } from './context.js';
import { inScope, qualified, vacuumTrigger, type TableStats } from './table-stats.js';
import type { Thresholds } from './thresholds.js';

const STAGING_SCHEMA = 'sluice_staging';
/** sluice's own tables below this size get no dead-tuple finding (user tables have min_table_mb). */
export const SLUICE_TABLE_FLOOR_BYTES = 1024 * 1024;

/** A table: dead tuples against its trigger (×warn / ×critical factors), or over it with most rows dead. */
function tableSeverity(dead: number, trigger: number, ratioPct: number, t: Thresholds): Severity {
  if (dead > trigger * t.dead_tuples_critical_factor || (dead > trigger && ratioPct >= t.dead_ratio_critical_pct)) return 'critical';
  return dead > trigger * t.dead_tuples_warn_factor ? 'warn' : 'ok';
}

/**
 * A staging table is a queue: every row is deleted by the drain, so between two autovacuum
 * visits dead tuples grow at the ingest rate and nearly every row is dead. That is its normal
 * state under load, not a finding; a finding is autovacuum no longer visiting it.
 */
function queueSeverity(table: TableStats, dead: number, trigger: number, t: Thresholds): Severity {
  if (dead <= trigger * t.dead_tuples_warn_factor) return 'ok';
  // Never vacuumed: a new stream whose first visit is due (warn), or autovacuum off (the why says so).
  if (table.vacuumed_s_ago === null) return 'warn';
  if (table.vacuumed_s_ago >= t.staging_vacuum_age_critical_s) return 'critical';
  return table.vacuumed_s_ago >= t.staging_vacuum_age_warn_s ? 'warn' : 'ok';
}

export const deadTuplesCheck: HealthCheck = {
  name: 'dead_tuples',
  async run(ctx) {
    const t = ctx.thresholds;
    const findings: Finding[] = [];
    let checked = 0;
    const neverCollected: string[] = [];
    for (const table of await ctx.tables()) {
      if (!inScope(table, t.min_table_mb)) continue;
      checked++;
      // sluice's small control tables (a few rows updated every batch or heartbeat) carry dead tuples
      // between autovacuum visits that cost nothing: under a megabyte there is no bloat to report.
      if (table.sluice_owned && table.bytes < SLUICE_TABLE_FLOOR_BYTES) continue;
      const target = `table ${qualified(table)}`;
      if (table.reltuples < 0) {
        // Never vacuumed or analysed: the trigger is computed from 0 rows, as autovacuum does.
        neverCollected.push(qualified(table));
      }
      const dead = table.n_dead_tup ?? 0;
      const live = table.n_live_tup ?? 0;
      const trigger = vacuumTrigger(table);
      const ratioPct = dead + live > 0 ? (dead / (dead + live)) * 100 : 0;
      const queue = table.schema === STAGING_SCHEMA;
      const severity = queue ? queueSeverity(table, dead, trigger, t) : tableSeverity(dead, trigger, ratioPct, t);
      if (severity === 'ok') continue;
      const disabled = table.autovacuum_enabled ? undefined : 'autovacuum is disabled for this table';
      const why = queue
        ? `a staging queue ${table.vacuumed_s_ago === null ? 'never vacuumed' : `not vacuumed for ${duration(table.vacuumed_s_ago)}`}` +
          (disabled ? `: ${disabled}` : ' (autovacuum busy elsewhere, or an xmin horizon holder: see xmin_horizon)')
        : (disabled ?? 'autovacuum has not caught up (busy workers, cost limits, or an xmin horizon holder: see xmin_horizon)');
      findings.push({
        check: 'dead_tuples',
        target,
        severity,
        value: dead,
        threshold: Math.round(trigger),
        message:
          `${count(dead)} dead tuples (${ratioPct.toFixed(1)} % of rows) against its autovacuum trigger ${count(trigger)} ` +
          `(${table.vac_base} + ${table.vac_scale} × ${count(Math.max(table.reltuples, 0))} rows); ${why}`,
        advice: `VACUUM (VERBOSE) ${qualified(table)}; if dead tuples remain, look for xmin horizon holders` +
          (table.autovacuum_enabled ? '' : `; ALTER TABLE ${qualified(table)} RESET (autovacuum_enabled)`),
      });
    }
    if (neverCollected.length > 0) {
      const shown = neverCollected.slice(0, 5).join(', ') + (neverCollected.length > 5 ? ', …' : '');
      findings.push({
        ...summaryFinding('dead_tuples.never_analysed', 'database', ''),
        value: neverCollected.length,
        message: `${neverCollected.length} table(s) have never been vacuumed or analysed, so reltuples is unknown (${shown}); ` +
          'their triggers are taken from 0 rows, as autovacuum does (empty premade partitions look like this)',
        advice: 'ANALYZE a table that holds rows; vacuum_recency names those with churn',
      });
    }
    findings.push(summaryFinding('dead_tuples', 'database', `${checked} table(s) checked (sluice's own and user tables ≥ ${t.min_table_mb} MB)`));
    return findings;
  },
};
