import { writeFile } from 'node:fs/promises';
import cliProgress from 'cli-progress';
import type { Argv, CommandModule } from 'yargs';
import { SluiceError } from '../errors.js';
import { BENCH_EVENTS_DEFAULT, runBench } from '../bench/run-bench.js';
import { renderMarkdown } from '../bench/report.js';
import { globalOptions, say, withRuntime, type GlobalArgs } from './runtime.js';

interface BenchArgs extends GlobalArgs {
  events: number;
  json?: string;
  scenarios?: string[];
  progress?: boolean;
}

export const benchCommand: CommandModule<object, BenchArgs> = {
  command: 'bench',
  describe: 'Measure sluice against raw COPY, INSERT…SELECT and the alternatives, side by side in one run (use an idle database)',
  builder: (y) =>
    globalOptions(y)
      .option('events', { type: 'number', default: BENCH_EVENTS_DEFAULT, describe: 'Events for the fast paths (slow paths use a tenth)' })
      .option('json', { type: 'string', describe: 'Also write the full results (settings, options, every figure) to this JSON file' })
      .option('scenarios', { type: 'string', array: true, describe: 'Only these scenario ids or id prefixes (e.g. limit_ sluice_drain)' })
      .option('progress', { type: 'boolean', describe: 'Show a progress bar (default: when stderr is a terminal)' }) as Argv<BenchArgs>,
  handler: (argv) =>
    withRuntime(argv, async ({ db, log }) => {
      if (!Number.isInteger(argv.events) || argv.events < 100 || argv.events > 50_000_000) {
        throw new SluiceError('invalid_argument', '--events must be an integer from 100 to 50000000');
      }
      const showProgress = argv.progress ?? process.stderr.isTTY === true;
      const bar = showProgress
        ? new cliProgress.SingleBar({ format: ' bench |{bar}| {value}/{total} {scenario}', stream: process.stderr, hideCursor: true }, cliProgress.Presets.shades_classic)
        : undefined;
      let started = false;
      const report = await runBench({
        url: db.url,
        log,
        events: argv.events,
        only: argv.scenarios,
        onScenario: (i, total, scenario) => {
          if (bar) {
            if (!started) bar.start(total, 0, { scenario: '' });
            started = true;
            bar.update(i, { scenario: scenario.title });
          } else {
            say(`bench [${i + 1}/${total}] ${scenario.title}`);
          }
        },
      }).finally(() => {
        if (started) {
          bar?.update(bar.getTotal(), { scenario: 'done' });
          bar?.stop();
        }
      });
      process.stdout.write(
        `\nsluice bench — ${report.startedAt} — ${report.machine.cores} cores, ${report.postgres.version.split(' on ')[0]}, ${Math.round(report.durationS)} s\n\n${renderMarkdown(report)}\n`,
      );
      if (argv.json) {
        await writeFile(argv.json, `${JSON.stringify(report, null, 2)}\n`);
        say(`wrote ${argv.json}`);
      }
    }),
};
