/**
 * EventEncoder turns one event into one COPY text line in column order
 * (event_id, occurred_at, declared columns…, payload), with every key it does
 * not declare kept in payload, and refuses bad events with the right
 * Rejection reason. Lines are decoded back with decodeCopyLine to check them.
 */
import { describe, expect, it } from 'vitest';
import { decodeCopyLine } from '../../src/codec/copy-text.js';
import { EventEncoder, REJECT_REASONS, Rejection, type RejectReason } from '../../src/ingest/event-encoder.js';
import type { StreamDefinition } from '../../src/streams/registry.js';
import { parseJsonExact } from '../../src/codec/exact-json.js';

const NOW = Date.UTC(2026, 5, 15, 12, 0, 0); // 2026-06-15T12:00Z
const ID = '3f2b8c1e-5a4d-4e6f-9a7b-1c2d3e4f5a6b';
const AT = '2026-06-15T11:59:00.250Z';
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function stream(overrides: Partial<StreamDefinition> = {}): StreamDefinition {
  return {
    name: 'clicks',
    columns: [
      { name: 'user_id', type: 'bigint' },
      { name: 'kind', type: 'text' },
      { name: 'meta', type: 'jsonb' },
    ],
    indexes: [],
    premakeMonths: 3,
    retentionMonths: null,
    retentionMode: 'detach',
    maxPastMonths: 12,
    drainBatchRows: 5000,
    maxEventBytes: 65536,
    requireEventId: true,
    createdAt: new Date(NOW),
    version: '1',
    ...overrides,
  };
}

function encoder(overrides: Partial<StreamDefinition> = {}): EventEncoder {
  return new EventEncoder(stream(overrides), () => NOW);
}

function line(enc: EventEncoder, event: unknown): string {
  const result = enc.encode(event);
  if (result instanceof Rejection) throw new Error(`unexpected rejection ${result.reason}: ${result.message}`);
  return result;
}

/** The line's fields by COPY column name. */
function fields(enc: EventEncoder, event: unknown): Record<string, string | null> {
  const text = line(enc, event);
  expect(text.endsWith('\n')).toBe(true);
  expect(text.slice(0, -1)).not.toContain('\n');
  const values = decodeCopyLine(text);
  expect(values).toHaveLength(enc.copyColumns.length);
  return Object.fromEntries(enc.copyColumns.map((c, i) => [c, values[i] ?? null]));
}

function rejection(enc: EventEncoder, event: unknown, reason: RejectReason): Rejection {
  const result = enc.encode(event);
  expect(result, `expected ${reason}`).toBeInstanceOf(Rejection);
  expect((result as Rejection).reason).toBe(reason);
  expect(REJECT_REASONS).toContain((result as Rejection).reason);
  expect((result as Rejection).message.length).toBeGreaterThan(0);
  return result as Rejection;
}

describe('EventEncoder: valid events', () => {
  it('lists COPY columns as event_id, occurred_at, declared columns in order, payload', () => {
    expect(encoder().copyColumns).toEqual(['event_id', 'occurred_at', 'user_id', 'kind', 'meta', 'payload']);
    expect(encoder({ columns: [] }).copyColumns).toEqual(['event_id', 'occurred_at', 'payload']);
  });

  it('encodes a valid event as one tab-separated line, extra keys in payload', () => {
    const enc = encoder();
    const event = { event_id: ID, occurred_at: AT, user_id: 42, kind: 'click', meta: { a: [1, 2] }, page: '/home', score: 1.5, nested: { b: null } };
    const text = line(enc, event);
    expect(text.split('\t')).toHaveLength(6);
    const f = fields(enc, event);
    expect(f.event_id).toBe(ID);
    expect(f.occurred_at).toBe(AT);
    expect(f.user_id).toBe('42');
    expect(f.kind).toBe('click');
    expect(JSON.parse(f.meta as string)).toEqual({ a: [1, 2] });
    expect(JSON.parse(f.payload as string)).toEqual({ page: '/home', score: 1.5, nested: { b: null } });
  });

  it('writes {} as payload when there are no extra keys', () => {
    expect(fields(encoder(), { event_id: ID, occurred_at: AT, user_id: 1, kind: 'x', meta: 1 }).payload).toBe('{}');
  });

  it('keeps a key named payload inside the payload object', () => {
    const f = fields(encoder(), { event_id: ID, occurred_at: AT, payload: { x: 1 } });
    expect(JSON.parse(f.payload as string)).toEqual({ payload: { x: 1 } });
  });

  it('keeps every extra key of a parsed JSON event in payload, including "__proto__"', () => {
    // JSON.parse makes "__proto__" an ordinary own key; it must not vanish from the stored payload.
    const event = JSON.parse(`{"event_id":"${ID}","occurred_at":"${AT}","__proto__":{"x":1},"y":2}`) as Record<string, unknown>;
    expect(Object.keys(event)).toContain('__proto__');
    const f = fields(encoder(), event);
    expect(JSON.parse(f.payload as string)).toEqual(JSON.parse('{"__proto__":{"x":1},"y":2}'));
    expect(Object.keys(JSON.parse(f.payload as string) as object)).toEqual(['__proto__', 'y']);
  });

  it('writes \\N for declared columns that are null or absent', () => {
    const enc = encoder();
    const text = line(enc, { event_id: ID, occurred_at: AT, user_id: null, kind: undefined });
    expect(text).toBe(`${ID}\t${AT}\t\\N\t\\N\t\\N\t{}\n`);
    const f = fields(enc, { event_id: ID, occurred_at: AT, user_id: null });
    expect(f.user_id).toBeNull();
    expect(f.kind).toBeNull();
    expect(f.meta).toBeNull();
  });

  it('reads declared columns from own properties only: a column named constructor may be absent', () => {
    // Object.prototype.constructor must not be taken for the value of an absent key (issue 12, bug 7).
    const enc = encoder({ columns: [{ name: 'constructor', type: 'text' }, { name: 'n', type: 'bigint' }] });
    const f = fields(enc, JSON.parse(`{"event_id":"${ID}","occurred_at":"${AT}","x":1}`));
    expect(f.constructor).toBeNull();
    expect(JSON.parse(f.payload as string)).toEqual({ x: 1 });
    expect(fields(enc, { event_id: ID, occurred_at: AT, constructor: 'c' }).constructor).toBe('c');
    // Nor event_id / occurred_at from a prototype.
    const inherited = Object.create({ event_id: ID, occurred_at: AT }) as object;
    rejection(enc, inherited, 'missing_event_id');
  });

  it('keeps exact numbers and bigints exactly, in columns and payload', () => {
    const enc = encoder({ columns: [{ name: 'user_id', type: 'bigint' }, { name: 'amount', type: 'numeric' }] });
    const event = parseJsonExact(
      `{"event_id":"${ID}","occurred_at":"${AT}","user_id":9007199254740993,"amount":12345678901234567890.5,"big":12345678901234567890,"l":[1.0,-0,1e400],"n":2}`,
    );
    const f = fields(enc, event);
    expect(f.user_id).toBe('9007199254740993');
    expect(f.amount).toBe('12345678901234567890.5');
    expect(f.payload).toBe('{"big":12345678901234567890,"l":[1.0,-0,1e400],"n":2}');
    const fromTs = fields(enc, { event_id: ID, occurred_at: AT, user_id: 2n ** 62n, amount: 10n ** 30n, big: 2n ** 64n });
    expect(fromTs.user_id).toBe((2n ** 62n).toString());
    expect(fromTs.amount).toBe((10n ** 30n).toString());
    expect(fromTs.payload).toBe(`{"big":${2n ** 64n}}`);
    rejection(enc, { event_id: ID, occurred_at: AT, user_id: 2n ** 63n }, 'invalid_column_value');
    rejection(enc, parseJsonExact(`{"event_id":"${ID}","occurred_at":"${AT}","x":1e131072}`), 'invalid_payload');
  });

  it('accepts epoch milliseconds for occurred_at and writes ISO text', () => {
    const ms = NOW - 60_000;
    expect(fields(encoder(), { event_id: ID, occurred_at: ms }).occurred_at).toBe(new Date(ms).toISOString());
  });

  it('accepts an uppercase UUID as event_id', () => {
    expect(fields(encoder(), { event_id: ID.toUpperCase(), occurred_at: AT }).event_id).toBe(ID.toUpperCase());
  });

  it('generates a fresh UUID when require_event_id is false and none is given', () => {
    const enc = encoder({ requireEventId: false });
    const a = fields(enc, { occurred_at: AT }).event_id;
    const b = fields(enc, { event_id: null, occurred_at: AT }).event_id;
    expect(a).toMatch(UUID);
    expect(b).toMatch(UUID);
    expect(a).not.toBe(b);
    // A given id is still used, and still validated.
    expect(fields(enc, { event_id: ID, occurred_at: AT }).event_id).toBe(ID);
    rejection(enc, { event_id: 'nope', occurred_at: AT }, 'invalid_event_id');
  });

  it('escapes backslash, tab, newline and carriage return in text columns and payload', () => {
    const enc = encoder();
    const nasty = 'a\\b\tc\nd\re\\N';
    const event = { event_id: ID, occurred_at: AT, kind: nasty, meta: { s: nasty }, note: nasty, [`k\te\ny`]: 'v' };
    const text = line(enc, event);
    // Exactly one newline (the terminator) and exactly one tab per column boundary.
    expect(text.indexOf('\n')).toBe(text.length - 1);
    expect(text.split('\t')).toHaveLength(enc.copyColumns.length);
    expect(text).not.toContain('\r');
    const f = fields(enc, event);
    expect(f.kind).toBe(nasty);
    expect(JSON.parse(f.meta as string)).toEqual({ s: nasty });
    expect(JSON.parse(f.payload as string)).toEqual({ note: nasty, [`k\te\ny`]: 'v' });
  });
});

describe('EventEncoder: rejections', () => {
  it('not_an_object for null, arrays, strings and numbers', () => {
    const enc = encoder();
    expect(rejection(enc, null, 'not_an_object').message).toMatch(/null/);
    expect(rejection(enc, [{ event_id: ID }], 'not_an_object').message).toMatch(/array/);
    expect(rejection(enc, 'event', 'not_an_object').message).toMatch(/string/);
    rejection(enc, 42, 'not_an_object');
    rejection(enc, undefined, 'not_an_object');
  });

  it('missing_event_id when the stream requires one', () => {
    const enc = encoder();
    expect(rejection(enc, { occurred_at: AT }, 'missing_event_id').message).toMatch(/clicks/);
    rejection(enc, { event_id: null, occurred_at: AT }, 'missing_event_id');
  });

  it('invalid_event_id for anything but a UUID string', () => {
    const enc = encoder();
    for (const bad of ['not-a-uuid', '', `${ID}0`, ID.replace(/-/g, ''), `{${ID}}`, 12345, true, { id: ID }]) {
      rejection(enc, { event_id: bad, occurred_at: AT }, 'invalid_event_id');
    }
  });

  it('missing_occurred_at when absent or null', () => {
    const enc = encoder();
    rejection(enc, { event_id: ID }, 'missing_occurred_at');
    rejection(enc, { event_id: ID, occurred_at: null }, 'missing_occurred_at');
  });

  it('invalid_occurred_at for zone-less, impossible or non-timestamp values', () => {
    const enc = encoder();
    for (const bad of ['2026-06-15T11:59:00', '2026-02-29T00:00:00Z', 'yesterday', true, {}, Number.NaN]) {
      expect(rejection(enc, { event_id: ID, occurred_at: bad }, 'invalid_occurred_at').message).toMatch(/^occurred_at:/);
    }
  });

  it('occurred_at_out_of_window outside [now − max_past_months, now + premake_months + 1) by whole UTC months', () => {
    const enc = encoder(); // NOW is June 2026: window is [2025-06-01, 2026-10-01)
    rejection(enc, { event_id: ID, occurred_at: '2025-05-31T23:59:59.999Z' }, 'occurred_at_out_of_window');
    expect(fields(enc, { event_id: ID, occurred_at: '2025-06-01T00:00:00Z' }).event_id).toBe(ID);
    expect(fields(enc, { event_id: ID, occurred_at: '2026-09-30T23:59:59.999Z' }).event_id).toBe(ID);
    const late = rejection(enc, { event_id: ID, occurred_at: '2026-10-01T00:00:00Z' }, 'occurred_at_out_of_window');
    expect(late.message).toContain('2025-06');
    expect(late.message).toContain('2026-10');
    // An offset that puts the instant into the previous UTC month counts as that month.
    rejection(enc, { event_id: ID, occurred_at: '2025-06-01T01:00:00+02:00' }, 'occurred_at_out_of_window');
    expect(enc.window()).toEqual({ lo: Date.UTC(2025, 5, 1), hi: Date.UTC(2026, 9, 1) });
  });

  it('a retention shorter than max_past_months narrows the window', () => {
    const enc = encoder({ retentionMonths: 3 }); // keeps June, May, April 2026
    expect(enc.window().lo).toBe(Date.UTC(2026, 3, 1));
    rejection(enc, { event_id: ID, occurred_at: '2026-03-31T23:00:00Z' }, 'occurred_at_out_of_window');
    expect(fields(enc, { event_id: ID, occurred_at: '2026-04-01T00:00:00Z' }).event_id).toBe(ID);
  });

  it('invalid_column_value names the column and its type', () => {
    const enc = encoder();
    const r = rejection(enc, { event_id: ID, occurred_at: AT, user_id: 'forty-two' }, 'invalid_column_value');
    expect(r.message).toContain('user_id');
    expect(r.message).toContain('bigint');
    expect(rejection(enc, { event_id: ID, occurred_at: AT, kind: { nested: true } }, 'invalid_column_value').message).toContain('kind');
    rejection(enc, { event_id: ID, occurred_at: AT, kind: 'nul \u0000 inside' }, 'invalid_column_value');
    rejection(enc, { event_id: ID, occurred_at: AT, meta: { s: '\u0000' } }, 'invalid_column_value');
    rejection(enc, { event_id: ID, occurred_at: AT, user_id: 2 ** 63 }, 'invalid_column_value');
  });

  it('invalid_payload for extra keys Postgres jsonb refuses or JSON cannot hold', () => {
    const enc = encoder();
    rejection(enc, { event_id: ID, occurred_at: AT, note: 'NUL \u0000 inside' }, 'invalid_payload');
    rejection(enc, { event_id: ID, occurred_at: AT, note: 'lone \ud800 surrogate' }, 'invalid_payload');
    const circular: Record<string, unknown> = {};
    circular.self = circular;
    rejection(enc, { event_id: ID, occurred_at: AT, circular }, 'invalid_payload');
    // A paired surrogate (an emoji) and an escaped-looking literal are fine.
    const ok = fields(enc, { event_id: ID, occurred_at: AT, note: 'smile 😀 and \\u0000 as text' });
    expect(JSON.parse(ok.payload as string)).toEqual({ note: 'smile 😀 and \\u0000 as text' });
  });

  it('event_too_large once the UTF-8 bytes of the event as sent exceed max_event_bytes, not before', () => {
    const event = { event_id: ID, occurred_at: AT, kind: 'é'.repeat(100), note: 'ü'.repeat(200) };
    const bytes = Buffer.byteLength(JSON.stringify(event));
    expect(bytes).toBeGreaterThan(600); // multibyte: more bytes than characters
    expect(line(encoder({ maxEventBytes: bytes }), event)).toBe(line(encoder(), event));
    const r = rejection(encoder({ maxEventBytes: bytes - 1 }), event, 'event_too_large');
    expect(r.message).toContain(String(bytes));
    expect(r.message).toContain(String(bytes - 1));
  });

  it('max_event_bytes measures the JSON as sent, not the escaped COPY line', () => {
    // 20,000 backslashes: JSON escapes each (40,000 characters as sent); the COPY line doubles them again.
    // Measured on the raw text when known (NDJSON), on the event's JSON otherwise.
    const backslashes = { event_id: ID, occurred_at: AT, note: '\\'.repeat(20_000) };
    const raw = JSON.stringify(backslashes);
    const rawBytes = Buffer.byteLength(raw);
    const copyBytes = Buffer.byteLength(line(encoder(), backslashes));
    expect(copyBytes).toBeGreaterThan(rawBytes); // COPY escaping grows it
    const limit = rawBytes + 10; // between the two sizes
    expect(copyBytes).toBeGreaterThan(limit);
    expect(typeof encoder({ maxEventBytes: limit }).encode(backslashes, raw)).toBe('string');
    expect(typeof encoder({ maxEventBytes: limit }).encode(backslashes)).toBe('string');
    // Just over the limit as sent: refused, and the message gives the size as sent.
    const r = rejection(encoder({ maxEventBytes: rawBytes - 1 }), backslashes, 'event_too_large');
    expect(r.message).toContain(`event is ${rawBytes} bytes of JSON`);
  });
});
