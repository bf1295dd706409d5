/**
 * Validate one event against its stream and encode it as a COPY text line:
 *   event_id \t occurred_at \t <declared columns…> \t payload \n
 * An event is an object with `event_id` (UUID), `occurred_at` (RFC 3339 with
 * a zone, or epoch ms), the stream's declared columns as top-level keys, and
 * any other keys, which go to `payload` (jsonb) — the JSONB-for-the-long-tail
 * discipline of seed 004.
 */
import { randomUUID } from 'node:crypto';
import { COPY_NULL, escapeCopyText } from './copy-text.js';
import { encoderFor, InvalidValue, jsonProblem, type Encoder } from '../streams/column-types.js';
import type { StreamDefinition } from '../streams/registry.js';
import { parseTimestamp, utcMonthStart } from './timestamps.js';

/** Machine-readable reasons stored in sluice.rejects.reason. */
export const REJECT_REASONS = [
  'invalid_json',
  'not_an_object',
  'missing_event_id',
  'invalid_event_id',
  'missing_occurred_at',
  'invalid_occurred_at',
  'occurred_at_out_of_window',
  'invalid_column_value',
  'invalid_payload',
  'event_too_large',
  'copy_rejected',
  'no_partition',
] as const;
export type RejectReason = (typeof REJECT_REASONS)[number];

export class Rejection {
  constructor(
    readonly reason: RejectReason,
    readonly message: string,
  ) {}
}

/** Canonical 8-4-4-4-12 hex UUID, checked from char codes (hot path: once per event). */
export function isUuid(s: string): boolean {
  if (s.length !== 36) return false;
  for (let i = 0; i < 36; i++) {
    const c = s.charCodeAt(i);
    if (i === 8 || i === 13 || i === 18 || i === 23) {
      if (c !== 45) return false;
    } else if (!((c >= 48 && c <= 57) || (c >= 97 && c <= 102) || (c >= 65 && c <= 70))) {
      return false;
    }
  }
  return true;
}
const WINDOW_REFRESH_MS = 60_000;

interface ColumnEncoder {
  readonly name: string;
  readonly type: string;
  readonly encode: Encoder;
}

export class EventEncoder {
  private readonly known: Set<string>;
  private readonly columns: readonly ColumnEncoder[];
  private windowLo = 0;
  private windowHi = 0;
  private windowCheckedAt = -Infinity;

  constructor(
    readonly stream: StreamDefinition,
    private readonly now: () => number = Date.now,
  ) {
    this.columns = stream.columns.map((c) => ({ name: c.name, type: c.type, encode: encoderFor(c.type) }));
    this.known = new Set(['event_id', 'occurred_at', ...stream.columns.map((c) => c.name)]);
  }

  /** COPY column list, in line order. */
  get copyColumns(): string[] {
    return ['event_id', 'occurred_at', ...this.columns.map((c) => c.name), 'payload'];
  }

  /** [lo, hi) in epoch ms: months the stream accepts (mirrors sluice.stream_window). */
  window(): { lo: number; hi: number } {
    const now = this.now();
    if (now - this.windowCheckedAt > WINDOW_REFRESH_MS) {
      let past = this.stream.maxPastMonths;
      if (this.stream.retentionMonths !== null) past = Math.min(past, this.stream.retentionMonths - 1);
      this.windowLo = utcMonthStart(now, -past);
      this.windowHi = utcMonthStart(now, this.stream.premakeMonths + 1);
      this.windowCheckedAt = now;
    }
    return { lo: this.windowLo, hi: this.windowHi };
  }

  /** The encoded COPY line, or the Rejection saying why the event cannot be taken. */
  encode(event: unknown): string | Rejection {
    if (event === null || typeof event !== 'object' || Array.isArray(event)) {
      return new Rejection('not_an_object', `an event must be a JSON object, got ${event === null ? 'null' : Array.isArray(event) ? 'an array' : typeof event}`);
    }
    const record = event as Record<string, unknown>;

    let eventId = record.event_id;
    if (eventId === undefined || eventId === null) {
      if (this.stream.requireEventId) {
        return new Rejection('missing_event_id', `event_id is required by stream ${this.stream.name} (a UUID the producer reuses on retry)`);
      }
      eventId = randomUUID();
    } else if (typeof eventId !== 'string' || !isUuid(eventId)) {
      return new Rejection('invalid_event_id', `event_id must be a UUID string, got ${describe(eventId)}`);
    }

    const rawOccurredAt = record.occurred_at;
    if (rawOccurredAt === undefined || rawOccurredAt === null) {
      return new Rejection('missing_occurred_at', 'occurred_at is required (RFC 3339 with a zone, or epoch milliseconds)');
    }
    const occurredAt = parseTimestamp(rawOccurredAt);
    if (typeof occurredAt === 'string') return new Rejection('invalid_occurred_at', `occurred_at: ${occurredAt}`);
    const { lo, hi } = this.window();
    if (occurredAt.epochMs < lo || occurredAt.epochMs >= hi) {
      return new Rejection(
        'occurred_at_out_of_window',
        `occurred_at ${new Date(occurredAt.epochMs).toISOString()} is outside stream ${this.stream.name}'s window ` +
          `[${new Date(lo).toISOString().slice(0, 7)}, ${new Date(hi).toISOString().slice(0, 7)})`,
      );
    }

    let line = `${eventId}\t${occurredAt.text}\t`;
    for (const column of this.columns) {
      const value = record[column.name];
      if (value === undefined || value === null) {
        line += `${COPY_NULL}\t`;
        continue;
      }
      try {
        line += `${column.encode(value)}\t`;
      } catch (err) {
        if (err instanceof InvalidValue) {
          return new Rejection('invalid_column_value', `column ${column.name} (${column.type}): ${err.message}`);
        }
        throw err;
      }
    }

    // payload = every other key, serialised member by member: no intermediate
    // object per event (this runs hundreds of thousands of times a second).
    let payload = '';
    try {
      for (const key in record) {
        if (this.known.has(key) || !Object.hasOwn(record, key)) continue;
        const member = JSON.stringify(record[key]);
        if (member === undefined) continue; // undefined, functions, symbols: JSON drops them too
        payload += `${payload === '' ? '{' : ','}${JSON.stringify(key)}:${member}`;
      }
    } catch (err) {
      return new Rejection('invalid_payload', `payload: value is not serialisable as JSON: ${(err as Error).message}`);
    }
    if (payload === '') {
      line += '{}\n';
    } else {
      payload += '}';
      const problem = jsonProblem(payload);
      if (problem) return new Rejection('invalid_payload', `payload: ${problem}`);
      line += `${escapeCopyText(payload)}\n`;
    }

    // Cheap upper bound first: a UTF-16 code unit is at most 3 UTF-8 bytes.
    if (line.length * 3 > this.stream.maxEventBytes) {
      const bytes = Buffer.byteLength(line);
      if (bytes > this.stream.maxEventBytes) {
        return new Rejection('event_too_large', `event is ${bytes} bytes encoded; stream ${this.stream.name} allows ${this.stream.maxEventBytes}`);
      }
    }
    return line;
  }
}

function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
  return value === null ? 'null' : Array.isArray(value) ? 'an array' : `${typeof value} ${String(value).slice(0, 40)}`;
}

/** Raw text of an input for sluice.rejects (bounded: a reject must not become the next outage). */
export const MAX_REJECT_RAW_CHARS = 1 << 20;

export function rawText(event: unknown, raw?: string): string {
  let text = raw;
  if (text === undefined) {
    try {
      text = JSON.stringify(event) ?? String(event);
    } catch {
      text = String(event);
    }
  }
  return text.length > MAX_REJECT_RAW_CHARS ? `${text.slice(0, MAX_REJECT_RAW_CHARS)}…[truncated from ${text.length} chars]` : text;
}
