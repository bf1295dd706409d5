/**
 * Vacuum / analyze recency for tables with churn: a table due a vacuum (dead
 * tuples over its trigger) or an analyze (changes since the last one over its
 * analyze trigger) whose last (auto)vacuum / (auto)analyze is old or missing;
 * and autovacuum disabled on a table.
 */
import { count, duration, grade, type Finding } from './finding.js';
import { summaryFinding, type HealthCheck } from './context.js';
import { analyzeTrigger, inScope, qualified, vacuumTrigger, type TableStats } from './table-stats.js';

function counts(t: TableStats): string {
  return `vacuums ${count(t.vacuums ?? 0)}, analyzes ${count(t.analyzes ?? 0)}`;
}

export const vacuumRecencyCheck: HealthCheck = {
  name: 'vacuum_recency',
  async run(ctx) {
    const th = ctx.thresholds;
    const findings: Finding[] = [];
    let checked = 0;
    for (const t of await ctx.tables()) {
      if (!inScope(t, th.min_table_mb)) continue;
      checked++;
      const name = qualified(t);
      const target = `table ${name}`;
      if (t.autovacuum_disabled_here) {
        findings.push({
          check: 'vacuum_recency.autovacuum_disabled',
          target,
          severity: 'warn',
          value: 'autovacuum_enabled=false',
          threshold: null,
          message: `autovacuum is disabled on this table (reloption); dead tuples and freeze age grow until someone vacuums by hand (${counts(t)})`,
          advice: `ALTER TABLE ${name} RESET (autovacuum_enabled); or schedule VACUUM ${name} yourself`,
        });
      }
      const dead = t.n_dead_tup ?? 0;
      if (dead > vacuumTrigger(t)) {
        const ago = t.vacuumed_s_ago ?? Number.POSITIVE_INFINITY;
        // Never vacuumed: warn (the table may be new); old: by check_postgres' last_vacuum thresholds.
        const severity = Number.isFinite(ago) ? grade(ago, th.vacuum_age_warn_s, th.vacuum_age_critical_s) : 'warn';
        if (severity !== 'ok') {
          findings.push({
            check: 'vacuum_recency.vacuum',
            target,
            severity,
            value: Number.isFinite(ago) ? Math.round(ago) : 'never',
            threshold: th.vacuum_age_warn_s,
            message: `due a vacuum (${count(dead)} dead tuples) and ${Number.isFinite(ago) ? `last vacuumed ${duration(ago)} ago` : 'never vacuumed'} (${counts(t)})`,
            advice: `VACUUM (VERBOSE) ${name}; check autovacuum workers (pg_stat_progress_vacuum) and autovacuum_max_workers`,
          });
        }
      }
      const changed = t.n_mod_since_analyze ?? 0;
      if (changed > analyzeTrigger(t)) {
        const ago = t.analyzed_s_ago ?? Number.POSITIVE_INFINITY;
        const severity = Number.isFinite(ago) ? grade(ago, th.analyze_age_warn_s, th.analyze_age_critical_s) : 'warn';
        if (severity !== 'ok') {
          findings.push({
            check: 'vacuum_recency.analyze',
            target,
            severity,
            value: Number.isFinite(ago) ? Math.round(ago) : 'never',
            threshold: th.analyze_age_warn_s,
            message: `due an analyze (${count(changed)} rows changed since the last) and ${Number.isFinite(ago) ? `last analysed ${duration(ago)} ago` : 'never analysed'}; planner estimates are stale (${counts(t)})`,
            advice: `ANALYZE ${name}`,
          });
        }
      }
    }
    findings.push(summaryFinding('vacuum_recency', 'database', `${checked} table(s) checked for vacuum and analyze recency`));
    return findings;
  },
};
