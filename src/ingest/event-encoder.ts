/**
 * Validate one event against its stream and encode it as a COPY text line:
 *   event_id \t occurred_at \t <declared columns…> \t payload \n
 * An event is an object with `event_id` (UUID), `occurred_at` (RFC 3339 with
 * a zone, or epoch ms), the stream's declared columns as top-level keys, and
 * any other keys, which go to `payload` (jsonb): declared columns for what is
 * queried often, JSONB for the long tail.
 */
import { randomUUID } from 'node:crypto';
import { COPY_NULL, escapeCopyText } from '../codec/copy-text.js';
import { encoderFor, InvalidValue, jsonProblem, type Encoder } from '../codec/column-types.js';
import type { StreamDefinition } from '../streams/registry.js';
import { parseTimestamp, utcMonthStart } from '../codec/timestamps.js';
import { ExactNumber, stringifyJson, toPlainNumber } from '../codec/exact-json.js';

/** Machine-readable reasons stored in sluice.rejects.reason. */
export const REJECT_REASONS = [
  'invalid_json',
  'invalid_utf8',
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
  'drain_refused',
  // a replayed reject whose raw input was kept only as an excerpt (too long to keep whole)
  'raw_truncated',
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

interface ColumnEncoder {
  readonly name: string;
  readonly type: string;
  readonly encode: Encoder;
}

/** Where encode() appends each accepted event's key (a Batch is one). */
export interface KeySink {
  readonly eventIds: string[];
  readonly occurredAts: string[];
}

export class EventEncoder {
  private readonly known: Set<string>;
  private readonly columns: readonly ColumnEncoder[];
  /** Characters the envelope and column keys add to an event's JSON ("key": and commas). */
  private readonly keyChars: number;
  private windowLo = 0;
  private windowHi = 0;
  /** The window moves only when a UTC month begins: it holds until then. */
  private windowValidUntil = -Infinity;

  constructor(
    readonly stream: StreamDefinition,
    private readonly now: () => number = Date.now,
  ) {
    this.columns = stream.columns.map((c) => ({ name: c.name, type: c.type, encode: encoderFor(c.type) }));
    this.known = new Set(['event_id', 'occurred_at', ...stream.columns.map((c) => c.name)]);
    this.keyChars = [...this.known].reduce((n, k) => n + k.length + 4, 2);
  }

  /** COPY column list, in line order. */
  get copyColumns(): string[] {
    return ['event_id', 'occurred_at', ...this.columns.map((c) => c.name), 'payload'];
  }

  /** [lo, hi) in epoch ms: months the stream accepts (mirrors sluice.stream_window). */
  window(): { lo: number; hi: number } {
    const now = this.now();
    if (now >= this.windowValidUntil || now < this.windowValidUntil - 32 * 86_400_000) {
      let past = this.stream.maxPastMonths;
      if (this.stream.retentionMonths !== null) past = Math.min(past, this.stream.retentionMonths - 1);
      this.windowLo = utcMonthStart(now, -past);
      this.windowHi = utcMonthStart(now, this.stream.premakeMonths + 1);
      this.windowValidUntil = utcMonthStart(now, 1);
    }
    return { lo: this.windowLo, hi: this.windowHi };
  }

  /**
   * The encoded COPY line, or the Rejection saying why the event cannot be taken.
   * `raw`: the event's text as the producer sent it, when known (its size is what
   * max_event_bytes limits). `keys`: where to append the event's (event_id,
   * occurred_at) as encoded, for the durable ack.
   */
  encode(event: unknown, raw?: string, keys?: KeySink): string | Rejection {
    if (event === null || typeof event !== 'object' || Array.isArray(event)) {
      return new Rejection('not_an_object', `an event must be a JSON object, got ${event === null ? 'null' : Array.isArray(event) ? 'an array' : typeof event}`);
    }
    const record = event as Record<string, unknown>;

    // Own properties only: an absent key must not read Object.prototype (a column named `constructor`).
    let eventId = Object.hasOwn(record, 'event_id') ? record.event_id : undefined;
    if (eventId === undefined || eventId === null) {
      if (this.stream.requireEventId) {
        return new Rejection('missing_event_id', `event_id is required by stream ${this.stream.name} (a UUID the producer reuses on retry)`);
      }
      eventId = randomUUID();
    } else if (typeof eventId !== 'string' || !isUuid(eventId)) {
      return new Rejection('invalid_event_id', `event_id must be a UUID string, got ${describe(eventId)}`);
    }

    const rawOccurredAt = Object.hasOwn(record, 'occurred_at') ? toPlainNumber(record.occurred_at) : undefined;
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
      const value = Object.hasOwn(record, column.name) ? record[column.name] : undefined;
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
        // Exact for numbers a double would change (ExactNumber) and for bigints; JSON.stringify otherwise.
        const member = stringifyJson(record[key]);
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

    const tooLarge = this.sizeProblem(record, line, raw);
    if (tooLarge) return tooLarge;
    keys?.eventIds.push(eventId as string);
    keys?.occurredAts.push(occurredAt.text);
    return line;
  }

  /**
   * max_event_bytes limits the event as the producer sent it: the UTF-8 bytes of
   * its JSON (its raw text when known), not the escaped COPY line (a payload of
   * backslashes doubles there). Measured only when a cheap bound says it might
   * be over: the JSON of an event is at most 6 characters (a \u escape) per
   * character of its COPY line plus its column keys, and a character at most 3 bytes.
   */
  private sizeProblem(record: Record<string, unknown>, line: string, raw: string | undefined): Rejection | undefined {
    const limit = this.stream.maxEventBytes;
    let bytes: number;
    if (raw !== undefined) {
      if (raw.length * 3 <= limit) return undefined;
      bytes = Buffer.byteLength(raw);
    } else {
      if ((line.length * 6 + this.keyChars) * 3 <= limit) return undefined;
      bytes = Buffer.byteLength(stringifyJson(record, { withinNumericLimits: false }) ?? '');
    }
    if (bytes <= limit) return undefined;
    return new Rejection('event_too_large', `event is ${bytes} bytes of JSON; stream ${this.stream.name} allows ${limit} (max_event_bytes)`);
  }
}

function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
  if (value instanceof ExactNumber) return `number ${value.text.slice(0, 40)}`;
  return value === null ? 'null' : Array.isArray(value) ? 'an array' : `${typeof value} ${String(value).slice(0, 40)}`;
}
