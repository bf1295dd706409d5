/**
 * Writing to sluice.rejects. A reject must never become the next outage: its
 * raw input is kept as a bounded excerpt, and a pile of rejects is written in
 * bounded statements (one giant parameter array once crashed a flush with
 * "Invalid string length" and lost the whole batch).
 */
import { createHash } from 'node:crypto';
import type pg from 'pg';
import type { RejectReason } from './event-encoder.js';
import { stringifyJson } from '../codec/exact-json.js';

export type RejectSource = 'sql' | 'http' | 'file' | 'client' | 'drain';

export interface RejectRow {
  readonly reason: RejectReason;
  readonly message: string;
  readonly raw: string;
  /**
   * Identity of the input (e.g. `sql:job:<id>:<digest>:<n>`, `file:<line>:<sha1>`): the same input is
   * recorded once, however often it is retried or re-sent. Undefined: no stable identity, never deduplicated.
   */
  readonly inputKey?: string;
}

/** An input's identity, computed only if it is rejected (hashing every accepted input would cost for nothing). */
export type InputKey = () => string | undefined;

/** Identity of an NDJSON line: its number and a digest of its text, so re-sending a file records its rejects once. */
export function fileLineKey(lineNumber: number, text: string): string {
  return `file:${lineNumber}:${createHash('sha1').update(text).digest('hex')}`;
}

/**
 * Characters of an input's raw text kept in sluice.rejects.raw: enough to see
 * what went wrong; a longer input keeps its head and a note of its full length.
 */
export const MAX_REJECT_RAW_CHARS = 16 * 1024;
/** Rejects per INSERT statement, and a soft bound on the characters one statement carries. */
const REJECTS_PER_STATEMENT = 1_000;
const REJECT_CHARS_PER_STATEMENT = 4 * 1024 * 1024;

const INSERT_REJECTS = `
INSERT INTO sluice.rejects (stream, source, reason, message, raw, input_key)
SELECT $1::text, $2::text, r.reason, r.message, r.raw, r.input_key
  FROM unnest($3::text[], $4::text[], $5::text[], $6::text[]) AS r(reason, message, raw, input_key)
ON CONFLICT (stream, input_key) WHERE input_key IS NOT NULL DO NOTHING`;

/** The raw text to store for a rejected input: its own text when known, else its JSON; bounded. */
export function rejectRaw(event: unknown, raw?: string): string {
  let text = raw;
  if (text === undefined) {
    try {
      // Exact numbers and bigints as written (JSON.stringify throws on both).
      text = stringifyJson(event, { withinNumericLimits: false }) ?? String(event);
    } catch {
      text = String(event);
    }
  }
  return excerpt(text);
}

const TRUNCATED_NOTE = /…\[truncated: first \d+ of \d+ characters kept\]$/;

/** True when `text` is an excerpt() of a longer input: the input itself is gone (a replay cannot use it). */
export function isTruncatedExcerpt(text: string): boolean {
  return text.length > MAX_REJECT_RAW_CHARS && TRUNCATED_NOTE.test(text);
}

export function excerpt(text: string): string {
  if (text.length <= MAX_REJECT_RAW_CHARS) return text;
  // A slice would be a view that keeps the whole input alive in V8: copy the head out.
  const head = Buffer.from(text.slice(0, MAX_REJECT_RAW_CHARS), 'utf8').toString('utf8');
  return `${head}…[truncated: first ${MAX_REJECT_RAW_CHARS} of ${text.length} characters kept]`;
}

/** Characters a reject holds in memory (for back-pressure). */
export function rejectSize(row: RejectRow): number {
  return row.raw.length + row.message.length;
}

/** Postgres text cannot hold NUL or unpaired surrogates; a reject must never fail to be stored. */
export function storableText(text: string): string {
  const cleaned = text.includes('\0') ? text.replace(/\0/g, '\\u0000') : text;
  return cleaned.isWellFormed() ? cleaned : cleaned.toWellFormed();
}

export async function insertRejects(client: pg.ClientBase, stream: string, source: RejectSource, rows: readonly RejectRow[]): Promise<void> {
  let start = 0;
  while (start < rows.length) {
    let end = start;
    let chars = 0;
    while (end < rows.length && end - start < REJECTS_PER_STATEMENT && (end === start || chars < REJECT_CHARS_PER_STATEMENT)) {
      chars += rejectSize(rows[end] as RejectRow);
      end++;
    }
    const chunk = rows.slice(start, end);
    await client.query(INSERT_REJECTS, [
      stream,
      source,
      chunk.map((r) => r.reason),
      chunk.map((r) => storableText(r.message)),
      chunk.map((r) => storableText(excerpt(r.raw))),
      chunk.map((r) => r.inputKey ?? null),
    ]);
    start = end;
  }
}
