/**
 * `sluice health [--json] [--watch]`: run the health checks now and print them
 * worst first with advice. Exit code (Nagios-style, for cron and CI): 0 ok,
 * 1 warn, 2 critical — of the last report with --watch. Read-only: it needs
 * only the monitoring grants in docs/health.md (the worker's task stores reports).
 */
import type { Argv, CommandModule } from 'yargs';
import { createPool } from '../db/connections.js';
import type { Finding } from '../health/finding.js';
import { exitCodeFor, runHealthChecks, type HealthReport } from '../health/report.js';
import { sleep } from '../timing.js';
import { formatInt } from '../format.js';
import { assertWatchInterval, printJson, globalOptions, withRuntime, type GlobalArgs } from './runtime.js';
import { renderTable } from './table.js';

interface HealthArgs extends GlobalArgs {
  json?: boolean;
  watch?: boolean;
  interval: number;
  all?: boolean;
}

const MARK: Record<Finding['severity'], string> = { critical: 'CRITICAL', warn: 'WARN', ok: 'ok' };

function formatValue(v: Finding['value']): string {
  if (v === null) return '—';
  return typeof v === 'number' ? formatInt(v) : v;
}

export function renderHealth(report: HealthReport, all = false): string {
  const shown = all ? report.findings : report.findings.filter((f) => f.severity !== 'ok');
  const table = shown.length
    ? renderTable(
        ['severity', 'check', 'target', 'value', 'threshold', 'message'],
        shown.map((f) => [MARK[f.severity], f.check, f.target, formatValue(f.value), formatValue(f.threshold), f.message]),
      )
    : 'nothing needs attention';
  const advice = shown
    .filter((f) => f.severity !== 'ok')
    .map((f) => `  [${MARK[f.severity]}] ${f.target}: ${f.advice}`)
    .join('\n');
  const c = report.counts;
  return (
    `sluice health at ${report.takenAt}: ${report.status.toUpperCase()} ` +
    `(${c.critical} critical, ${c.warn} warn, ${c.ok} ok; ${report.durationMs} ms)\n\n${table}\n` +
    (advice ? `\nadvice:\n${advice}\n` : '') +
    (all ? '' : `\n(${c.ok} ok finding(s) hidden; --all shows them)\n`)
  );
}

export const healthCommand: CommandModule<object, HealthArgs> = {
  command: 'health',
  describe: 'Health report: dead tuples, vacuum, freeze age, xmin horizon holders, connections, pipeline lag; exit 0 ok / 1 warn / 2 critical',
  builder: (y) =>
    globalOptions(y)
      .option('json', { type: 'boolean', describe: 'Print the report as JSON (one object per refresh with --watch)' })
      .option('all', { type: 'boolean', describe: 'Also list ok findings' })
      .option('watch', { type: 'boolean', describe: 'Refresh until interrupted' })
      .option('interval', { type: 'number', default: 5, describe: 'Seconds between refreshes with --watch' }) as Argv<HealthArgs>,
  handler: (argv) =>
    withRuntime(argv, async ({ db, config, signal }) => {
      assertWatchInterval(argv.interval);
      const pool = createPool(db.url, `sluice/${config.workerId}/health`, 1);
      let last: HealthReport | undefined;
      try {
        do {
          last = await runHealthChecks(pool, { staleAfterMs: config.staleAfterMs, clockOffsetMs: config.clockOffsetMs });
          if (argv.json) printJson(last);
          else process.stdout.write(`${argv.watch && process.stdout.isTTY ? '\x1b[2J\x1b[H' : ''}${renderHealth(last, argv.all)}`);
          if (argv.watch) await sleep(argv.interval * 1000, signal);
        } while (argv.watch && !signal.aborted);
      } finally {
        await pool.end();
      }
      if (last) process.exitCode = exitCodeFor(last.status);
    }),
};
