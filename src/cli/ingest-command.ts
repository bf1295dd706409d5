import { closeSync, createReadStream, fstatSync, openSync } from 'node:fs';
import type { Readable } from 'node:stream';
import cliProgress from 'cli-progress';
import type { Argv, CommandModule } from 'yargs';
import { SluiceError } from '../errors.js';
import { openIngestor } from '../ingest/create-ingestor.js';
import { ingestNdjson } from '../ingest/ingest-ndjson.js';
import type { AckLevel } from '../ingest/ingestor.js';
import { connectClient } from '../db/connections.js';
import { requireStream } from '../streams/registry.js';
import { formatInt, formatRate } from '../format.js';
import { printJson, configOptions, globalOptions, say, withRuntime, type GlobalArgs } from './runtime.js';
import { renderTable } from './table.js';

interface IngestArgs extends GlobalArgs {
  file: string;
  stream: string;
  ack: AckLevel;
  json?: boolean;
  flushRows?: number;
  flushAgeMs?: number;
  flushBytes?: number;
  bufferRows?: number;
  bufferBytes?: number;
  progress?: boolean;
}

function openInput(file: string): { input: Readable; size: number | undefined } {
  if (file === '-') return { input: process.stdin, size: undefined };
  // Open now, not on the stream's first read: an unreadable file (EACCES) is one clear line and exit 1,
  // like a missing one, instead of an unhandled 'error' event.
  let fd: number | undefined;
  try {
    fd = openSync(file, 'r');
    const stat = fstatSync(fd);
    if (!stat.isFile()) throw new SluiceError('bad_input', `${file} is not a regular file`);
    return { input: createReadStream(file, { fd, highWaterMark: 1 << 20 }), size: stat.size };
  } catch (err) {
    if (fd !== undefined) closeSync(fd);
    if (err instanceof SluiceError) throw err;
    throw new SluiceError('bad_input', `cannot read ${file}: ${(err as Error).message}`);
  }
}

export const ingestCommand: CommandModule<object, IngestArgs> = {
  command: 'ingest [file]',
  describe: 'Ingest NDJSON events (one JSON object per line) from a file or - for stdin',
  builder: (y) =>
    configOptions(globalOptions(y), 'ingest')
      .positional('file', { type: 'string', default: '-', describe: 'NDJSON file, or - for stdin' })
      .option('stream', { type: 'string', default: 'events', describe: 'Target stream' })
      .option('ack', { choices: ['staged', 'durable'] as const, default: 'staged' as const, describe: 'Finish once rows are staged, or once they are durable (needs a running worker)' })
      .option('progress', { type: 'boolean', describe: 'Show a progress bar (default: when stderr is a terminal)' })
      .option('json', { type: 'boolean', describe: 'Print the summary as JSON' }) as Argv<IngestArgs>,
  handler: (argv) =>
    withRuntime(argv, async ({ db, config, log, signal }) => {
      // Open (not read) the input first: an unreadable file fails before any connection is made.
      const { input, size } = openInput(argv.file);
      // Check the stream before reading the input: an unknown stream exits non-zero with nothing read.
      const probe = await connectClient(db.url, `sluice/${config.workerId}/ingest`);
      try {
        await requireStream(probe, argv.stream);
      } finally {
        await probe.end();
      }
      const ingestor = await openIngestor({
        connectionString: db.url,
        stream: argv.stream,
        ack: argv.ack,
        source: 'file',
        flushRows: config.flushRows,
        flushAgeMs: config.flushAgeMs,
        flushBytes: config.flushBytes,
        bufferRows: config.bufferRows,
        bufferBytes: config.bufferBytes,
        drainSlots: config.drainers,
        clientId: config.workerId,
        log,
      });
      const showProgress = argv.progress ?? process.stderr.isTTY === true;
      const bar = showProgress
        ? new cliProgress.SingleBar(
            {
              format: size !== undefined ? ' ingest |{bar}| {percentage}% | {events} events | {rate}' : ' ingest | {value} bytes | {events} events | {rate}',
              hideCursor: true,
              stream: process.stderr,
            },
            cliProgress.Presets.shades_classic,
          )
        : undefined;
      if (argv.ack === 'durable') say('--ack durable: finishes once every event is drained, which needs a running `sluice worker`');
      bar?.start(size ?? 0, 0, { events: 0, rate: '' });
      const started = Date.now();
      let result;
      try {
        result = await ingestNdjson(input, ingestor, {
          signal,
          onProgress: (bytes, events) => bar?.update(bytes, { events: formatInt(events), rate: formatRate(events, Date.now() - started) }),
        });
      } finally {
        bar?.stop();
        await ingestor.close();
      }
      // This run's own rejects, as its Ingestor counted them: other producers may be rejecting into the same stream now.
      const reasons = result.rejectsByReason;
      const summary = {
        stream: argv.stream,
        file: argv.file,
        ack: argv.ack,
        lines: result.lines,
        accepted: result.accepted,
        rejected: result.rejected,
        rejects_by_reason: Object.fromEntries(reasons.map((r) => [r.reason, r.count])),
        duration_ms: result.durationMs,
        events_per_second: result.durationMs > 0 ? Math.round((result.accepted * 1000) / result.durationMs) : null,
        interrupted: signal.aborted,
      };
      if (argv.json) {
        printJson(summary);
        return;
      }
      process.stdout.write(
        `ingested ${argv.file === '-' ? 'stdin' : argv.file} into stream ${argv.stream}${signal.aborted ? ' (interrupted)' : ''}: ` +
          `${formatInt(result.accepted)} accepted (${argv.ack}), ${formatInt(result.rejected)} rejected, ` +
          `${(result.durationMs / 1000).toFixed(2)} s, ${formatRate(result.accepted, result.durationMs)}\n`,
      );
      if (reasons.length) {
        process.stdout.write(`rejects (kept in sluice.rejects):\n${renderTable(['reason', 'count', 'example'], reasons.map((r) => [r.reason, r.count, r.example]), { maxWidth: { example: 100 } })}\n`);
      }
      if (signal.aborted) say('stopped early: lines before the interruption were flushed');
    }),
};
