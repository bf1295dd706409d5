import type { Argv, CommandModule } from 'yargs';
import { SluiceError } from '../errors.js';
import { parseIndexSpec } from '../streams/index-spec.js';
import { createStream, dropStream, listStreams, parseColumnSpec, requireStream, STREAM_REFRESH_MS } from '../streams/registry.js';
import { assertStreamName, RESERVED_STREAM_NAME_SUFFIX, STREAM_NAME_PATTERN } from '../streams/names.js';
import { STREAM_DEFAULTS, STREAM_SETTING_RANGES } from '../streams/stream-defaults.js';
import { connectClient } from '../db/connections.js';
import { printJson, globalOptions, say, withRuntime, type GlobalArgs } from './runtime.js';
import { renderTable } from './table.js';

/** What a change means for running workers and clients (they poll versions, see STREAM_REFRESH_MS). */
export const PICKUP_NOTE = `running workers and ingest clients pick this up within ${STREAM_REFRESH_MS / 1000} s`;

/** A numeric stream setting's option: its default and range from src/streams/stream-defaults.ts (SQL applies the default). */
function streamSetting(key: keyof typeof STREAM_SETTING_RANGES & keyof typeof STREAM_DEFAULTS, describe: string) {
  const { min, max } = STREAM_SETTING_RANGES[key];
  return { type: 'number' as const, describe: `${describe} (${min} to ${max})`, defaultDescription: String(STREAM_DEFAULTS[key]) };
}

interface CreateArgs extends GlobalArgs {
  name: string;
  column?: string[];
  index?: string[];
  premakeMonths?: number;
  maxPastMonths?: number;
  drainBatchRows?: number;
  maxEventBytes?: number;
  requireEventId?: boolean;
  json?: boolean;
}

const create: CommandModule<object, CreateArgs> = {
  command: 'create <name>',
  describe: 'Create a stream: UNLOGGED staging, durable table partitioned by month, indexes',
  builder: (y) =>
    globalOptions(y)
      .positional('name', { type: 'string', demandOption: true, describe: `Stream name: ${STREAM_NAME_PATTERN.source}, not matching ${RESERVED_STREAM_NAME_SUFFIX.source}` })
      .option('column', { type: 'string', array: true, describe: 'Declared column name:type (repeatable), e.g. --column user_id:bigint' })
      .option('index', { type: 'string', array: true, describe: "Btree index on the durable table (repeatable): 'col[,col]' or 'col WHERE kind = ''buy'''" })
      .option('premake-months', streamSetting('premakeMonths', 'Future monthly partitions kept ready'))
      .option('max-past-months', streamSetting('maxPastMonths', 'How late an event may arrive, in months'))
      .option('drain-batch-rows', streamSetting('drainBatchRows', 'Rows per drain transaction'))
      .option('max-event-bytes', streamSetting('maxEventBytes', 'Largest accepted event as sent (raw text, else its JSON)'))
      .option('require-event-id', {
        type: 'boolean',
        describe: 'Reject events without event_id (--no-require-event-id generates one)',
        defaultDescription: String(STREAM_DEFAULTS.requireEventId),
      })
      .option('json', { type: 'boolean', describe: 'Print the created definition as JSON' }) as Argv<CreateArgs>,
  handler: (argv) =>
    withRuntime(argv, async ({ db }) => {
      assertStreamName(argv.name);
      const columns = (argv.column ?? []).map(parseColumnSpec);
      const indexes = (argv.index ?? []).map(parseIndexSpec);
      const client = await connectClient(db.url, 'sluice/cli/stream');
      try {
        const stream = await createStream(client, {
          name: argv.name,
          columns,
          indexes,
          premakeMonths: argv.premakeMonths,
          maxPastMonths: argv.maxPastMonths,
          drainBatchRows: argv.drainBatchRows,
          maxEventBytes: argv.maxEventBytes,
          requireEventId: argv.requireEventId,
        });
        say(
          `created stream ${stream.name}: staging sluice_staging.${stream.name} (UNLOGGED), durable sluice_data.${stream.name} ` +
            `(monthly partitions), columns: ${['event_id uuid', 'occurred_at timestamptz', ...stream.columns.map((c) => `${c.name} ${c.type}`), 'payload jsonb'].join(', ')}` +
            (stream.indexes.length ? `; indexes: ${stream.indexes.map((i) => i.name).join(', ')}` : '') +
            ` (version ${stream.version}; ${PICKUP_NOTE})`,
        );
        if (argv.json) printJson(stream);
      } finally {
        await client.end();
      }
    }),
};

interface ListArgs extends GlobalArgs {
  json?: boolean;
}

const list: CommandModule<object, ListArgs> = {
  command: 'list',
  describe: 'List streams',
  builder: (y) => globalOptions(y).option('json', { type: 'boolean', describe: 'Print JSON' }),
  handler: (argv) =>
    withRuntime(argv, async ({ db }) => {
      const client = await connectClient(db.url, 'sluice/cli/stream');
      try {
        const streams = await listStreams(client);
        if (argv.json) {
          printJson(streams);
          return;
        }
        process.stdout.write(
          `${renderTable(
            ['stream', 'columns', 'indexes', 'premake', 'max past', 'batch rows', 'max bytes', 'event_id', 'version'],
            streams.map((s) => [
              s.name,
              s.columns.map((c) => `${c.name}:${c.type}`).join(', ') || '—',
              s.indexes.map((i) => i.name).join(', ') || '—',
              s.premakeMonths,
              s.maxPastMonths,
              s.drainBatchRows,
              s.maxEventBytes,
              s.requireEventId ? 'required' : 'generated',
              s.version,
            ]),
          )}\n`,
        );
      } finally {
        await client.end();
      }
    }),
};

interface ShowArgs extends GlobalArgs {
  name: string;
  json?: boolean;
}

const show: CommandModule<object, ShowArgs> = {
  command: 'show <name>',
  describe: "One stream's definition: columns, indexes, settings, version",
  builder: (y) =>
    globalOptions(y)
      .positional('name', { type: 'string', demandOption: true })
      .option('json', { type: 'boolean', describe: 'Print JSON' }) as Argv<ShowArgs>,
  handler: (argv) =>
    withRuntime(argv, async ({ db }) => {
      const client = await connectClient(db.url, 'sluice/cli/stream');
      try {
        const s = await requireStream(client, argv.name);
        if (argv.json) {
          printJson(s);
          return;
        }
        const rows: Array<[string, string]> = [
          ['stream', s.name],
          ['staging', `sluice_staging.${s.name} (UNLOGGED)`],
          ['durable', `sluice_data.${s.name} (monthly partitions)`],
          ['columns', ['event_id uuid', 'occurred_at timestamptz', ...s.columns.map((c) => `${c.name} ${c.type}`), 'payload jsonb'].join(', ')],
          ['indexes', s.indexes.map((i) => `${i.name} (${i.columns.join(', ')})${i.predicate ? ` WHERE ${i.predicate}` : ''}`).join('; ') || '—'],
          ['premake months', String(s.premakeMonths)],
          ['max past months', String(s.maxPastMonths)],
          ['drain batch rows', String(s.drainBatchRows)],
          ['max event bytes', String(s.maxEventBytes)],
          ['event_id', s.requireEventId ? 'required' : 'generated when missing'],
          ['retention', s.retentionMonths === null ? 'none' : `${s.retentionMonths} months (${s.retentionMode})`],
          ['created', s.createdAt.toISOString()],
          ['version', s.version],
        ];
        const width = Math.max(...rows.map(([k]) => k.length));
        process.stdout.write(`${rows.map(([k, v]) => `${k.padEnd(width)}  ${v}`).join('\n')}\n`);
      } finally {
        await client.end();
      }
    }),
};

interface DropArgs extends GlobalArgs {
  name: string;
  yes?: boolean;
}

const drop: CommandModule<object, DropArgs> = {
  command: 'drop <name>',
  describe: 'Drop a stream and its tables (rejects are kept)',
  builder: (y) =>
    globalOptions(y)
      .positional('name', { type: 'string', demandOption: true })
      .option('yes', { type: 'boolean', describe: 'Confirm: this deletes the staging and durable tables' }) as Argv<DropArgs>,
  handler: (argv) =>
    withRuntime(argv, async ({ db }) => {
      assertStreamName(argv.name);
      if (!argv.yes) throw new SluiceError('confirmation_required', `dropping stream ${argv.name} deletes its data: add --yes to confirm`);
      const client = await connectClient(db.url, 'sluice/cli/stream');
      try {
        if (!(await dropStream(client, argv.name))) throw new SluiceError('unknown_stream', `no stream named ${argv.name}`);
        say(`dropped stream ${argv.name}; ${PICKUP_NOTE}: jobs for it then fail as unknown_stream (re-created under the same name: they use the new definition)`);
      } finally {
        await client.end();
      }
    }),
};

export const streamCommand: CommandModule = {
  command: 'stream <command>',
  describe: 'Create, list, show and drop streams',
  builder: (y) => y.command(create).command(list).command(show).command(drop).demandCommand(1),
  handler: () => undefined,
};
