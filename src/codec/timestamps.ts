/**
 * Strict RFC 3339 timestamps (an offset or Z is required: a zone-less time
 * would be read in the session's TimeZone and land in the wrong month).
 */

const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?(Z|z|([+-])(\d{2}):?(\d{2}))$/;
const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

function daysIn(year: number, month: number): number {
  if (month === 2 && (year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0))) return 29;
  return DAYS_IN_MONTH[month - 1] ?? 0;
}

/** Largest epoch-ms value a JS Date can hold. */
const MAX_EPOCH_MS = 8.64e15;

export interface ParsedTimestamp {
  /** Milliseconds since the epoch (sub-millisecond digits truncated). */
  readonly epochMs: number;
  /** Text Postgres parses to the same instant (the input itself when it is RFC 3339). */
  readonly text: string;
}

/**
 * Parse an RFC 3339 string or epoch milliseconds. Returns an error message
 * (string) when the value is not a valid timestamp with a zone.
 */
export function parseTimestamp(value: unknown): ParsedTimestamp | string {
  if (typeof value === 'string') {
    const epochMs = parseCanonicalUtc(value);
    if (epochMs !== undefined) return { epochMs, text: value.length > 27 ? `${value.slice(0, 26)}Z` : value };
  }
  if (typeof value === 'number') {
    if (!Number.isFinite(value) || Math.abs(value) > MAX_EPOCH_MS) return `${value} is not a valid epoch-milliseconds timestamp`;
    return { epochMs: value, text: new Date(value).toISOString() };
  }
  if (typeof value !== 'string') return `expected an RFC 3339 string or epoch milliseconds, got ${typeof value}`;
  const m = RFC3339.exec(value);
  if (!m) {
    return `${JSON.stringify(value.slice(0, 64))} is not an RFC 3339 timestamp with a zone (e.g. 2026-11-25T14:03:00.123Z)`;
  }
  const year = Number(m[1]);
  const month = Number(m[2]);
  const day = Number(m[3]);
  const hour = Number(m[4]);
  const minute = Number(m[5]);
  const second = Number(m[6]);
  if (month < 1 || month > 12 || day < 1 || day > daysIn(year, month) || hour > 23 || minute > 59 || second > 59 || year < 1) {
    return `${JSON.stringify(value)} is not a valid calendar date and time`;
  }
  let offsetMinutes = 0;
  if (m[9]) {
    const oh = Number(m[10]);
    const om = Number(m[11]);
    if (oh > 15 || om > 59) return `${JSON.stringify(value)} has an invalid UTC offset`;
    offsetMinutes = (m[9] === '-' ? -1 : 1) * (oh * 60 + om);
  }
  const fraction = m[7] ? Math.floor(Number(`0${m[7]}`) * 1000) : 0;
  const date = new Date(Date.UTC(2000, month - 1, day, hour, minute, second, fraction));
  date.setUTCFullYear(year); // Date.UTC maps years 0-99 to 1900-1999
  const epochMs = date.getTime() - offsetMinutes * 60_000;
  // Postgres wants an uppercase T or a space, and reads a lowercase z fine only as an abbreviation: normalise it.
  let text = m[8] === 'z' ? `${value.slice(0, -1)}Z` : value;
  // Postgres keeps microseconds and would round the rest (possibly into the next month,
  // past the window checked here): cut the fraction to 6 digits, as epochMs is cut.
  if (m[7] && m[7].length > 7) text = text.replace(m[7], m[7].slice(0, 7));
  return { epochMs, text };
}

function digits(s: string, from: number, count: number): number {
  let n = 0;
  for (let i = from; i < from + count; i++) {
    const c = s.charCodeAt(i) - 48;
    if (c < 0 || c > 9) return -1;
    n = n * 10 + c;
  }
  return n;
}

/**
 * Fast path for the form producers emit most (`Date#toISOString()`:
 * YYYY-MM-DDTHH:MM:SS[.fraction]Z), parsed from char codes without a regex or
 * a Date object: it runs once per event, hundreds of thousands of times a
 * second. Anything else (offsets, a space separator, odd years) takes the
 * general path. Returns undefined when the string is not in this form or not
 * a valid instant.
 */
function parseCanonicalUtc(s: string): number | undefined {
  const len = s.length;
  if (len < 20 || len > 30 || s.charCodeAt(len - 1) !== 90 /* Z */) return undefined;
  if (s.charCodeAt(4) !== 45 || s.charCodeAt(7) !== 45 || s.charCodeAt(10) !== 84 || s.charCodeAt(13) !== 58 || s.charCodeAt(16) !== 58) {
    return undefined;
  }
  const year = digits(s, 0, 4);
  const month = digits(s, 5, 2);
  const day = digits(s, 8, 2);
  const hour = digits(s, 11, 2);
  const minute = digits(s, 14, 2);
  const second = digits(s, 17, 2);
  if (year < 100 || month < 1 || month > 12 || day < 1 || day > daysIn(year, month) || hour < 0 || hour > 23 || minute < 0 || minute > 59 || second < 0 || second > 59) {
    return undefined;
  }
  let millis = 0;
  if (len > 20) {
    const fractionDigits = len - 21;
    if (s.charCodeAt(19) !== 46 /* . */ || fractionDigits < 1 || fractionDigits > 9) return undefined;
    const fraction = digits(s, 20, fractionDigits);
    if (fraction < 0) return undefined;
    millis = Math.floor(fraction / 10 ** (fractionDigits - 3));
  }
  return Date.UTC(year, month - 1, day, hour, minute, second, millis);
}

const ISO_DATE = /^(\d{4})-(\d{2})-(\d{2})$/;

export function parseDate(value: unknown): string | { error: string } {
  if (typeof value !== 'string') return { error: `expected a YYYY-MM-DD string, got ${typeof value}` };
  const m = ISO_DATE.exec(value);
  if (!m) return { error: `${JSON.stringify(value.slice(0, 32))} is not a YYYY-MM-DD date` };
  const year = Number(m[1]);
  const month = Number(m[2]);
  const day = Number(m[3]);
  if (year < 1 || month < 1 || month > 12 || day < 1 || day > daysIn(year, month)) {
    return { error: `${JSON.stringify(value)} is not a valid calendar date` };
  }
  return value;
}

/** First instant of the UTC month `offset` months from the month holding `epochMs`. */
export function utcMonthStart(epochMs: number, offset = 0): number {
  const d = new Date(epochMs);
  return Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + offset, 1);
}
