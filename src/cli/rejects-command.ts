/** `sluice rejects list|replay`: inspect sluice.rejects, and stage fixed rejects again exactly once. */
import type { Argv, CommandModule } from 'yargs';
import { connectClient } from '../db/connections.js';
import { databaseClock, databaseClockOffsetMs } from '../db/clock.js';
import { SluiceError } from '../errors.js';
import { listRejects, summarizeRejects, type RejectFilter, type RejectRecord, type RejectState } from '../ingest/reject-list.js';
import { REPLAY_CHUNK_ROWS_DEFAULT, replayRejects, type ReplayReport } from '../ingest/replay-rejects.js';
import { assertStreamName } from '../streams/names.js';
import { printJson, globalOptions, say, withRuntime, type GlobalArgs } from './runtime.js';
import { renderTable } from './table.js';

/** Rows `list` prints unless --limit says otherwise. */
const LIST_LIMIT_DEFAULT = 50;
const LIST_LIMIT_MAX = 1_000_000;
/** Characters of raw and message shown per row in the table (--json prints them whole). */
const TABLE_RAW_CHARS = 60;
const TABLE_MESSAGE_CHARS = 60;
const REPLAY_CHUNK_ROWS_MAX = 100_000;

const SINCE_RELATIVE = /^(\d+(?:\.\d+)?)(s|m|h|d)$/;
const SINCE_UNIT_SECONDS: Record<string, number> = { s: 1, m: 60, h: 3_600, d: 86_400 };
/** An absolute --since must carry its zone (or be a bare date, read as UTC): a zone-less time would be read in the session's TimeZone. */
const SINCE_ABSOLUTE = /^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|z|[+-]\d{2}:?\d{2}))?$/;

/** --since: a duration before now (90s, 30m, 6h, 7d; Postgres' clock) or an instant (2026-11-30, 2026-11-30T12:00:00Z). */
export function parseSince(text: string | undefined): Pick<RejectFilter, 'since' | 'sinceSeconds'> {
  if (text === undefined) return {};
  const relative = SINCE_RELATIVE.exec(text);
  if (relative) return { sinceSeconds: Number(relative[1]) * (SINCE_UNIT_SECONDS[relative[2]!] ?? 1) };
  if (SINCE_ABSOLUTE.test(text) && !Number.isNaN(Date.parse(text.length === 10 ? `${text}T00:00:00Z` : text))) {
    return { since: text.length === 10 ? `${text}T00:00:00Z` : text };
  }
  throw new SluiceError('invalid_argument', `invalid --since ${JSON.stringify(text)}: a duration such as 30m, 6h, 7d, or a time with its zone such as 2026-11-30T12:00:00Z (or a date, 2026-11-30, UTC)`);
}

/** Repeatable string options, also given comma-separated. */
function many(values: string | string[] | undefined): string[] | undefined {
  if (values === undefined) return undefined;
  const list = (Array.isArray(values) ? values : [values]).flatMap((v) => String(v).split(',')).map((v) => v.trim()).filter((v) => v !== '');
  return list.length ? list : undefined;
}

function streamsOf(values: string | string[] | undefined): string[] | undefined {
  const streams = many(values);
  for (const s of streams ?? []) assertStreamName(s);
  return streams;
}

function idsOf(values: Array<string | number> | string | number | undefined): string[] | undefined {
  const ids = many(values === undefined ? undefined : (Array.isArray(values) ? values : [values]).map(String));
  for (const id of ids ?? []) {
    if (!/^[1-9]\d{0,18}$/.test(id)) throw new SluiceError('invalid_argument', `invalid --id ${JSON.stringify(id)}: a reject id (a positive integer, see \`sluice rejects list\`)`);
  }
  return ids;
}

function clip(text: string, chars: number): string {
  const oneLine = text.replace(/[\r\n\t]+/g, ' ');
  return oneLine.length > chars ? `${oneLine.slice(0, chars - 1)}…` : oneLine;
}

function renderRejects(rows: readonly RejectRecord[]): string {
  if (rows.length === 0) return 'no rejects match';
  return renderTable(
    ['id', 'stream', 'received at', 'source', 'reason', 'replayed', 'message', 'raw'],
    rows.map((r) => [
      r.id,
      r.stream,
      r.received_at.slice(0, 19).replace('T', ' '),
      r.source,
      r.first_reason ? `${r.reason} (was ${r.first_reason})` : r.reason,
      r.replayed_at ? r.replayed_at.slice(0, 19).replace('T', ' ') : r.replay_attempts > 0 ? `no (${r.replay_attempts} tries)` : 'no',
      r.message,
      // raw is data (JSON, bytes): clipped where it falls; the message is cut between words.
      clip(r.raw, TABLE_RAW_CHARS),
    ]),
    { maxWidth: { message: TABLE_MESSAGE_CHARS } },
  );
}

interface ListArgs extends GlobalArgs {
  stream?: string[];
  reason?: string[];
  since?: string;
  limit: number;
  state: RejectState;
  summary?: boolean;
  json?: boolean;
}

const list: CommandModule<object, ListArgs> = {
  command: 'list',
  describe: 'Rejects, newest first: id, stream, time, source, reason, replay state, message, raw excerpt (--summary: counts per stream and reason)',
  builder: (y) =>
    globalOptions(y)
      .option('stream', { type: 'string', array: true, describe: 'Only these streams (repeatable, or comma-separated)' })
      .option('reason', { type: 'string', array: true, describe: 'Only these reasons, e.g. invalid_json (repeatable, or comma-separated)' })
      .option('since', { type: 'string', describe: 'Only rejects received since: a duration (30m, 6h, 7d) or a time with its zone (2026-11-30T12:00:00Z)' })
      .option('state', { choices: ['all', 'pending', 'replayed'] as const, default: 'all' as const, describe: 'pending: not replayed yet; replayed: staged again by `rejects replay`' })
      .option('limit', { type: 'number', default: LIST_LIMIT_DEFAULT, describe: 'At most this many rejects (newest first)' })
      .option('summary', { type: 'boolean', describe: 'Counts per stream and reason (total, pending, replayed, oldest, newest) instead of rows' })
      .option('json', { type: 'boolean', describe: 'Print JSON (snake_case keys; raw and message whole)' }) as unknown as Argv<ListArgs>,
  handler: (argv) =>
    withRuntime(argv, async ({ db, config }) => {
      if (!Number.isInteger(argv.limit) || argv.limit < 1 || argv.limit > LIST_LIMIT_MAX) {
        throw new SluiceError('invalid_argument', `--limit must be an integer from 1 to ${LIST_LIMIT_MAX}; got ${String(argv.limit)}`);
      }
      const filter: RejectFilter = { streams: streamsOf(argv.stream), reasons: many(argv.reason), state: argv.state, ...parseSince(argv.since) };
      const client = await connectClient(db.url, `sluice/${config.workerId}/rejects`);
      try {
        if (argv.summary) {
          const rows = await summarizeRejects(client, filter);
          if (argv.json) {
            printJson(rows);
            return;
          }
          process.stdout.write(
            rows.length === 0
              ? 'no rejects match\n'
              : `${renderTable(
                  ['stream', 'reason', 'total', 'pending', 'replayed', 'oldest', 'newest'],
                  rows.map((r) => [r.stream, r.reason, r.total, r.pending, r.replayed, r.oldest_received_at.slice(0, 19).replace('T', ' '), r.newest_received_at.slice(0, 19).replace('T', ' ')]),
                )}\n`,
          );
          return;
        }
        const rows = await listRejects(client, filter, argv.limit);
        if (argv.json) {
          printJson(rows);
          return;
        }
        process.stdout.write(`${renderRejects(rows)}\n`);
        if (rows.length === argv.limit) say(`showing the newest ${argv.limit}; --limit shows more, --summary counts them all`);
      } finally {
        await client.end();
      }
    }),
};

interface ReplayArgs extends GlobalArgs {
  stream?: string[];
  reason?: string[];
  id?: Array<string | number>;
  all?: boolean;
  dryRun?: boolean;
  chunk: number;
  json?: boolean;
}

const NO_SELECTION = 'rejects replay needs a selection: --stream S, --reason R, --id N (each repeatable), or --all for every pending reject';

function describeReplay(r: ReplayReport): string {
  const verb = r.dry_run ? 'would replay' : 'replayed';
  const lines = [
    `${r.dry_run ? 'dry run: ' : ''}${verb} ${r.replayed} reject(s)` +
      (Object.keys(r.replayed_by_stream).length ? ` (${Object.entries(r.replayed_by_stream).map(([s, n]) => `${s}: ${n}`).join(', ')})` : '') +
      `, still rejected ${r.still_rejected}` +
      (Object.keys(r.still_rejected_by_reason).length ? ` (${Object.entries(r.still_rejected_by_reason).map(([s, n]) => `${s}: ${n}`).join(', ')})` : '') +
      `, of ${r.examined} examined in ${r.chunks} chunk(s)`,
  ];
  if (r.skipped_unknown_stream) lines.push(`left ${r.skipped_unknown_stream} reject(s) of streams that do not exist untouched: create the stream, then replay`);
  for (const f of r.still_rejected_examples) lines.push(`  #${f.id} ${f.stream}: ${f.reason}: ${clip(f.message, 120)}`);
  if (r.still_rejected > r.still_rejected_examples.length) lines.push(`  … (sluice rejects list --state pending for all)`);
  if (r.interrupted) lines.push('interrupted: the chunks committed so far are replayed; run again for the rest');
  if (!r.dry_run && r.replayed > 0) lines.push('replayed events are staged: a running `sluice worker` drains them');
  return lines.join('\n');
}

const replay: CommandModule<object, ReplayArgs> = {
  command: 'replay',
  describe: 'Validate pending rejects again and stage the valid ones, each exactly once (marked replayed in the same transaction); the others stay rejects with their new reason',
  builder: (y) =>
    globalOptions(y)
      .option('stream', { type: 'string', array: true, describe: 'Rejects of these streams (repeatable, or comma-separated)' })
      .option('reason', { type: 'string', array: true, describe: 'Rejects with these reasons (repeatable, or comma-separated)' })
      .option('id', { type: 'string', array: true, describe: 'These reject ids (repeatable, or comma-separated)' })
      .option('all', { type: 'boolean', describe: 'Every pending reject (needed when no --stream/--reason/--id narrows it)' })
      .option('dry-run', { type: 'boolean', describe: 'Validate (and try the COPY), report, then roll back: nothing changes' })
      .option('chunk', { type: 'number', default: REPLAY_CHUNK_ROWS_DEFAULT, describe: 'Rejects per transaction' })
      .option('json', { type: 'boolean', describe: 'Print the summary as JSON' }) as unknown as Argv<ReplayArgs>,
  handler: (argv) => {
    // A replay of everything by accident is a flood: the selection is said aloud. A usage error (exit 2), before any connection.
    if (!argv.all && argv.stream === undefined && argv.reason === undefined && argv.id === undefined) {
      say(NO_SELECTION, 'error', { code: 'usage_error', exit_code: 2 });
      process.exitCode = 2;
      return;
    }
    return withRuntime(argv, async ({ db, config, log, signal }) => {
      if (!Number.isInteger(argv.chunk) || argv.chunk < 1 || argv.chunk > REPLAY_CHUNK_ROWS_MAX) {
        throw new SluiceError('invalid_argument', `--chunk must be an integer from 1 to ${REPLAY_CHUNK_ROWS_MAX}; got ${String(argv.chunk)}`);
      }
      const selection = { streams: streamsOf(argv.stream), reasons: many(argv.reason), ids: idsOf(argv.id), all: argv.all };
      if (!selection.all && !selection.streams && !selection.reasons && !selection.ids) {
        throw new SluiceError('invalid_argument', NO_SELECTION);
      }
      const client = await connectClient(db.url, `sluice/${config.workerId}/rejects`);
      try {
        const clock = databaseClock(await databaseClockOffsetMs(client));
        const report = await replayRejects(client, selection, {
          chunkRows: argv.chunk,
          dryRun: argv.dryRun,
          replayedBy: `cli/${config.workerId}`,
          drainSlots: config.drainers,
          clock,
          signal,
          log,
        });
        if (argv.json) printJson(report);
        else process.stdout.write(`${describeReplay(report)}\n`);
      } finally {
        await client.end();
      }
    });
  },
};

export const rejectsCommand: CommandModule = {
  command: 'rejects <command>',
  describe: 'Rejected events: list them (or a summary), replay them once their cause is fixed',
  builder: (y) => y.command(list).command(replay).demandCommand(1),
  handler: () => undefined,
};
