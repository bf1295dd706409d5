import type { Argv, CommandModule } from 'yargs';
import { SluiceError } from '../errors.js';
import { parseIndexSpec } from '../streams/index-spec.js';
import { createStream, dropStream, listStreams, parseColumnSpec } from '../streams/registry.js';
import { assertStreamName } from '../streams/names.js';
import { connectClient } from '../db/connections.js';
import { globalOptions, say, withRuntime, type GlobalArgs } from './runtime.js';
import { renderTable } from './table.js';

interface CreateArgs extends GlobalArgs {
  name: string;
  column?: string[];
  index?: string[];
  premakeMonths?: number;
  maxPastMonths?: number;
  drainBatchRows?: number;
  maxEventBytes?: number;
  requireEventId?: boolean;
}

const create: CommandModule<object, CreateArgs> = {
  command: 'create <name>',
  describe: 'Create a stream: UNLOGGED staging, durable table partitioned by month, indexes',
  builder: (y) =>
    globalOptions(y)
      .positional('name', { type: 'string', demandOption: true, describe: 'Stream name: ^[a-z][a-z0-9_]{0,47}$' })
      .option('column', { type: 'string', array: true, describe: 'Declared column name:type (repeatable), e.g. --column user_id:bigint' })
      .option('index', { type: 'string', array: true, describe: "Btree index on the durable table (repeatable): 'col[,col]' or 'col WHERE kind = ''buy'''" })
      .option('premake-months', { type: 'number', describe: 'Future monthly partitions kept ready (default 3)' })
      .option('max-past-months', { type: 'number', describe: 'How late an event may arrive, in months (default 12)' })
      .option('drain-batch-rows', { type: 'number', describe: 'Rows per drain transaction (default 10000)' })
      .option('max-event-bytes', { type: 'number', describe: 'Largest accepted event, encoded (default 65536)' })
      .option('require-event-id', { type: 'boolean', describe: 'Reject events without event_id (default true; --no-require-event-id generates one)' }) as Argv<CreateArgs>,
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
            (stream.indexes.length ? `; indexes: ${stream.indexes.map((i) => i.name).join(', ')}` : ''),
        );
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
          process.stdout.write(`${JSON.stringify(streams, null, 2)}\n`);
          return;
        }
        process.stdout.write(
          `${renderTable(
            ['stream', 'columns', 'indexes', 'premake', 'max past', 'batch rows', 'max bytes', 'event_id'],
            streams.map((s) => [
              s.name,
              s.columns.map((c) => `${c.name}:${c.type}`).join(', ') || '—',
              s.indexes.map((i) => i.name).join(', ') || '—',
              s.premakeMonths,
              s.maxPastMonths,
              s.drainBatchRows,
              s.maxEventBytes,
              s.requireEventId ? 'required' : 'generated',
            ]),
          )}\n`,
        );
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
        say(`dropped stream ${argv.name}`);
      } finally {
        await client.end();
      }
    }),
};

export const streamCommand: CommandModule = {
  command: 'stream <command>',
  describe: 'Create, list and drop streams',
  builder: (y) => y.command(create).command(list).command(drop).demandCommand(1),
  handler: () => undefined,
};
