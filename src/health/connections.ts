/**
 * Connections: client backends against max_connections minus the reserved
 * slots; per live worker, its actual connections (application_name
 * `sluice/<worker-id>/<role>`) against the budget it declared in
 * sluice.workers (over budget = critical); stale registrations.
 */
import { workerStatuses } from '../status/stream-status.js';
import { count, duration, grade, type Finding } from './finding.js';
import type { HealthCheck } from './context.js';

// reserved_connections exists from PG16; missing_ok keeps PG15 working.
const TOTALS = `
SELECT (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')::int AS used,
       current_setting('max_connections')::int AS max_connections,
       current_setting('superuser_reserved_connections')::int
         + coalesce(nullif(current_setting('reserved_connections', true), '')::int, 0) AS reserved`;

export const connectionsCheck: HealthCheck = {
  name: 'connections',
  async run(ctx) {
    const th = ctx.thresholds;
    const findings: Finding[] = [];
    const { rows } = await ctx.db.query<{ used: number; max_connections: number; reserved: number }>(TOTALS);
    const total = rows[0];
    if (total) {
      const usable = Math.max(total.max_connections - total.reserved, 1);
      const pct = (total.used / usable) * 100;
      const severity = grade(pct, th.connections_warn_pct, th.connections_critical_pct);
      findings.push({
        check: 'connections.total',
        target: 'server',
        severity,
        value: total.used,
        threshold: Math.floor((usable * th.connections_warn_pct) / 100),
        message: `${total.used} client connections of ${usable} usable (max_connections ${total.max_connections} − ${total.reserved} reserved): ${pct.toFixed(0)} %`,
        advice: severity === 'ok' ? 'nothing to do' : 'see who holds them: SELECT usename, application_name, state, count(*) FROM pg_stat_activity GROUP BY 1, 2, 3; sluice budget',
      });
    }
    // The same registrations and connection counts as sluice status (one query, workerStatuses).
    for (const w of await workerStatuses(ctx.db, ctx.staleAfterMs)) {
      if (!w.live) {
        findings.push({
          check: 'connections.stale_worker',
          target: `worker ${w.id}`,
          severity: 'warn',
          value: Math.round(w.heartbeatAgeS),
          threshold: null,
          message: `registration of worker ${w.id} (${w.host} pid ${w.pid}) is stale: last heartbeat ${duration(w.heartbeatAgeS)} ago` +
            (w.connections > 0 ? `, yet ${w.connections} connection(s) still carry its name` : ''),
          advice: `if that process is gone: DELETE FROM sluice.workers WHERE id = '${w.id}' (workers prune rows older than a day); else find why it stopped heartbeating`,
        });
        continue;
      }
      const over = w.connections > w.budget;
      findings.push({
        check: 'connections.worker_budget',
        target: `worker ${w.id}`,
        severity: over ? 'critical' : 'ok',
        value: w.connections,
        threshold: w.budget,
        message: `worker ${w.id} (${w.host} pid ${w.pid}) holds ${count(w.connections)} connection(s) against its declared budget ${w.budget}` +
          (over ? ': OVER BUDGET, the cluster-wide budget sum no longer protects max_connections' : ''),
        advice: over
          ? `SELECT pid, application_name, state, backend_start FROM pg_stat_activity WHERE application_name LIKE 'sluice/${w.id}/%'; restart the worker or raise --max-connections`
          : 'nothing to do',
      });
    }
    return findings;
  },
};
