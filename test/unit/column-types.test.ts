/**
 * Each declared column type's encoder accepts what Postgres accepts for that
 * type (as COPY text) and throws InvalidValue, before Postgres sees it, for
 * what it would refuse: integer ranges, finite floats, booleans, UUIDs,
 * dates, jsonb without \u0000 or lone surrogates, text without NUL.
 * canonicalColumnType maps common spellings to Postgres' names.
 */
import { describe, expect, it } from 'vitest';
import { decodeCopyLine } from '../../src/codec/copy-text.js';
import {
  canonicalColumnType,
  checkText,
  encodeJson,
  encoderFor,
  exactInteger,
  InvalidValue,
  SUPPORTED_COLUMN_TYPES,
} from '../../src/codec/column-types.js';
import { ExactNumber } from '../../src/codec/exact-json.js';

function accepts(type: string, value: unknown): string {
  return encoderFor(type)(value);
}

function refuses(type: string, value: unknown): InvalidValue {
  try {
    const out = encoderFor(type)(value);
    throw new Error(`${type} accepted ${String(value)} as ${JSON.stringify(out)}`);
  } catch (err) {
    expect(err).toBeInstanceOf(InvalidValue);
    return err as InvalidValue;
  }
}

describe('integer types', () => {
  const ranges: Array<[string, bigint, bigint]> = [
    ['smallint', -32768n, 32767n],
    ['integer', -2147483648n, 2147483647n],
    ['bigint', -9223372036854775808n, 9223372036854775807n],
  ];

  for (const [type, min, max] of ranges) {
    it(`${type}: accepts its whole range as strings, refuses one past either end`, () => {
      expect(accepts(type, min.toString())).toBe(min.toString());
      expect(accepts(type, max.toString())).toBe(max.toString());
      expect(accepts(type, '0')).toBe('0');
      expect(accepts(type, '+17')).toBe('17');
      expect(accepts(type, '-0007')).toBe('-7');
      expect(refuses(type, (min - 1n).toString()).message).toContain(type);
      expect(refuses(type, (max + 1n).toString()).message).toContain(type);
    });

    it(`${type}: accepts integral numbers in range, refuses fractions, NaN, infinities and non-numbers`, () => {
      expect(accepts(type, 123)).toBe('123');
      expect(accepts(type, -123)).toBe('-123');
      if (max <= BigInt(Number.MAX_SAFE_INTEGER)) {
        expect(accepts(type, Number(max))).toBe(max.toString());
        expect(accepts(type, Number(min))).toBe(min.toString());
        refuses(type, Number(max) + 1);
        refuses(type, Number(min) - 1);
      }
      for (const bad of [1.5, Number.NaN, Infinity, -Infinity, '1.0', '1e3', '', ' 1', '0x10', 'ten', true, null, {}, [1]]) {
        refuses(type, bad);
      }
    });
  }

  it('bigint refuses JSON numbers beyond 2^53 (they have already lost precision) but takes them as strings', () => {
    refuses('bigint', 2 ** 53);
    refuses('bigint', 9007199254740993);
    expect(accepts('bigint', '9007199254740993')).toBe('9007199254740993');
    expect(accepts('bigint', Number.MAX_SAFE_INTEGER)).toBe(String(Number.MAX_SAFE_INTEGER));
  });

  it('refuses integer strings too long to be a bigint', () => {
    refuses('bigint', '1'.repeat(21));
    refuses('bigint', '99999999999999999999');
  });
});

describe('numeric, real, double precision', () => {
  it('numeric accepts finite numbers and numeric strings, refuses the rest', () => {
    expect(accepts('numeric', 12.5)).toBe('12.5');
    expect(accepts('numeric', '-0.000123')).toBe('-0.000123');
    expect(accepts('numeric', '123456789012345678901234567890.5')).toBe('123456789012345678901234567890.5');
    expect(accepts('numeric', '1e5')).toBe('1e5');
    expect(accepts('numeric', '.5')).toBe('.5');
    for (const bad of [Number.NaN, Infinity, 'NaN', 'abc', '1,5', '', '1e', true, null]) refuses('numeric', bad);
  });

  it('real accepts values within float4 range and refuses larger ones', () => {
    expect(accepts('real', 1.25)).toBe('1.25');
    expect(accepts('real', '3.4e38')).toBe('3.4e38');
    expect(accepts('real', -3.4e38)).toBe(String(-3.4e38));
    refuses('real', 3.5e38);
    refuses('real', '-3.5e38');
    refuses('real', Infinity);
    refuses('real', Number.NaN);
    refuses('real', 'one');
  });

  it('double precision accepts any finite double and refuses overflowing strings', () => {
    expect(accepts('double precision', 1.7e308)).toBe(String(1.7e308));
    refuses('double precision', '1e309');
    refuses('double precision', Infinity);
  });

  it('real and double precision refuse strings that underflow (Postgres: "out of range")', () => {
    // PostgreSQL 12+: SELECT '1e-50'::real and '1e-400'::float8 both fail with "is out of range for type …",
    // so COPY would fail the whole batch instead of the encoder rejecting the one event.
    refuses('real', '1e-50');
    refuses('real', 1e-50);
    refuses('double precision', '1e-400');
  });
});

describe('boolean, uuid, date, timestamptz', () => {
  it('boolean takes true/false and their strings only', () => {
    expect(accepts('boolean', true)).toBe('t');
    expect(accepts('boolean', false)).toBe('f');
    expect(accepts('boolean', 'true')).toBe('t');
    expect(accepts('boolean', 'false')).toBe('f');
    for (const bad of [1, 0, 'yes', 'TRUE', 't', '', null]) refuses('boolean', bad);
  });

  it('uuid takes canonical hyphenated UUIDs in either case', () => {
    const id = '3F2B8C1E-5A4D-4E6F-9A7B-1C2D3E4F5A6B';
    expect(accepts('uuid', id)).toBe(id);
    expect(accepts('uuid', id.toLowerCase())).toBe(id.toLowerCase());
    for (const bad of [id.replace(/-/g, ''), `${id}0`, 'g'.repeat(36), 123, null]) refuses('uuid', bad);
  });

  it('date takes real calendar dates as YYYY-MM-DD', () => {
    expect(accepts('date', '2024-02-29')).toBe('2024-02-29');
    for (const bad of ['2026-02-29', '2026-13-01', '2026-04-31', '0000-01-01', '2026-1-1', '2026-01-01T00:00:00Z', 20260101]) {
      refuses('date', bad);
    }
  });

  it('timestamp with time zone takes RFC 3339 with a zone or epoch ms', () => {
    expect(accepts('timestamp with time zone', '2026-01-02T03:04:05z')).toBe('2026-01-02T03:04:05Z');
    expect(accepts('timestamp with time zone', 0)).toBe('1970-01-01T00:00:00.000Z');
    refuses('timestamp with time zone', '2026-01-02T03:04:05');
    refuses('timestamp with time zone', '2026-02-30T03:04:05Z');
  });
});

describe('jsonb', () => {
  it('encodes any JSON value and COPY-escapes its text', () => {
    expect(accepts('jsonb', { a: 1, b: [true, null] })).toBe('{"a":1,"b":[true,null]}');
    expect(accepts('jsonb', 'str')).toBe('"str"');
    expect(accepts('jsonb', 0)).toBe('0');
    const value = { text: 'tab\there\nnewline \\ backslash', emoji: '😀' };
    const encoded = accepts('jsonb', value);
    expect(encoded).not.toMatch(/[\t\n\r]/);
    expect(JSON.parse(decodeCopyLine(encoded)[0] as string)).toEqual(value);
  });

  it('refuses \\u0000 and lone surrogates anywhere, in keys or values', () => {
    for (const bad of [{ s: '\u0000' }, { '\u0000': 1 }, ['a\u0000b'], { s: '\ud800' }, { s: 'x\udfff' }, { [`k\udbff`]: 1 }, '\ud83d']) {
      expect(refuses('jsonb', bad).message).toMatch(/\\u0000|surrogate/);
      expect(() => encodeJson(bad)).toThrow(InvalidValue);
    }
  });

  it('accepts text that merely looks like an escape (a literal backslash then u0000)', () => {
    expect(JSON.parse(decodeCopyLine(accepts('jsonb', { s: '\\u0000' }))[0] as string)).toEqual({ s: '\\u0000' });
    expect(JSON.parse(decodeCopyLine(accepts('jsonb', { s: '\\\\u0000' }))[0] as string)).toEqual({ s: '\\\\u0000' });
  });

  it('refuses a real NUL even right after a literal backslash', () => {
    refuses('jsonb', { s: '\\\u0000' });
  });

  it('refuses values JSON cannot represent', () => {
    refuses('jsonb', undefined);
    refuses('jsonb', () => 1);
    const circular: Record<string, unknown> = {};
    circular.me = circular;
    refuses('jsonb', circular);
    refuses('jsonb', { n: new ExactNumber('1e131072') }); // past Postgres numeric's range
  });

  it('writes bigints and exact numbers as their digits (JSON.stringify would throw or round)', () => {
    expect(accepts('jsonb', 12345678901234567890n)).toBe('12345678901234567890');
    expect(accepts('jsonb', { a: [new ExactNumber('1.0'), 9007199254740993n] })).toBe('{"a":[1.0,9007199254740993]}');
  });
});

describe('text', () => {
  it('escapes COPY specials and stringifies numbers and booleans', () => {
    expect(accepts('text', 'a\tb')).toBe('a\\tb');
    expect(accepts('text', 12)).toBe('12');
    expect(accepts('text', false)).toBe('false');
    expect(accepts('character varying', 'x\ny')).toBe('x\\ny');
  });

  it('refuses NUL, lone surrogates and non-scalar values', () => {
    expect(refuses('text', 'nul \u0000 here').message).toMatch(/NUL/);
    expect(refuses('text', 'half \ud800').message).toMatch(/surrogate/);
    expect(() => checkText('\u0000')).toThrow(InvalidValue);
    for (const bad of [null, { a: 1 }, ['a'], undefined]) refuses('text', bad);
    expect(accepts('text', 'paired 😀 is fine')).toBe('paired 😀 is fine');
  });
});

describe('canonicalColumnType', () => {
  it('maps aliases to Postgres names', () => {
    const aliases: Record<string, string> = {
      int: 'integer',
      int4: 'integer',
      int2: 'smallint',
      int8: 'bigint',
      float4: 'real',
      float8: 'double precision',
      double: 'double precision',
      bool: 'boolean',
      timestamptz: 'timestamp with time zone',
      decimal: 'numeric',
      varchar: 'character varying',
    };
    for (const [alias, canonical] of Object.entries(aliases)) {
      expect(canonicalColumnType(alias), alias).toBe(canonical);
      expect(SUPPORTED_COLUMN_TYPES).toContain(canonical);
    }
  });

  it('is case- and whitespace-insensitive and knows every canonical name', () => {
    expect(canonicalColumnType('  BIGINT ')).toBe('bigint');
    expect(canonicalColumnType('Double   Precision')).toBe('double precision');
    expect(canonicalColumnType('TIMESTAMP WITH TIME ZONE')).toBe('timestamp with time zone');
    for (const t of SUPPORTED_COLUMN_TYPES) {
      expect(canonicalColumnType(t)).toBe(t);
      expect(typeof encoderFor(t)).toBe('function');
    }
  });

  it('returns undefined for unsupported types', () => {
    for (const t of ['json', 'timestamp', 'bytea', 'serial', 'int[]', 'text; drop table x', '', 'toString', '__proto__', 'constructor']) {
      expect(canonicalColumnType(t), t).toBeUndefined();
    }
    expect(() => encoderFor('bytea')).toThrow(/no encoder/);
  });
});

describe('exact numbers (JSON tokens a double would change) and bigints', () => {
  const x = (t: string) => new ExactNumber(t);

  it('exactInteger reads integral tokens exactly and refuses fractions', () => {
    expect(exactInteger('9007199254740993')).toBe(9007199254740993n);
    expect(exactInteger('1.0')).toBe(1n);
    expect(exactInteger('12e1')).toBe(120n);
    expect(exactInteger('1200e-2')).toBe(12n);
    expect(exactInteger('-0')).toBe(0n);
    expect(exactInteger('0e99999999999')).toBe(0n);
    expect(exactInteger('1.5')).toBeUndefined();
    expect(exactInteger('1e-1')).toBeUndefined();
    expect(exactInteger('1e400')).toBeUndefined(); // more digits than any integer column holds
  });

  it('integer types take exact tokens and bigints exactly, with exact range checks', () => {
    expect(accepts('bigint', x('9007199254740993'))).toBe('9007199254740993');
    expect(accepts('bigint', x('9223372036854775807'))).toBe('9223372036854775807');
    expect(accepts('bigint', x('-9223372036854775808'))).toBe('-9223372036854775808');
    expect(accepts('bigint', 9007199254740993n)).toBe('9007199254740993');
    expect(accepts('integer', x('1.0'))).toBe('1');
    expect(accepts('smallint', x('-0'))).toBe('0');
    refuses('bigint', x('9223372036854775808'));
    refuses('bigint', x('-9223372036854775809'));
    refuses('bigint', 2n ** 63n);
    refuses('integer', x('2147483648'));
    refuses('integer', 2147483648n);
    refuses('smallint', x('32768'));
    refuses('bigint', x('1.5'));
    refuses('bigint', x('1e400'));
  });

  it('numeric keeps the token as written, and refuses what overflows Postgres numeric', () => {
    expect(accepts('numeric', x('12345678901234567890.5'))).toBe('12345678901234567890.5');
    expect(accepts('numeric', x('1e400'))).toBe('1e400');
    expect(accepts('numeric', x('1.50'))).toBe('1.50');
    expect(accepts('numeric', 12345678901234567890n)).toBe('12345678901234567890');
    refuses('numeric', x('1e131072'));
    refuses('numeric', '1e-16384');
  });

  it('real and double precision take the token text, with the same range checks', () => {
    expect(accepts('double precision', x('0.10000000000000000001'))).toBe('0.10000000000000000001');
    expect(accepts('double precision', 12345678901234567890n)).toBe('12345678901234567890');
    refuses('double precision', x('1e400'));
    refuses('double precision', x('1e-400'));
    refuses('real', x('1e39'));
  });

  it('text takes the number as written', () => {
    expect(accepts('text', x('1.0'))).toBe('1.0');
    expect(accepts('text', 12345678901234567890n)).toBe('12345678901234567890');
  });

  it('timestamps take exact epoch milliseconds', () => {
    expect(accepts('timestamp with time zone', x('1.7e12'))).toBe(new Date(1.7e12).toISOString());
    expect(accepts('timestamp with time zone', 1700000000000n)).toBe(new Date(1.7e12).toISOString());
  });
});
