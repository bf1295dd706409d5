import type { Argv, CommandModule } from 'yargs';
import { REJECTS_RETENTION_DAYS_DEFAULT } from '../config.js';
import { createPool } from '../db/connections.js';
import { lossEstimateText } from '../db/crash-sentinel.js';
import { sleep } from '../timing.js';
import { statusReport, type StatusReport } from '../status/stream-status.js';
import { formatDuration } from '../format.js';
import { assertWatchInterval, printJson, globalOptions, say, withRuntime, type GlobalArgs } from './runtime.js';
import { renderTable } from './table.js';

interface StatusArgs extends GlobalArgs {
  watch?: boolean;
  json?: boolean;
  check?: boolean;
  maxLagS: number;
  interval: number;
}

/** --interval floor: faster refreshes only load the database. */

/** Default --max-lag-s: an oldest staged row older than this makes `status --check` fail. */
const MAX_LAG_S_DEFAULT = 300;

/** What makes `sluice status --check` exit 1 (for cron and monitoring until health reports are wired in). */
export function statusProblems(report: StatusReport, maxLagS: number): string[] {
  const problems: string[] = [];
  const live = report.workers.some((w) => w.live);
  const staged = report.streams.filter((s) => s.staged > 0);
  if (!live && staged.length > 0) {
    problems.push(`no live worker, and rows are staged in ${staged.map((s) => `${s.stream} (${s.staged})`).join(', ')}: start \`sluice worker\``);
  }
  for (const s of report.streams) {
    if (s.oldestStagedAgeS > maxLagS) problems.push(`stream ${s.stream}: oldest staged row waited ${Math.round(s.oldestStagedAgeS)} s (more than --max-lag-s ${maxLagS})`);
  }
  if (report.health?.status === 'critical') problems.push('latest health report is CRITICAL (sluice health for details)');
  return problems;
}

function age(seconds: number): string {
  if (seconds <= 0) return '—';
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 120) return `${seconds.toFixed(1)} s`;
  return formatDuration(seconds);
}

export function renderStatus(report: StatusReport): string {
  const streams = renderTable(
    ['stream', 'staged', 'oldest staged', 'durable/min', 'dups/min', 'durable≈', 'partitions', 'rejects/h', 'rejects/24h', 'rejects', 'oldest reject'],
    report.streams.map((s) => [
      s.stream,
      s.staged,
      age(s.oldestStagedAgeS),
      s.durableLastMinute,
      s.duplicatesLastMinute,
      s.durableEstimate < 0 ? 'not analysed' : s.durableEstimate,
      s.partitions,
      s.rejectsLastHour,
      s.rejectsLastDay,
      s.rejectsTotal,
      s.oldestRejectAt ?? '—',
    ]),
  );
  const r = report.rejects;
  const rejects =
    `rejects kept: ${r.total} (${r.lastDay} in the last 24 h)` +
    (r.oldestAt ? `, oldest ${r.oldestAt}` : '') +
    `; workers prune them after --rejects-retention-days (default ${REJECTS_RETENTION_DAYS_DEFAULT}), hourly`;
  const l = report.stagingLosses;
  const losses = l.count
    ? `\nSTAGING LOST IN A CRASH: ${l.count} time(s), last after the server restart of ${l.lastServerStartedAt?.toISOString()}: ` +
      `events acknowledged as staged and not yet drained were lost${lossEstimateText(l) ? `, ${lossEstimateText(l)}` : ''} (SELECT * FROM sluice.staging_losses)`
    : '';
  const live = report.workers.filter((w) => w.live);
  const workers = live.length
    ? renderTable(
        ['worker', 'host', 'pid', 'budget', 'plan', 'connections', 'heartbeat'],
        live.map((w) => [w.id, w.host, w.pid, w.budget, w.plan.total, w.connections, `${w.heartbeatAgeS.toFixed(1)} s ago`]),
      )
    : 'no live workers (start one with `sluice worker`)';
  const h = report.health;
  const health = h
    ? `health: ${h.status.toUpperCase()} (report of ${h.takenAt}; sluice health for details)` +
      h.worst.map((f) => `\n  [${f.severity}] ${f.check} ${f.target}: ${f.message}`).join('')
    : 'health: no report yet (a worker runs sluice_health_check every 5 minutes; or run sluice health)';
  return `sluice status at ${report.takenAt}\n\n${streams}\n${rejects}${losses}\n\n${workers}\n\n${health}\n`;
}

export const statusCommand: CommandModule<object, StatusArgs> = {
  command: 'status',
  describe: 'Per stream: staged rows, oldest staged row, durable rows in the last minute, rejects; live workers',
  builder: (y) =>
    globalOptions(y)
      .option('watch', { type: 'boolean', describe: 'Refresh until interrupted' })
      .option('interval', { type: 'number', default: 2, describe: 'Seconds between refreshes with --watch' })
      .option('json', { type: 'boolean', describe: 'Print JSON (one object per refresh with --watch)' })
      .option('check', { type: 'boolean', describe: 'Exit 1 (problems on stderr) when rows are staged with no live worker, a stream lags over --max-lag-s, or health is critical' })
      .option('max-lag-s', { type: 'number', default: MAX_LAG_S_DEFAULT, describe: 'With --check: the oldest staged row may wait this many seconds' }) as unknown as Argv<StatusArgs>,
  handler: (argv) =>
    withRuntime(argv, async ({ db, config, signal }) => {
      assertWatchInterval(argv.interval);
      const pool = createPool(db.url, `sluice/${config.workerId}/status`, 1);
      try {
        do {
          const report = await statusReport(pool, config.staleAfterMs);
          if (argv.json) printJson(report);
          else process.stdout.write(`${argv.watch && process.stdout.isTTY ? '\x1b[2J\x1b[H' : ''}${renderStatus(report)}`);
          if (argv.check && !argv.watch) {
            const problems = statusProblems(report, argv.maxLagS);
            for (const problem of problems) say(`status check: ${problem}`, 'warn');
            if (problems.length > 0) process.exitCode = 1;
          }
          if (argv.watch) await sleep(argv.interval * 1000, signal);
        } while (argv.watch && !signal.aborted);
      } finally {
        await pool.end();
      }
    }),
};
