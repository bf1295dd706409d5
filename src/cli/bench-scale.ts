/**
 * `sluice bench --scale`: run the scale benchmark, print its per-bucket table
 * and targets, write the chart, and the JSON record (stdout or a file).
 * The flags are declared in bench-command.ts with the other bench flags.
 */
import { writeFile } from 'node:fs/promises';
import { SluiceError } from '../errors.js';
import type { Logger } from '../logger.js';
import { renderScaleMarkdown } from '../bench/scale/scale-report.js';
import { assertChartAvailable, renderScaleChart } from '../bench/scale/scale-chart.js';
import { runScale, SCALE_BUCKET_DEFAULT, SCALE_EVENTS_DEFAULT, SCALE_MAX_EVENTS } from '../bench/scale/scale-run.js';
import { printJson, say } from './runtime.js';
import { toSnakeJson } from '../json-keys.js';

/** Where the chart goes when --chart is not given (the current directory). */
export const SCALE_CHART_DEFAULT = 'sluice-bench-scale.svg';

export interface ScaleArgs {
  readonly scaleEvents?: number;
  readonly scaleDuration?: number;
  readonly scaleBucket?: number;
  readonly scaleBacklog?: number;
  readonly scalePartitions?: number;
  /** A file, or false (--no-chart); undefined: SCALE_CHART_DEFAULT. */
  readonly chart?: string | false;
  /** Print the JSON record to stdout instead of the tables (every command's --json). */
  readonly json?: boolean;
  readonly out?: string;
}

function integer(value: number | undefined, flag: string, min: number, max: number): void {
  if (value !== undefined && (!Number.isInteger(value) || value < min || value > max)) {
    throw new SluiceError('invalid_argument', `${flag} must be an integer from ${min} to ${max}`);
  }
}

export async function runScaleCommand(argv: ScaleArgs, db: { url: string }, log: Logger): Promise<void> {
  const scaleEvents = argv.scaleEvents ?? SCALE_EVENTS_DEFAULT;
  const bucket = argv.scaleBucket ?? SCALE_BUCKET_DEFAULT;
  integer(scaleEvents, '--scale-events', 1_000, SCALE_MAX_EVENTS);
  integer(argv.scaleDuration, '--scale-duration', 1, 86_400);
  integer(bucket, '--scale-bucket', 1_000, SCALE_MAX_EVENTS);
  integer(argv.scaleBacklog, '--scale-backlog', 1_000, 10_000_000);
  integer(argv.scalePartitions, '--scale-partitions', 1, 5_000);
  const events = argv.scaleDuration === undefined ? scaleEvents : SCALE_MAX_EVENTS;
  if (bucket > events) throw new SluiceError('invalid_argument', '--scale-bucket must not exceed --scale-events');
  let chart = argv.chart === false ? undefined : argv.chart || SCALE_CHART_DEFAULT;
  if (chart) {
    try {
      await assertChartAvailable();
    } catch (err) {
      // Asked for by name: refuse before the run. The default chart is a convenience: skip it.
      if (argv.chart || !(err instanceof SluiceError)) throw err;
      say(`bench --scale: no chart: ${err.message}`);
      chart = undefined;
    }
  }
  const report = await runScale({
    url: db.url,
    log,
    events,
    durationS: argv.scaleDuration,
    bucket,
    backlog: argv.scaleBacklog,
    manyPartitions: argv.scalePartitions,
    onPhase: (phase) => say(`bench --scale: ${phase}`),
    onBucket: (b) =>
      say(`bench --scale: ${b.events_to.toLocaleString('en-US')} events, ${b.durable_events_per_s.toLocaleString('en-US')} durable events/s, worker RSS ${b.worker_rss_mb ?? '—'} MB, ${b.bytes_per_event} bytes/event`),
  });
  // A chart that cannot be written (a bad path) fails the command, but after the figures are out.
  let chartError: unknown;
  if (chart) {
    const title = `sluice bench --scale, ${report.started_at.slice(0, 10)}: ${report.machine.cores} cores, ${report.postgres.version.split(' on ')[0]}`;
    try {
      await writeFile(chart, await renderScaleChart(report.buckets, title));
      report.chart = chart;
      say(`wrote ${chart}`);
    } catch (err) {
      chartError = err;
    }
  }
  // As every command: --json prints the record (one JSON document) instead of the tables; --out writes it too.
  if (argv.json) printJson(report);
  else {
    process.stdout.write(
      `\nsluice bench --scale — ${report.started_at} — ${report.machine.cores} cores, ${report.postgres.version.split(' on ')[0]}, ${Math.round(report.duration_s)} s\n\n${renderScaleMarkdown(report)}\n`,
    );
  }
  if (argv.out) {
    await writeFile(argv.out, `${toSnakeJson(report, 2)}\n`);
    say(`wrote ${argv.out}`);
  }
  if (chartError) throw chartError;
}
