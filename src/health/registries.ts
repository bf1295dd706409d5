/**
 * Signals from registries other parts of sluice keep (migration 00008, before
 * the health reports of 00009): each stream's last partition rotation
 * (sluice.partition_runs) and each matview's staleness against its own refresh
 * interval (sluice.matviews).
 */
import { listMatviews } from '../matviews/matview-registry.js';
import { duration, grade, type Finding } from './finding.js';
import { summaryFinding, type HealthCheck } from './context.js';

// Per stream, its newest run: the hourly task rotates streams one after another, so the newest
// run overall would hide an earlier stream's failure behind a later stream's success.
const LAST_ROTATION_PER_STREAM = `
SELECT DISTINCT ON (stream) stream, error, finished_at IS NULL AS unfinished,
       extract(epoch FROM now() - coalesce(finished_at, started_at))::float8 AS age_s
  FROM sluice.partition_runs
 WHERE NOT dry_run
 ORDER BY stream, started_at DESC`;

type Ctx = Parameters<HealthCheck['run']>[0];

async function rotationFindings(ctx: Ctx): Promise<Finding[]> {
  const { rows } = await ctx.db.query<{ stream: string; error: string | null; unfinished: boolean; age_s: number }>(LAST_ROTATION_PER_STREAM);
  if (rows.length === 0) return [summaryFinding('pipeline.rotation', 'sluice.partition_runs', 'no partition rotation recorded yet')];
  const warnAfter = ctx.thresholds.rotation_age_warn_s;
  return rows.map((r) => {
    const failed = r.error !== null;
    const stale = r.age_s >= warnAfter;
    const what = failed ? `failed: ${r.error!.slice(0, 200)}` : r.unfinished ? 'started, not finished' : 'done';
    return {
      check: 'pipeline.rotation',
      target: `stream ${r.stream}`,
      severity: failed || stale ? 'warn' : 'ok',
      value: failed ? 'error' : r.unfinished ? 'unfinished' : 'ok',
      threshold: warnAfter,
      message: `last partition rotation of ${r.stream} ${duration(r.age_s)} ago: ${what}`,
      advice:
        failed || stale
          ? `read the worker logs for sluice_rotate_partitions; SELECT * FROM sluice.partition_runs WHERE stream = '${r.stream}' ORDER BY started_at DESC LIMIT 10`
          : 'nothing to do',
    };
  });
}

async function matviewFindings(ctx: Ctx): Promise<Finding[]> {
  const th = ctx.thresholds;
  return (await listMatviews(ctx.db)).map((m) => {
    const intervalS = Math.max(m.every_s, 1);
    const age = m.age_s ?? Number.POSITIVE_INFINITY;
    const severity = Number.isFinite(age) ? grade(age / intervalS, th.matview_stale_warn_factor, th.matview_stale_critical_factor) : 'warn';
    return {
      check: 'pipeline.matview_staleness',
      target: `matview ${m.name}`,
      severity,
      value: Number.isFinite(age) ? Math.round(age) : 'never',
      threshold: Math.round(intervalS * th.matview_stale_warn_factor),
      message: `matview ${m.name} ${Number.isFinite(age) ? `last refreshed ${duration(age)} ago` : 'never refreshed'}; its interval is ${duration(intervalS)}${m.last_error ? `; last error: ${m.last_error.slice(0, 200)}` : ''}`,
      advice: severity === 'ok' ? 'nothing to do' : 'check the worker logs for its refresh task; `sluice matview refresh <name>` by hand',
    };
  });
}

export const registriesCheck: HealthCheck = {
  name: 'registries',
  async run(ctx) {
    return [...(await rotationFindings(ctx)), ...(await matviewFindings(ctx))];
  },
};
