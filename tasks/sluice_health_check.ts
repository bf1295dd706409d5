/**
 * Task `sluice_health_check` (crontab, every 5 minutes): run the health
 * checks, store the report in sluice.health_reports, log a summary (at warn
 * or error level when something needs a DBA), and prune reports past the
 * worker's --health-retention-days.
 */
import type { Task } from 'graphile-worker';
import { runHealthChecks } from '../src/health/report.js';
import { pruneReports, storeReport, summarise } from '../src/health/store.js';
import type { WorkerContext } from '../src/worker/context.js';

export function sluiceHealthCheckTask(ctx: WorkerContext): Task {
  return async (_payload, helpers) => {
    // One pool connection for the whole report: the checks are short catalog reads.
    const { report, id } = await helpers.withPgClient(async (client) => {
      const r = await runHealthChecks(client, { staleAfterMs: ctx.config.staleAfterMs, clockOffsetMs: ctx.config.clockOffsetMs });
      return { report: r, id: await storeReport(client, r) };
    });
    const summary = { report_id: id, duration_ms: report.durationMs, ...summarise(report) };
    const level = report.status === 'critical' ? 'error' : report.status === 'warn' ? 'warn' : 'info';
    ctx.log[level](summary, `health: ${report.status}`);
    const pruned = await pruneReports(ctx.pool, ctx.config.healthRetentionDays);
    if (pruned > 0) ctx.log.info({ pruned, retention_days: ctx.config.healthRetentionDays }, 'health: pruned old reports');
  };
}
