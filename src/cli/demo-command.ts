import type { Argv, CommandModule } from 'yargs';
import { describePlan } from '../db/budget.js';
import { runDemo, type DemoReport } from '../demo/run-demo.js';
import { SluiceError } from '../errors.js';
import { formatInt, formatRate } from '../format.js';
import { printJson, globalOptions, say, withRuntime, type GlobalArgs } from './runtime.js';
import { renderTable } from './table.js';

interface DemoArgs extends GlobalArgs {
  events: number;
  json?: boolean;
}

function render(r: DemoReport): string {
  const rows: Array<[string, string]> = [
    ['events generated', `${formatInt(r.generated)} (${formatInt(r.unique)} unique + ${formatInt(r.resends)} re-sends) + ${r.invalidSent} invalid`],
    ['via SQL add_job', `${formatInt(r.sqlEvents)} events in ${r.sqlJobs} sluice_ingest jobs`],
    ['staged (COPY)', `${formatInt(r.generated + r.invalidSent)} in ${(r.stagedMs / 1000).toFixed(2)} s (${formatRate(r.generated, r.stagedMs)})`],
    ['durable rows', `${formatInt(r.durableRows)} of ${formatInt(r.expectedDurable)} expected (each unique valid event exactly once)`],
    ['duplicates collapsed', `${formatInt(r.duplicatesCollapsed)} by ON CONFLICT DO NOTHING in the drain`],
    ['rejected', `${r.rejects.reduce((n, x) => n + x.count, 0)} → sluice.rejects`],
    ['end to end', `${(r.durableMs / 1000).toFixed(2)} s until durable (${formatRate(r.expectedDurable, r.durableMs)})`],
    ['connections', `peak ${r.peakConnections} of budget ${r.budget} (plan: ${describePlan(r.plan)})`],
    ['staging left', `${r.stagingLeft} rows`],
  ];
  const width = Math.max(...rows.map(([k]) => k.length));
  const body = rows.map(([k, v]) => `  ${k.padEnd(width)}  ${v}`).join('\n');
  const rejects = renderTable(['reason', 'count', 'message'], r.rejects.map((x) => [x.reason, x.count, x.example]), { maxWidth: { message: 90 } })
    .split('\n')
    .map((l) => `    ${l}`)
    .join('\n');
  const verdict = r.ok ? 'all counts check out' : `PROBLEMS:\n${r.problems.map((p) => `  - ${p}`).join('\n')}`;
  return `\nsluice demo — run ${r.runId}\n\n${body}\n\n  rejects by reason:\n${rejects}\n\n${verdict}\n`;
}

export const demoCommand: CommandModule<object, DemoArgs> = {
  command: 'demo',
  describe: 'Run the pipeline end to end on generated events and print what happened (embedded Postgres by default)',
  builder: (y) =>
    globalOptions(y)
      .option('events', { type: 'number', default: 100_000, describe: 'Events to generate (1% are re-sends)' })
      .option('json', { type: 'boolean', describe: 'Print the report as JSON' }) as Argv<DemoArgs>,
  handler: (argv) =>
    withRuntime(argv, async ({ config, db, log, signal }) => {
      if (!Number.isInteger(argv.events) || argv.events < 1 || argv.events > 10_000_000) {
        throw new SluiceError('invalid_argument', '--events must be an integer from 1 to 10000000');
      }
      const report = await runDemo({ config, connectionString: db.url, log, events: argv.events, signal, onPhase: (p) => say(`demo: ${p}`) });
      if (argv.json) printJson(report);
      else process.stdout.write(render(report));
      if (!report.ok) process.exitCode = 1;
    }),
};
