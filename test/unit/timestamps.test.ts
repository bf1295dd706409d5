/**
 * parseTimestamp accepts exactly RFC 3339 with a zone (or epoch ms) and
 * computes the same instant JavaScript's Date does; zone-less strings and
 * impossible calendar dates are refused. parseDate and utcMonthStart too.
 */
import { describe, expect, it } from 'vitest';
import { parseDate, parseTimestamp, utcMonthStart, type ParsedTimestamp } from '../../src/codec/timestamps.js';
import { prng } from '../../src/workload/event-generator.js';

function parsed(value: unknown): ParsedTimestamp {
  const result = parseTimestamp(value);
  if (typeof result === 'string') throw new Error(`expected ${JSON.stringify(value)} to parse, got: ${result}`);
  return result;
}

function refused(value: unknown): string {
  const result = parseTimestamp(value);
  expect(typeof result, `expected ${String(value)} to be refused`).toBe('string');
  return result as string;
}

describe('parseTimestamp: accepted forms', () => {
  it('reads a UTC timestamp with Z and keeps the input as the text Postgres gets', () => {
    const t = parsed('2026-11-25T14:03:00.123Z');
    expect(t.epochMs).toBe(Date.UTC(2026, 10, 25, 14, 3, 0, 123));
    expect(t.text).toBe('2026-11-25T14:03:00.123Z');
  });

  it('applies positive and negative offsets, with or without a colon', () => {
    expect(parsed('2026-01-01T05:30:00+05:30').epochMs).toBe(Date.UTC(2026, 0, 1, 0, 0, 0));
    expect(parsed('2026-01-01T00:00:00-0800').epochMs).toBe(Date.UTC(2026, 0, 1, 8, 0, 0));
    expect(parsed('2026-01-01T00:00:00-08:00').epochMs).toBe(parsed('2026-01-01T00:00:00-0800').epochMs);
    expect(parsed('2026-01-01T00:00:00+00:00').epochMs).toBe(parsed('2026-01-01T00:00:00Z').epochMs);
  });

  it('accepts fractions of 1 to 9 digits, truncating below the millisecond', () => {
    expect(parsed('2026-03-04T05:06:07.1Z').epochMs).toBe(Date.UTC(2026, 2, 4, 5, 6, 7, 100));
    expect(parsed('2026-03-04T05:06:07.12Z').epochMs).toBe(Date.UTC(2026, 2, 4, 5, 6, 7, 120));
    expect(parsed('2026-03-04T05:06:07.999999Z').epochMs).toBe(Date.UTC(2026, 2, 4, 5, 6, 7, 999));
    expect(parsed('2026-03-04T05:06:07.123456789Z').epochMs).toBe(Date.UTC(2026, 2, 4, 5, 6, 7, 123));
    // Postgres keeps microseconds and would round the rest, possibly into the next month: the text is cut instead.
    expect(parsed('2026-11-30T23:59:59.9999999Z').text).toBe('2026-11-30T23:59:59.999999Z');
    expect(parsed('2026-11-30 23:59:59.99999999+00:00').text).toBe('2026-11-30 23:59:59.999999+00:00');
    refused('2026-03-04T05:06:07.1234567891Z'); // 10 digits
    refused('2026-03-04T05:06:07.Z');
  });

  it('normalises a lowercase z to Z in the text sent to Postgres', () => {
    const t = parsed('2026-05-06T07:08:09.5z');
    expect(t.text).toBe('2026-05-06T07:08:09.5Z');
    expect(t.epochMs).toBe(parsed('2026-05-06T07:08:09.5Z').epochMs);
  });

  it('accepts a space instead of T between date and time', () => {
    const t = parsed('2026-05-06 07:08:09+02:00');
    expect(t.epochMs).toBe(Date.UTC(2026, 4, 6, 5, 8, 9));
    expect(t.text).toBe('2026-05-06 07:08:09+02:00');
  });

  it('accepts 29 February in leap years only', () => {
    expect(parsed('2024-02-29T12:00:00Z').epochMs).toBe(Date.UTC(2024, 1, 29, 12));
    expect(parsed('2000-02-29T12:00:00Z').epochMs).toBe(Date.UTC(2000, 1, 29, 12));
    refused('1900-02-29T12:00:00Z');
  });

  it('reads years below 100 as those years, not 19xx', () => {
    const t = parsed('0050-06-01T00:00:00Z');
    expect(new Date(t.epochMs).getUTCFullYear()).toBe(50);
  });

  it('takes epoch milliseconds and renders them as ISO text', () => {
    const ms = Date.UTC(2026, 6, 1, 12, 34, 56, 789);
    const t = parsed(ms);
    expect(t.epochMs).toBe(ms);
    expect(t.text).toBe(new Date(ms).toISOString());
    expect(parsed(0).text).toBe('1970-01-01T00:00:00.000Z');
  });

  it('agrees with Date.parse for every millisecond fraction and many random instants', () => {
    const base = Date.UTC(2026, 0, 15, 10, 20, 30);
    for (let ms = 0; ms < 1000; ms++) {
      const iso = new Date(base + ms).toISOString();
      expect(parsed(iso).epochMs, iso).toBe(Date.parse(iso));
    }
    const random = prng(7);
    const offsets = ['Z', '+00:00', '+05:30', '-08:00', '+14:00', '-12:00', '+09:45'];
    for (let i = 0; i < 2000; i++) {
      const instant = Math.floor(random() * Date.UTC(2100, 0, 1));
      const offset = offsets[i % offsets.length] as string;
      const sign = offset.startsWith('-') ? -1 : 1;
      const offsetMin = offset === 'Z' ? 0 : sign * (Number(offset.slice(1, 3)) * 60 + Number(offset.slice(4, 6)));
      // Local wall-clock time at that offset, written with the offset.
      const local = new Date(instant + offsetMin * 60_000).toISOString().slice(0, 23);
      const text = `${local}${offset}`;
      expect(parsed(text).epochMs, text).toBe(Date.parse(text));
      expect(parsed(text).epochMs, text).toBe(instant);
    }
  });
});

describe('parseTimestamp: refusals', () => {
  it('refuses strings without a zone, naming the expected format', () => {
    for (const text of ['2026-11-25T14:03:00', '2026-11-25T14:03:00.123', '2026-11-25 14:03:00', '2026-11-25']) {
      expect(refused(text)).toMatch(/RFC 3339/);
    }
  });

  it('refuses other malformed strings', () => {
    for (const text of ['', 'yesterday', '2026-1-05T00:00:00Z', '2026-01-05T0:00:00Z', ' 2026-01-05T00:00:00Z', '2026-01-05T00:00:00Z ', '2026-01-05T00:00:00+5:30']) {
      refused(text);
    }
  });

  it('refuses dates and times that do not exist on the calendar', () => {
    for (const text of [
      '2026-02-29T00:00:00Z', // 2026 is not a leap year
      '2024-02-30T00:00:00Z',
      '2026-04-31T00:00:00Z',
      '2026-13-01T00:00:00Z',
      '2026-00-10T00:00:00Z',
      '2026-01-00T00:00:00Z',
      '2026-01-01T24:00:00Z',
      '2026-01-01T23:60:00Z',
      '2026-01-01T23:59:60Z',
      '0000-01-01T00:00:00Z',
    ]) {
      expect(refused(text), text).toMatch(/not a valid calendar date/);
    }
  });

  it('refuses offsets Postgres cannot represent', () => {
    expect(refused('2026-01-01T00:00:00+16:00')).toMatch(/offset/);
    expect(refused('2026-01-01T00:00:00+05:60')).toMatch(/offset/);
  });

  it('refuses values that are neither strings nor numbers, naming the type', () => {
    expect(refused(null)).toMatch(/null|object/);
    expect(refused(undefined)).toMatch(/undefined/);
    expect(refused(true)).toMatch(/boolean/);
    expect(refused({ at: '2026-01-01T00:00:00Z' })).toMatch(/object/);
    expect(refused(['2026-01-01T00:00:00Z'])).toMatch(/object/);
    expect(refused(10n)).toMatch(/bigint/);
  });

  it('refuses non-finite or out-of-range epoch numbers', () => {
    refused(Number.NaN);
    refused(Number.POSITIVE_INFINITY);
    refused(8.64e15 + 1);
    refused(-8.64e15 - 1);
  });
});

describe('parseDate', () => {
  it('returns a valid YYYY-MM-DD unchanged and explains invalid ones', () => {
    expect(parseDate('2024-02-29')).toBe('2024-02-29');
    expect(parseDate('2026-02-29')).toEqual({ error: expect.stringMatching(/calendar date/) });
    expect(parseDate('2026-13-01')).toEqual({ error: expect.stringMatching(/calendar date/) });
    expect(parseDate('2026-1-01')).toEqual({ error: expect.stringMatching(/YYYY-MM-DD/) });
    expect(parseDate(20260101)).toEqual({ error: expect.stringMatching(/number/) });
  });
});

describe('utcMonthStart', () => {
  it('returns the first instant of the UTC month holding the time', () => {
    expect(utcMonthStart(Date.UTC(2026, 4, 17, 13, 5))).toBe(Date.UTC(2026, 4, 1));
    expect(utcMonthStart(Date.UTC(2026, 4, 1))).toBe(Date.UTC(2026, 4, 1));
    // The last millisecond of a month still belongs to it.
    expect(utcMonthStart(Date.UTC(2026, 5, 1) - 1)).toBe(Date.UTC(2026, 4, 1));
  });

  it('moves across year boundaries forwards and backwards', () => {
    const december = Date.UTC(2025, 11, 31, 23, 59, 59, 999);
    expect(utcMonthStart(december, 1)).toBe(Date.UTC(2026, 0, 1));
    expect(utcMonthStart(december, 13)).toBe(Date.UTC(2027, 0, 1));
    const january = Date.UTC(2026, 0, 1);
    expect(utcMonthStart(january, -1)).toBe(Date.UTC(2025, 11, 1));
    expect(utcMonthStart(january, -12)).toBe(Date.UTC(2025, 0, 1));
    expect(utcMonthStart(january, -25)).toBe(Date.UTC(2023, 11, 1));
    expect(new Date(utcMonthStart(january, -1)).toISOString()).toBe('2025-12-01T00:00:00.000Z');
  });

  it('uses UTC, not the local zone, for an instant near midnight', () => {
    // 2026-03-01T00:30 at +01:00 is still February in UTC.
    const instant = parsed('2026-03-01T00:30:00+01:00').epochMs;
    expect(utcMonthStart(instant)).toBe(Date.UTC(2026, 1, 1));
  });
});
