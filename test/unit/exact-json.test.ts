/**
 * exact-json: the scanner that decides whether a line needs the exact path,
 * the exact parser (JSON.parse's results, except numbers a double would
 * change), the exact serialiser, and Postgres numeric's limits.
 */
import { describe, expect, it } from 'vitest';
import {
  ExactNumber,
  hasInexactNumber,
  isExactAsDouble,
  numericProblem,
  parseJsonExact,
  stringifyJson,
} from '../../src/codec/exact-json.js';

describe('isExactAsDouble', () => {
  it('is true exactly when JSON.stringify(JSON.parse(token)) gives the token back', () => {
    const tokens = [
      '0', '-1', '123', '1700000000000', '9007199254740991', '9007199254740993', '12345678901234567890',
      '3.14', '0.1', '1.0', '1.50', '-0', '-0.0', '0.0', '1e2', '1E2', '1e21', '1e-7', '1.5e-10', '1e400', '1E-400',
      '123456789012345', '1234567890123456', '5e-324', '100000000000000000000', '0.30000000000000004',
    ];
    for (const t of tokens) {
      expect(isExactAsDouble(t), t).toBe(JSON.stringify(JSON.parse(t)) === t);
    }
  });
});

describe('hasInexactNumber decides each token as a double round trip would', () => {
  const roundTripChanges = (t: string) => JSON.stringify(JSON.parse(t)) !== t;

  it('on edge tokens of the in-place fast path (15 digits, 1e-6, -0, trailing zeros)', () => {
    const tokens = [
      '0', '-0', '0.5', '-0.5', '0.000001', '0.0000001', '-0.000001', '0.0000010', '123456789012345', '1234567890123456',
      '1234567890.12345', '1234567890.123456', '0.123456789012345', '0.1234567890123456', '99999999999999.9', '9999999999999999',
      '1.10', '10', '100.5', '-100.05', '0.30000000000000004', '72.07', '1700000000000', '1e5', '-1E-5', '5.0e0',
    ];
    for (const t of tokens) expect(hasInexactNumber(`[${t}]`), t).toBe(roundTripChanges(t));
  });

  it('on 20,000 random decimals of every length', () => {
    let seed = 42;
    const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    const digits = (n: number) => Array.from({ length: n }, () => Math.floor(random() * 10)).join('');
    for (let i = 0; i < 20_000; i++) {
      const int = random() < 0.3 ? '0' : `${1 + Math.floor(random() * 9)}${digits(Math.floor(random() * 20))}`;
      const frac = random() < 0.6 ? `.${digits(1 + Math.floor(random() * 20))}` : '';
      const exp = random() < 0.15 ? `e${random() < 0.5 ? '-' : ''}${Math.floor(random() * 30)}` : '';
      const t = `${random() < 0.3 ? '-' : ''}${int}${frac}${exp}`;
      expect(hasInexactNumber(`{"k":${t}}`), t).toBe(roundTripChanges(t));
    }
  });
});

describe('hasInexactNumber', () => {
  it('finds inexact numbers anywhere outside strings', () => {
    expect(hasInexactNumber('{"a":1,"b":[2,{"c":1.0}]}')).toBe(true);
    expect(hasInexactNumber('[12345678901234567890]')).toBe(true);
    expect(hasInexactNumber('-0')).toBe(true);
    expect(hasInexactNumber('{"a" : 1e400 }')).toBe(true);
    expect(hasInexactNumber('{"a":{"b":{"c":[[[0.10]]]}}}')).toBe(true);
  });

  it('is false for exact numbers, and ignores digits inside strings and keys', () => {
    expect(hasInexactNumber('{"a":1,"b":-2.5,"c":[3,4e-7],"t":1700000000000}')).toBe(false);
    expect(hasInexactNumber('{"1.0":"12345678901234567890","x":"1e400"}')).toBe(false);
    expect(hasInexactNumber('{}')).toBe(false);
    expect(hasInexactNumber('"-0"')).toBe(false);
  });

  it('skips escaped quotes inside strings, and sees the quote after an escaped backslash as closing', () => {
    // "a\"1.0" is one string: the 1.0 is inside it.
    expect(hasInexactNumber(String.raw`{"s":"a\"1.0\"","n":1}`)).toBe(false);
    // "a\\" ends at the second quote: the 1.0 after it is a number.
    expect(hasInexactNumber(String.raw`["a\\",1.0]`)).toBe(true);
    expect(hasInexactNumber(String.raw`["a\\\"1.0"]`)).toBe(false);
    expect(hasInexactNumber(String.raw`{"k\\":"v","n":[1,2,3.10]}`)).toBe(true);
    expect(hasInexactNumber(String.raw`{"u":"\u00221.0"}`)).toBe(false);
  });
});

describe('parseJsonExact', () => {
  it('returns JSON.parse results when every number is exact as a double', () => {
    const text = '{"a":1,"b":[true,null,"x\\"y"],"c":{"d":2.5}}';
    expect(parseJsonExact(text)).toEqual(JSON.parse(text));
  });

  it('keeps inexact tokens as their text, everywhere, and the rest as JSON.parse does', () => {
    const value = parseJsonExact('{"big":12345678901234567890,"ok":2,"l":[1.0,{"z":-0}],"s":"\\u0041\\/\\n😀\\ud83d\\ude00"}') as Record<string, unknown>;
    expect(value.big).toEqual(new ExactNumber('12345678901234567890'));
    expect(value.ok).toBe(2);
    expect(value.l).toEqual([new ExactNumber('1.0'), { z: new ExactNumber('-0') }]);
    expect(value.s).toBe('A/\n😀😀');
  });

  it('keeps the last of duplicate keys, and __proto__ as an own key (as JSON.parse does)', () => {
    const value = parseJsonExact('{"a":1,"a":1.0,"__proto__":{"x":1.0},"b":[]}') as Record<string, unknown>;
    expect(Object.keys(value)).toEqual(['a', '__proto__', 'b']);
    expect(value.a).toEqual(new ExactNumber('1.0'));
    expect(Object.getPrototypeOf(value)).toBe(Object.prototype);
    expect(Object.hasOwn(value, '__proto__')).toBe(true);
    expect(stringifyJson(value)).toBe('{"a":1.0,"__proto__":{"x":1.0},"b":[]}');
  });

  it('throws SyntaxError for invalid JSON, as JSON.parse', () => {
    for (const bad of ['{', '{"a":01}', '[1.]', '{"a":1,}', '"\\x"', '1 2', '']) {
      expect(() => parseJsonExact(bad), bad).toThrow(SyntaxError);
    }
  });

  it('round-trips awkward documents through stringifyJson verbatim (minus whitespace)', () => {
    for (const text of [
      '[12345678901234567890,1e400,1E-400,-0,-0.0,0.1000000000000000000000000001,1e2,1E+2]',
      '{"deep":[[[[{"n":123456789012345678901234567890.123456789}]]]],"e":{},"a":[]}',
    ]) {
      expect(stringifyJson(parseJsonExact(text))).toBe(text);
    }
  });
});

describe('stringifyJson', () => {
  it('is JSON.stringify for plain values', () => {
    const value = { a: 1, b: 'x', c: [null, true], d: new Date(0), u: undefined };
    expect(stringifyJson(value)).toBe(JSON.stringify(value));
  });

  it('writes bigints and exact numbers as digits, honours toJSON, drops undefined like JSON.stringify', () => {
    expect(stringifyJson({ n: 2n ** 70n, e: new ExactNumber('1.0'), d: new Date(0), u: undefined, f: [undefined] })).toBe(
      '{"n":1180591620717411303424,"e":1.0,"d":"1970-01-01T00:00:00.000Z","f":[null]}',
    );
  });

  it('still refuses circular structures, and numbers past Postgres numeric', () => {
    const circular: Record<string, unknown> = { n: 1n };
    circular.self = circular;
    expect(() => stringifyJson(circular)).toThrow(TypeError);
    expect(() => stringifyJson([new ExactNumber('1e131072')])).toThrow(/numeric/);
  });

  it('an ExactNumber refuses plain JSON.stringify instead of rounding', () => {
    expect(() => JSON.stringify({ a: new ExactNumber('1.0') })).toThrow();
  });
});

describe('numericProblem (Postgres: "value overflows numeric format")', () => {
  it('accepts what numeric accepts', () => {
    for (const t of ['0', '-0', '1e131071', '9.9e131071', '1e-16383', '0e99999', '0.5e-16382', '123.456e-16380', '1.', '.5', '+7', '007']) {
      expect(numericProblem(t), t).toBeUndefined();
    }
  });

  it('refuses past 131072 digits before the point or 16383 after', () => {
    for (const t of ['1e131072', '10e131071', '1e-16384', '0.0e-20000', `0.${'0'.repeat(16383)}1`, '1e99999999999']) {
      expect(numericProblem(t), t).toBeDefined();
    }
  });
});
