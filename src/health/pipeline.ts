/**
 * The pipeline's own signals, per stream: staged rows and the age of the
 * oldest (lag), drain liveness (rows staged and no drain progress), the
 * rejects rate, and partition headroom (months premade ahead against
 * premake_months).
 */
import { readPartitions } from '../partitions/catalog.js';
import { monthOf } from '../partitions/months.js';
import { headroomOf } from '../partitions/plan.js';
import { lossEstimateText, stagingLosses } from '../db/crash-sentinel.js';
import { stagingTable } from '../streams/names.js';
import { listStreams } from '../streams/registry.js';
import { count, duration, grade, type Finding, type Severity } from './finding.js';
import type { HealthCheck } from './context.js';

const DRAIN_PROGRESS = `
SELECT extract(epoch FROM now() - max(bucket))::float8 AS last_progress_s,
       coalesce(sum(moved) FILTER (WHERE bucket > now() - interval '1 hour'), 0)::float8 AS moved_1h
  FROM sluice.drain_stats WHERE stream = $1 AND moved > 0`;

const LIVE_DRAINERS = `
SELECT coalesce(sum((plan->>'drainers')::int), 0)::int AS drainers
  FROM sluice.workers WHERE sluice.worker_is_live(id, heartbeat_at, stale_after_ms, $1::int)`;

const REJECTS_1H = `SELECT count(*)::float8 AS n FROM sluice.rejects WHERE stream = $1 AND received_at > now() - interval '1 hour'`;

export const pipelineCheck: HealthCheck = {
  name: 'pipeline',
  async run(ctx) {
    const th = ctx.thresholds;
    const findings: Finding[] = [];
    const drainers = (await ctx.db.query<{ drainers: number }>(LIVE_DRAINERS, [ctx.staleAfterMs])).rows[0]?.drainers ?? 0;
    // Crash recoveries that emptied UNLOGGED staging (sluice.check_crash_sentinel, run by every worker).
    const losses = await stagingLosses(ctx.db);
    const estimate = lossEstimateText(losses);
    findings.push({
      check: 'pipeline.staging_losses',
      target: 'staging',
      severity: losses.lastDay > 0 ? 'critical' : 'ok',
      value: losses.count,
      threshold: 0,
      message: losses.count
        ? `UNLOGGED staging was emptied by a Postgres crash ${count(losses.count)} time(s) (last: server restarted ${losses.lastServerStartedAt?.toISOString()}); ` +
          `events acknowledged as staged and not yet drained were lost${estimate ? `: ${estimate}` : ''}`
        : 'no crash has emptied staging',
      advice: losses.lastDay
        ? "producers re-send what they cannot prove durable (use ack 'durable' for events that must survive a crash); SELECT * FROM sluice.staging_losses"
        : 'nothing to do',
    });
    for (const stream of await listStreams(ctx.db)) {
      const target = `stream ${stream.name}`;
      const staging = stagingTable(stream.name);
      const staged = await ctx.db.query<{ staged: number; oldest_s: number | null }>(
        `SELECT count(*)::float8 AS staged, extract(epoch FROM now() - min(received_at))::float8 AS oldest_s FROM ${staging}`,
      );
      const rows = staged.rows[0]?.staged ?? 0;
      const oldest = Math.max(staged.rows[0]?.oldest_s ?? 0, 0);
      const lag = rows > 0 ? grade(oldest, th.staged_age_warn_s, th.staged_age_critical_s) : 'ok';
      findings.push({
        check: 'pipeline.staging_lag',
        target,
        severity: lag,
        value: Math.round(oldest),
        threshold: th.staged_age_warn_s,
        message: rows > 0 ? `${count(rows)} row(s) staged in ${staging}, the oldest received ${duration(oldest)} ago` : `staging ${staging} is empty`,
        advice: lag === 'ok' ? 'nothing to do' : 'check drain workers (sluice status, sluice budget) and the drain_liveness finding; add --drainers',
      });

      const progress = (await ctx.db.query<{ last_progress_s: number | null; moved_1h: number }>(DRAIN_PROGRESS, [stream.name])).rows[0];
      const sinceProgress = progress?.last_progress_s ?? Number.POSITIVE_INFINITY;
      const stalled = rows > 0 && oldest >= th.drain_stall_s && sinceProgress >= th.drain_stall_s;
      findings.push({
        check: 'pipeline.drain_liveness',
        target,
        severity: stalled ? 'critical' : 'ok',
        value: Number.isFinite(sinceProgress) ? Math.round(sinceProgress) : 'never',
        threshold: th.drain_stall_s,
        message: stalled
          ? `${count(rows)} row(s) staged and no drain progress ${Number.isFinite(sinceProgress) ? `for ${duration(sinceProgress)}` : 'ever recorded'}; ${drainers} drain connection(s) on live workers`
          : `drains keep up (${count(progress?.moved_1h ?? 0)} rows moved in the last hour)`,
        advice: stalled
          ? drainers === 0
            ? 'no live worker drains: start one with --drainers ≥ 1 (sluice worker)'
            : 'drainers are live but not moving rows: read worker logs for a held stream (SQLSTATE), check locks on the durable table'
          : 'nothing to do',
      });

      const rejects = (await ctx.db.query<{ n: number }>(REJECTS_1H, [stream.name])).rows[0]?.n ?? 0;
      const moved = progress?.moved_1h ?? 0;
      const pct = rejects + moved > 0 ? (rejects / (rejects + moved)) * 100 : 0;
      const rejectSeverity = grade(pct, th.rejects_warn_pct, th.rejects_critical_pct);
      findings.push({
        check: 'pipeline.rejects_rate',
        target,
        severity: rejects > 0 ? rejectSeverity : 'ok',
        value: rejects,
        threshold: th.rejects_warn_pct,
        message: `${count(rejects)} reject(s) in the last hour, ${pct.toFixed(2)} % of ${count(rejects + moved)} events`,
        advice: rejects > 0 && rejectSeverity !== 'ok'
          ? `SELECT reason, count(*), min(message) FROM sluice.rejects WHERE stream = '${stream.name}' AND received_at > now() - interval '1 hour' GROUP BY reason`
          : 'nothing to do',
      });

      const head = headroomOf(await readPartitions(ctx.db, stream.name), monthOf(ctx.now()));
      let headroom: Severity = 'ok';
      if (!head.hasCurrent) headroom = 'critical';
      else if (head.monthsAhead < stream.premakeMonths) headroom = 'warn';
      findings.push({
        check: 'pipeline.partition_headroom',
        target,
        severity: headroom,
        value: head.monthsAhead,
        threshold: stream.premakeMonths,
        message: head.hasCurrent
          ? `premade ${head.monthsAhead} month(s) ahead without a gap (premake_months ${stream.premakeMonths})`
          : `NO attached partition for this month (premake_months ${stream.premakeMonths})`,
        advice: headroom === 'ok'
          ? 'nothing to do'
          : `SELECT sluice.premake_partitions('${stream.name}'); check the hourly sluice_rotate_partitions task runs (a live worker) and its logs`,
      });
    }
    return findings;
  },
};
