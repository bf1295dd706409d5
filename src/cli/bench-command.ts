import { writeFile } from 'node:fs/promises';
import cliProgress from 'cli-progress';
import type { Argv, CommandModule } from 'yargs';
import { ConfigError } from '../config.js';
import { SluiceError } from '../errors.js';
import { toSnakeJson } from '../json-keys.js';
import { BENCH_EVENTS_DEFAULT, BENCH_ROUNDS_DEFAULT, runBench } from '../bench/run-bench.js';
import { renderMarkdown } from '../bench/report.js';
import { TARGET_IDS, unmetTargets, withThresholds, type TargetCheck } from '../bench/targets.js';
import { globalOptions, printJson, say, withRuntime, type GlobalArgs } from './runtime.js';
import { runScaleCommand, SCALE_CHART_DEFAULT, type ScaleArgs } from './bench-scale.js';
import { SCALE_BACKLOG_DEFAULT, SCALE_BUCKET_DEFAULT, SCALE_EVENTS_DEFAULT } from '../bench/scale/scale-run.js';
import { MANY_PARTITIONS_TARGET } from '../bench/scale/many-partitions.js';

interface BenchArgs extends GlobalArgs, Omit<ScaleArgs, 'json'> {
  scale?: boolean;
  events: number;
  rounds: number;
  json?: boolean;
  out?: string;
  check?: boolean;
  target?: string[];
  scenarios?: string[];
  progress?: boolean;
}

/** `--target id=value` (repeatable): the goals a run is judged against instead of the built-in ones. */
export function parseTargetGoals(specs: readonly string[] = []): Map<string, number> {
  const goals = new Map<string, number>();
  for (const spec of specs) {
    const eq = spec.indexOf('=');
    const id = spec.slice(0, eq).trim();
    const value = Number(spec.slice(eq + 1).trim());
    if (eq < 1 || spec.slice(eq + 1).trim() === '' || !Number.isFinite(value)) {
      throw new ConfigError(`invalid --target ${JSON.stringify(spec)}: expected id=number, e.g. ingest_vs_copy=0.7`);
    }
    if (!TARGET_IDS.includes(id)) throw new ConfigError(`--target ${id}: no such target; the targets are ${TARGET_IDS.join(', ')}`);
    goals.set(id, value);
  }
  return goals;
}

function figure(t: TargetCheck, n: number | undefined): string {
  return n === undefined ? '—' : `${Number(n.toPrecision(4))} ${t.unit}`;
}

/** `--check`: say which targets missed (exit 1), or that none could be judged (exit 2). */
function checkTargets(targets: readonly TargetCheck[]): void {
  const judged = targets.filter((t) => t.met !== undefined);
  if (judged.length === 0) {
    throw new ConfigError('--check: no target was measured (the --scenarios given run none of the scenarios a target compares); run without --scenarios, or include a target\'s scenarios');
  }
  const unmet = unmetTargets(targets);
  for (const t of unmet) {
    say(`bench check: target ${t.id} NOT MET: ${figure(t, t.measured)} (median), goal ${t.comparator} ${t.threshold} ${t.unit}`, 'warn', {
      target: t.id,
      measured: t.measured ?? null,
      comparator: t.comparator,
      threshold: t.threshold,
    });
  }
  const notRun = targets.length - judged.length;
  say(`bench check: ${judged.length - unmet.length} of ${judged.length} measured target(s) met${notRun ? `, ${notRun} not run` : ''}`, unmet.length ? 'warn' : 'info', {
    met: judged.length - unmet.length,
    unmet: unmet.map((t) => t.id),
    not_run: targets.filter((t) => t.met === undefined).map((t) => t.id),
  });
  if (unmet.length > 0) process.exitCode = 1;
}

export const benchCommand: CommandModule<object, BenchArgs> = {
  command: 'bench',
  describe: 'Measure sluice against raw COPY, INSERT…SELECT and the alternatives, side by side in one run (use an idle database)',
  builder: (y) =>
    globalOptions(y)
      .option('events', { type: 'number', default: BENCH_EVENTS_DEFAULT, describe: 'Events for the fast paths (slow paths use a tenth)' })
      .option('rounds', { type: 'number', default: BENCH_ROUNDS_DEFAULT, describe: 'Interleaved rounds of the target scenarios; targets are judged on the median round' })
      .option('json', { type: 'boolean', describe: 'Print the full results (settings, options, every figure, the targets) as JSON instead of the tables' })
      .option('out', { type: 'string', describe: 'Also write the full results as JSON to this file' })
      .option('check', { type: 'boolean', describe: 'Exit 1 when a measured target is not met (each one named on stderr); for CI' })
      .option('target', { type: 'string', array: true, describe: `Judge a target against another goal, id=value (repeatable), e.g. ingest_vs_copy=0.7; ids: ${TARGET_IDS.join(', ')}` })
      .option('scenarios', { type: 'string', array: true, describe: 'Only these scenario ids or id prefixes (e.g. limit_ sluice_drain)' })
      .option('progress', { type: 'boolean', describe: 'Show a progress bar (default: when stderr is a terminal)' })
      .option('scale', { type: 'boolean', describe: 'Instead: the scale run (cost as the work grows), end to end for --scale-events, figures per --scale-bucket' })
      .option('scale-events', { type: 'number', default: SCALE_EVENTS_DEFAULT, describe: 'Events the scale run pushes' })
      .option('scale-duration', { type: 'number', describe: 'Instead of --scale-events: push for this many seconds' })
      .option('scale-bucket', { type: 'number', default: SCALE_BUCKET_DEFAULT, describe: 'Events per bucket of the scale figures ("per million")' })
      .option('scale-backlog', { type: 'number', default: SCALE_BACKLOG_DEFAULT, describe: 'Staged events the scale producer may run ahead of the drain' })
      .option('scale-partitions', { type: 'number', default: MANY_PARTITIONS_TARGET, describe: 'Partitions of the stream the scale run times health and partitions list on' })
      .option('chart', { type: 'string', describe: `Scale chart (SVG) file; --no-chart for none (default ${SCALE_CHART_DEFAULT})` }) as Argv<BenchArgs>,
  handler: (argv) =>
    withRuntime(argv, async ({ db, log }) => {
      if (argv.scale) return runScaleCommand(argv, db, log);
      if (!Number.isInteger(argv.events) || argv.events < 100 || argv.events > 50_000_000) {
        throw new SluiceError('invalid_argument', '--events must be an integer from 100 to 50000000');
      }
      if (!Number.isInteger(argv.rounds) || argv.rounds < 1 || argv.rounds > 20) {
        throw new SluiceError('invalid_argument', '--rounds must be an integer from 1 to 20');
      }
      const goals = parseTargetGoals(argv.target);
      const showProgress = argv.progress ?? process.stderr.isTTY === true;
      const bar = showProgress
        ? new cliProgress.SingleBar({ format: ' bench |{bar}| {value}/{total} {scenario}', stream: process.stderr, hideCursor: true }, cliProgress.Presets.shades_classic)
        : undefined;
      let started = false;
      const measured = await runBench({
        url: db.url,
        log,
        events: argv.events,
        rounds: argv.rounds,
        only: argv.scenarios,
        onScenario: (i, total, scenario, round) => {
          if (bar) {
            if (!started) bar.start(total, 0, { scenario: '' });
            started = true;
            bar.update(i, { scenario: `round ${round + 1}: ${scenario.title}` });
          } else {
            say(`bench [${i + 1}/${total}] round ${round + 1}: ${scenario.title}`);
          }
        },
      }).finally(() => {
        if (started) {
          bar?.update(bar.getTotal(), { scenario: 'done' });
          bar?.stop();
        }
      });
      const report = goals.size ? { ...measured, targets: withThresholds(measured.targets, goals) } : measured;
      if (argv.json) printJson(report);
      else {
        process.stdout.write(
          `\nsluice bench — ${report.startedAt} — ${report.machine.cores} cores, ${report.postgres.version.split(' on ')[0]}, ${Math.round(report.durationS)} s\n\n${renderMarkdown(report)}\n`,
        );
      }
      if (argv.out) {
        await writeFile(argv.out, `${toSnakeJson(report, 2)}\n`);
        say(`wrote ${argv.out}`);
      }
      if (argv.check) checkTargets(report.targets);
    }),
};
