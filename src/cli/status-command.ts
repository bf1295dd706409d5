import type { Argv, CommandModule } from 'yargs';
import { createPool } from '../db/connections.js';
import { sleep } from '../errors.js';
import { statusReport, type StatusReport } from '../status/stream-status.js';
import { globalOptions, withRuntime, type GlobalArgs } from './runtime.js';
import { renderTable } from './table.js';

interface StatusArgs extends GlobalArgs {
  watch?: boolean;
  json?: boolean;
  interval: number;
}

function age(seconds: number): string {
  if (seconds <= 0) return '—';
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 120) return `${seconds.toFixed(1)} s`;
  return `${(seconds / 60).toFixed(1)} min`;
}

export function renderStatus(report: StatusReport): string {
  const streams = renderTable(
    ['stream', 'staged', 'oldest staged', 'durable/min', 'dups/min', 'durable≈', 'partitions', 'rejects/h', 'rejects'],
    report.streams.map((s) => [
      s.stream,
      s.staged,
      age(s.oldestStagedAgeS),
      s.durableLastMinute,
      s.duplicatesLastMinute,
      s.durableEstimate < 0 ? 'not analysed' : s.durableEstimate,
      s.partitions,
      s.rejectsLastHour,
      s.rejectsTotal,
    ]),
  );
  const live = report.workers.filter((w) => w.live);
  const workers = live.length
    ? renderTable(
        ['worker', 'host', 'pid', 'budget', 'plan', 'connections', 'heartbeat'],
        live.map((w) => [w.id, w.host, w.pid, w.budget, w.plan.total, w.connections, `${w.heartbeatAgeS.toFixed(1)} s ago`]),
      )
    : 'no live workers (start one with `sluice worker`)';
  return `sluice status at ${report.takenAt}\n\n${streams}\n\n${workers}\n`;
}

export const statusCommand: CommandModule<object, StatusArgs> = {
  command: 'status',
  describe: 'Per stream: staged rows, oldest staged row, durable rows in the last minute, rejects; live workers',
  builder: (y) =>
    globalOptions(y)
      .option('watch', { type: 'boolean', describe: 'Refresh until interrupted' })
      .option('interval', { type: 'number', default: 2, describe: 'Seconds between refreshes with --watch' })
      .option('json', { type: 'boolean', describe: 'Print JSON (one object per refresh with --watch)' }) as Argv<StatusArgs>,
  handler: (argv) =>
    withRuntime(argv, async ({ db, config, signal }) => {
      const pool = createPool(db.url, `sluice/${config.workerId}/status`, 1);
      try {
        do {
          const report = await statusReport(pool, config.staleAfterMs);
          if (argv.json) process.stdout.write(`${JSON.stringify(report)}\n`);
          else process.stdout.write(`${argv.watch && process.stdout.isTTY ? '\x1b[2J\x1b[H' : ''}${renderStatus(report)}`);
          if (argv.watch) await sleep(argv.interval * 1000, signal);
        } while (argv.watch && !signal.aborted);
      } finally {
        await pool.end();
      }
    }),
};
