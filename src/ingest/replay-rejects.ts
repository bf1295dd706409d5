/**
 * `sluice rejects replay`: stage rejects again, exactly once, after the cause
 * was fixed (a stream or partition created, max_event_bytes raised, the raw
 * JSON corrected with an UPDATE of sluice.rejects.raw).
 *
 * Each chunk is one transaction on one connection: lock the next pending
 * rejects of the selection (FOR UPDATE SKIP LOCKED, in id order), validate and
 * encode each raw input exactly as `sluice ingest` does (parseEventText, then
 * the stream's EventEncoder), COPY the valid ones into staging, mark them
 * replayed, commit. The staging write and the mark commit together: a crash
 * loses both, and a second replay skips rows the first holds and, once it
 * committed, no longer selects them. So no reject is ever staged twice; the
 * drain's ON CONFLICT (event_id kept) covers an event that is durable already.
 *
 * An input that fails again stays a reject: its reason and message become what
 * this attempt found, first_reason keeps the original reason, replay_attempts
 * counts; raw is never changed. Rejects of a stream that does not exist are
 * left untouched (create the stream, then replay). A raw that is a staged row
 * (drain rejects) or a flush's COPY fields (copy_rejected without the event's
 * text) is turned back into the event first.
 */
import type pg from 'pg';
import { parseJsonExact } from '../codec/exact-json.js';
import { withTransaction } from '../db/transaction.js';
import { KICK_DRAINS_SQL } from '../drain/drain-kicker.js';
import type { Logger } from '../logger.js';
import { getStream, type StreamDefinition } from '../streams/registry.js';
import { CopyBuffer } from './copy-buffer.js';
import { copyIsolatingRefusals, stagingCopySql } from './copy-writer.js';
import { EventEncoder, Rejection } from './event-encoder.js';
import { parseEventText } from './parse-event-text.js';
import { isTruncatedExcerpt, storableText } from './rejects.js';

/** Which rejects to replay; at least one of these must be given (the CLI refuses an empty selection). */
export interface ReplaySelection {
  readonly streams?: readonly string[];
  readonly reasons?: readonly string[];
  readonly ids?: readonly string[];
  /** Every pending reject (narrowed by the other fields when given). */
  readonly all?: boolean;
}

export interface ReplayOptions {
  /** Rejects per transaction. */
  readonly chunkRows?: number;
  /** Validate and COPY, then roll back: the report says what a replay would do, nothing changes. */
  readonly dryRun?: boolean;
  /** Stored in replayed_by. */
  readonly replayedBy: string;
  /** Drain slots to kick per stream after a chunk staged rows (as a flush does). */
  readonly drainSlots: number;
  /** Time as the database sees it, for the stream window (db/clock.ts). */
  readonly clock?: () => number;
  readonly signal?: AbortSignal;
  readonly log?: Logger;
}

export interface StillRejected {
  readonly id: number;
  readonly stream: string;
  readonly reason: string;
  readonly message: string;
}

export interface ReplayReport {
  readonly dry_run: boolean;
  /** Rejects this run locked and looked at. */
  readonly examined: number;
  readonly replayed: number;
  readonly still_rejected: number;
  /** Rejects of streams that do not exist (left untouched). */
  readonly skipped_unknown_stream: number;
  readonly chunks: number;
  readonly replayed_by_stream: Record<string, number>;
  readonly still_rejected_by_reason: Record<string, number>;
  /** The first STILL_REJECTED_SHOWN of them, with what this attempt found. */
  readonly still_rejected_examples: StillRejected[];
  readonly interrupted: boolean;
}

export const REPLAY_CHUNK_ROWS_DEFAULT = 1_000;
const STILL_REJECTED_SHOWN = 20;

/**
 * The next pending rejects of the selection after `$1` (the run's cursor, so a
 * reject that fails again is not looked at twice in one run). SKIP LOCKED: a
 * row another replay (or anyone) holds is left for a later run; a row another
 * replay committed meanwhile is re-checked by FOR UPDATE and no longer pending.
 */
const SELECT_PENDING_CHUNK = `
SELECT r.id::text AS id, r.stream, r.source, r.reason, r.first_reason, r.raw
  FROM sluice.rejects r
 WHERE r.replayed_at IS NULL
   AND r.id > $1::bigint
   AND ($2::text[] IS NULL OR r.stream = ANY($2::text[]))
   AND ($3::text[] IS NULL OR r.reason = ANY($3::text[]))
   AND ($4::bigint[] IS NULL OR r.id = ANY($4::bigint[]))
 ORDER BY r.id -- the bigint, not the text alias: the cursor is the last id of the chunk
 LIMIT $5::int
   FOR UPDATE SKIP LOCKED`;

const MARK_REPLAYED = `
UPDATE sluice.rejects
   SET replayed_at = now(), replayed_by = $2::text, replay_attempts = replay_attempts + 1, last_replay_at = now()
 WHERE id = ANY($1::bigint[])`;

const MARK_STILL_REJECTED = `
UPDATE sluice.rejects r
   SET first_reason = CASE WHEN r.reason IS DISTINCT FROM f.reason THEN coalesce(r.first_reason, r.reason) ELSE r.first_reason END,
       reason = f.reason, message = f.message, replay_attempts = r.replay_attempts + 1, last_replay_at = now()
  FROM unnest($1::bigint[], $2::text[], $3::text[]) AS f(id, reason, message)
 WHERE r.id = f.id`;

interface PendingReject {
  id: string;
  stream: string;
  source: string;
  reason: string;
  first_reason: string | null;
  raw: string;
}

/** Staging columns that are not the event's: set by staging/drain, not by the producer. */
const NOT_EVENT_COLUMNS = new Set(['payload', 'received_at', 'drained_at']);

/**
 * A row as staging holds it, back to the event: payload's members at the top
 * level (payload may be the JSON object of row_to_json or, in a flush's
 * copy_rejected record, the COPY text of the JSON).
 */
function eventFromRow(record: Record<string, unknown>): { event: unknown } | Rejection {
  let payload = record.payload;
  if (typeof payload === 'string') {
    try {
      payload = parseJsonExact(payload);
    } catch (err) {
      return new Rejection('invalid_payload', `payload: ${(err as Error).message}`);
    }
  }
  const event: Record<string, unknown> = {};
  if (payload !== null && typeof payload === 'object' && !Array.isArray(payload)) Object.assign(event, payload);
  for (const [key, value] of Object.entries(record)) if (!NOT_EVENT_COLUMNS.has(key)) event[key] = value;
  return { event };
}

function parseObject(raw: string): Record<string, unknown> | Rejection {
  let value: unknown;
  try {
    value = parseJsonExact(raw);
  } catch (err) {
    return new Rejection('invalid_json', `raw is not the JSON of a staged row: ${(err as Error).message}`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return new Rejection('not_an_object', 'raw is not the JSON object of a staged row');
  return value as Record<string, unknown>;
}

/**
 * A flush's copy_rejected record of an event whose text was not kept (client and
 * job inputs) holds the COPY fields: exactly the copy columns, payload as text.
 * Recognised by that shape only, so an event that merely has a reason of
 * copy_rejected (an NDJSON line, kept as sent) is read as sent.
 */
function copyFieldsRecord(reject: PendingReject, copyColumns: readonly string[]): Record<string, unknown> | undefined {
  if (reject.reason !== 'copy_rejected' && reject.first_reason !== 'copy_rejected') return undefined;
  const record = parseObject(reject.raw);
  if (record instanceof Rejection || typeof record.payload !== 'string') return undefined;
  const keys = Object.keys(record);
  return keys.length === copyColumns.length && copyColumns.every((c) => Object.hasOwn(record, c)) ? record : undefined;
}

/** The encoded COPY line of a reject's input, or why it is still refused. */
function encodeReject(reject: PendingReject, stream: StreamDefinition, encoder: EventEncoder): string | Rejection {
  if (isTruncatedExcerpt(reject.raw)) {
    return new Rejection('raw_truncated', 'raw keeps only the head of the input (too long to store whole): it cannot be replayed; send the event again');
  }
  // A drain's reject (source 'drain') holds the staged row (row_to_json): event_id, occurred_at, columns, payload, received_at.
  if (reject.source === 'drain') {
    const row = parseObject(reject.raw);
    if (row instanceof Rejection) return row;
    const parsed = eventFromRow(row);
    // The row's JSON is not the event's text: max_event_bytes is measured on the event's JSON.
    return parsed instanceof Rejection ? parsed : encoder.encode(parsed.event);
  }
  const fields = copyFieldsRecord(reject, encoder.copyColumns);
  if (fields) {
    const parsed = eventFromRow(fields);
    return parsed instanceof Rejection ? parsed : encoder.encode(parsed.event);
  }
  const parsed = parseEventText(reject.raw, stream);
  if (parsed instanceof Rejection) return parsed;
  // The raw text is what max_event_bytes measures, as at the front door.
  return encoder.encode(parsed.event, reject.raw);
}

function emptyReport(dryRun: boolean): ReplayReport {
  return {
    dry_run: dryRun,
    examined: 0,
    replayed: 0,
    still_rejected: 0,
    skipped_unknown_stream: 0,
    chunks: 0,
    replayed_by_stream: {},
    still_rejected_by_reason: {},
    still_rejected_examples: [],
    interrupted: false,
  };
}

export async function replayRejects(client: pg.ClientBase, selection: ReplaySelection, options: ReplayOptions): Promise<ReplayReport> {
  const chunkRows = options.chunkRows ?? REPLAY_CHUNK_ROWS_DEFAULT;
  const dryRun = options.dryRun ?? false;
  const report = emptyReport(dryRun) as { -readonly [K in keyof ReplayReport]: ReplayReport[K] };
  // Loaded once per run: the operator fixes the cause (stream, max_event_bytes) before replaying.
  const streams = new Map<string, { stream: StreamDefinition; encoder: EventEncoder } | null>();
  const params = [selection.streams?.length ? selection.streams : null, selection.reasons?.length ? selection.reasons : null, selection.ids?.length ? selection.ids : null];
  let cursor = '0';
  for (;;) {
    if (options.signal?.aborted) {
      report.interrupted = true;
      break;
    }
    // --dry-run: the same transaction, rolled back.
    const more = await withTransaction(client, async () => {
      const { rows } = await client.query<PendingReject>(SELECT_PENDING_CHUNK, [cursor, ...params, chunkRows]);
      if (rows.length === 0) return false;
      cursor = rows[rows.length - 1]!.id;
      report.chunks++;
      report.examined += rows.length;
      const replayed: string[] = [];
      const failed: Array<{ id: string; stream: string; reason: string; message: string }> = [];
      const byStream = new Map<string, PendingReject[]>();
      for (const row of rows) {
        const group = byStream.get(row.stream);
        if (group) group.push(row);
        else byStream.set(row.stream, [row]);
      }
      for (const [name, rejects] of byStream) {
        if (!streams.has(name)) {
          const stream = await getStream(client, name);
          streams.set(name, stream ? { stream, encoder: new EventEncoder(stream, options.clock) } : null);
        }
        const target = streams.get(name);
        if (!target) {
          report.skipped_unknown_stream += rejects.length;
          continue;
        }
        const copy = new CopyBuffer();
        const lineIds: string[] = [];
        for (const reject of rejects) {
          const encoded = encodeReject(reject, target.stream, target.encoder);
          if (encoded instanceof Rejection) {
            failed.push({ id: reject.id, stream: name, reason: encoded.reason, message: encoded.message });
          } else {
            copy.append(encoded);
            lineIds.push(reject.id);
          }
        }
        // A value that passed validation but that Postgres refuses (as at a flush): that reject only, copy_rejected.
        const refused = await copyIsolatingRefusals(client, stagingCopySql(name, target.encoder.copyColumns), copy);
        const refusedLines = new Set(refused.map((r) => r.index));
        for (const r of refused) failed.push({ id: lineIds[r.index]!, stream: name, reason: 'copy_rejected', message: `Postgres refused the row: ${r.message}` });
        const staged = lineIds.filter((_, i) => !refusedLines.has(i));
        replayed.push(...staged);
        if (staged.length > 0) {
          report.replayed_by_stream[name] = (report.replayed_by_stream[name] ?? 0) + staged.length;
          // In the transaction: the drain jobs appear with the rows (graphile-worker's job_key keeps them few).
          if (!dryRun) await client.query(KICK_DRAINS_SQL, [name, options.drainSlots]);
        }
      }
      if (replayed.length > 0) await client.query(MARK_REPLAYED, [replayed, options.replayedBy]);
      if (failed.length > 0) {
        await client.query(MARK_STILL_REJECTED, [failed.map((f) => f.id), failed.map((f) => f.reason), failed.map((f) => storableText(f.message))]);
      }
      report.replayed += replayed.length;
      report.still_rejected += failed.length;
      for (const f of failed) {
        report.still_rejected_by_reason[f.reason] = (report.still_rejected_by_reason[f.reason] ?? 0) + 1;
        if (report.still_rejected_examples.length < STILL_REJECTED_SHOWN) report.still_rejected_examples.push({ ...f, id: Number(f.id) });
      }
      options.log?.debug({ chunk: report.chunks, replayed: replayed.length, still_rejected: failed.length, dry_run: dryRun }, 'rejects: replayed a chunk');
      return true;
    }, { rollback: dryRun });
    if (!more) break;
  }
  return report;
}
