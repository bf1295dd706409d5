/** `sluice matview add|list|refresh|enable|disable|drop`: materialized views the worker refreshes on a schedule. */
import type { Argv, CommandModule } from 'yargs';
import { connectClient } from '../db/connections.js';
import { refreshMatview } from '../matviews/refresh.js';
import {
  addMatview,
  assertMatviewName,
  dropMatview,
  EXAMPLE_MATVIEW,
  listMatviews,
  MATVIEW_SCHEMA,
  parseInterval,
  parseUniqueColumns,
  setMatviewEnabled,
} from '../matviews/matview-registry.js';
import { SluiceError } from '../errors.js';
import { printJson, globalOptions, say, withRuntime, type GlobalArgs } from './runtime.js';
import { renderTable } from './table.js';

const APP = 'sluice/cli/matview';

interface AddArgs extends GlobalArgs {
  name: string;
  sql?: string;
  unique?: string;
  every: string;
  existing?: boolean;
  allowBlocking?: boolean;
  statementTimeoutMs?: number;
  example?: boolean;
}

const add: CommandModule<object, AddArgs> = {
  command: 'add <name>',
  describe: `Create ${MATVIEW_SCHEMA}.<name> AS --sql with a unique index on --unique, refreshed CONCURRENTLY every --every`,
  builder: (y) =>
    globalOptions(y)
      .positional('name', { type: 'string', demandOption: true, describe: `View name (created in schema ${MATVIEW_SCHEMA}): ^[a-z][a-z0-9_]{0,62}$` })
      .option('sql', { type: 'string', describe: "The view's query, e.g. 'SELECT … FROM sluice_data.events GROUP BY …'" })
      .option('unique', { type: 'string', describe: "Columns of its unique index (REFRESH CONCURRENTLY needs one), e.g. 'day, type'" })
      .option('every', { type: 'string', default: '1m', describe: 'Refresh interval: 30s, 1m, 15m, 1h, 1d (the worker checks every minute)' })
      .option('existing', { type: 'boolean', describe: `Register a materialized view you made in ${MATVIEW_SCHEMA} (its unique index is checked)` })
      .option('allow-blocking', { type: 'boolean', describe: 'Refresh without CONCURRENTLY (blocks readers while it runs)' })
      .option('statement-timeout-ms', { type: 'number', describe: 'A refresh is cancelled after this long (default 300000)' })
      .option('example', { type: 'boolean', describe: `The worked example: ${EXAMPLE_MATVIEW.name}, events per day and type on the events stream` }) as Argv<AddArgs>,
  handler: (argv) =>
    withRuntime(argv, async ({ db }) => {
      const spec = argv.example
        ? { ...EXAMPLE_MATVIEW, name: argv.name }
        : {
            name: argv.name,
            sql: argv.sql,
            uniqueColumns: uniqueColumnsOf(argv),
            everyS: parseInterval(argv.every),
            existing: argv.existing,
            allowBlocking: argv.allowBlocking,
            statementTimeoutMs: argv.statementTimeoutMs,
          };
      assertMatviewName(spec.name);
      if (!argv.example && !argv.existing && !argv.sql) throw new SluiceError('missing_sql', 'sluice matview add needs --sql (or --existing, or --example)');
      const client = await connectClient(db.url, APP);
      try {
        await addMatview(client, spec);
        say(
          argv.existing
            ? `${MATVIEW_SCHEMA}.${spec.name} registered; a running worker refreshes it every ${argv.every} (or: sluice matview refresh ${spec.name})`
            : `${MATVIEW_SCHEMA}.${spec.name} registered; a running worker populates it within a minute (or: sluice matview refresh ${spec.name})`,
        );
      } finally {
        await client.end();
      }
    }),
};

/** --unique is required: REFRESH … CONCURRENTLY needs a unique index (made on these columns, or checked with --existing). */
function uniqueColumnsOf(argv: AddArgs): string[] {
  if (argv.unique === undefined || argv.unique.trim() === '') {
    throw new SluiceError(
      'invalid_unique_columns',
      argv.existing
        ? '--existing needs --unique: the columns of the unique index the view has (REFRESH … CONCURRENTLY needs one)'
        : '--unique is required: the columns sluice makes the unique index on (REFRESH … CONCURRENTLY needs one)',
    );
  }
  return parseUniqueColumns(argv.unique);
}

function ago(seconds: number | null): string {
  if (seconds === null) return 'never';
  if (seconds < 120) return `${Math.round(seconds)} s ago`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min ago`;
  return `${(seconds / 3600).toFixed(1)} h ago`;
}

const list: CommandModule<object, GlobalArgs & { json?: boolean }> = {
  command: 'list',
  describe: 'Registered views: interval, last refresh, duration, staleness against the interval, enabled, last error',
  builder: (y) => globalOptions(y).option('json', { type: 'boolean', describe: 'Print JSON' }) as Argv<GlobalArgs & { json?: boolean }>,
  handler: (argv) =>
    withRuntime(argv, async ({ db }) => {
      const client = await connectClient(db.url, APP);
      try {
        const views = (await listMatviews(client)).map((v) => ({ ...v, stale: v.age_s === null || v.age_s > v.every_s * 2 }));
        if (argv.json) {
          printJson(views);
          return;
        }
        process.stdout.write(
          `${renderTable(
            ['view', 'every', 'enabled', 'last status', 'last refresh', 'duration', 'rows', 'stale', 'failures', 'next attempt', 'last error'],
            views.map((v) => [
              `${MATVIEW_SCHEMA}.${v.name}`,
              `${v.every_s} s`,
              v.enabled ? 'yes' : 'no',
              v.last_status ?? '—',
              ago(v.age_s),
              v.last_duration_ms === null ? '—' : `${v.last_duration_ms} ms`,
              v.last_rows ?? '—',
              v.stale ? 'yes' : 'no',
              v.failures,
              v.next_attempt_at.toISOString(),
              v.last_error ?? '',
            ]),
            { maxWidth: { 'last error': 80 } },
          )}\n`,
        );
      } finally {
        await client.end();
      }
    }),
};

function byName(command: string, describe: string, run: (client: Awaited<ReturnType<typeof connectClient>>, name: string, log: import('../logger.js').Logger) => Promise<void>): CommandModule<object, GlobalArgs & { name: string }> {
  return {
    command: `${command} <name>`,
    describe,
    builder: (y) => globalOptions(y).positional('name', { type: 'string', demandOption: true }) as Argv<GlobalArgs & { name: string }>,
    handler: (argv) =>
      withRuntime(argv, async ({ db, log }) => {
        assertMatviewName(argv.name);
        const client = await connectClient(db.url, APP);
        try {
          await run(client, argv.name, log);
        } finally {
          await client.end();
        }
      }),
  };
}

const refresh: CommandModule<object, GlobalArgs & { name: string; json?: boolean }> = {
  command: 'refresh <name>',
  describe: 'Refresh a view now (CONCURRENTLY unless unpopulated or --allow-blocking), even when its sources are unchanged',
  builder: (y) =>
    globalOptions(y)
      .positional('name', { type: 'string', demandOption: true })
      .option('json', { type: 'boolean', describe: 'Print the outcome as JSON' }) as Argv<GlobalArgs & { name: string; json?: boolean }>,
  handler: (argv) =>
    withRuntime(argv, async ({ db, log }) => {
      assertMatviewName(argv.name);
      const client = await connectClient(db.url, APP);
      try {
        const r = await refreshMatview(client, argv.name, log, { force: true });
        if (r.status === 'failed') throw new SluiceError('refresh_failed', `refresh of ${argv.name} failed: ${r.error}`);
        say(r.status === 'busy' ? `${argv.name} is being refreshed by another session right now` : `${argv.name}: ${r.status} (${r.mode}), ${r.rows} rows in ${r.durationMs} ms`);
        if (argv.json) printJson(r);
      } finally {
        await client.end();
      }
    }),
};
const enable = byName('enable', 'Resume scheduled refreshes (due at once)', async (client, name) => setMatviewEnabled(client, name, true));
const disable = byName('disable', 'Pause scheduled refreshes', async (client, name) => setMatviewEnabled(client, name, false));
const drop = byName('drop', 'Unregister a view; drops it too when sluice created it', async (client, name) => {
  const dropped = await dropMatview(client, name);
  say(dropped ? `dropped ${MATVIEW_SCHEMA}.${name}` : `unregistered ${name} (the view you made is kept)`);
});

export const matviewCommand: CommandModule = {
  command: 'matview <command>',
  describe: 'Materialized views refreshed on a schedule by the worker (CONCURRENTLY, skipped when sources are unchanged)',
  builder: (y) => y.command(add).command(list).command(refresh).command(enable).command(disable).command(drop).demandCommand(1),
  handler: () => undefined,
};
