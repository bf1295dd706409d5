/**
 * COPY text escaping: escapeCopyText leaves no raw tab, newline or carriage
 * return in a field, and decodeCopyLine gives back exactly the fields that
 * were escaped (checked on hand-picked and on deterministic random strings).
 */
import { describe, expect, it } from 'vitest';
import { COPY_NULL, decodeCopyLine, escapeCopyText } from '../../src/codec/copy-text.js';
import { prng } from '../../src/workload/event-generator.js';

function encodeLine(fields: Array<string | null>): string {
  return `${fields.map((f) => (f === null ? COPY_NULL : escapeCopyText(f))).join('\t')}\n`;
}

/** Random strings biased towards the characters COPY cares about. */
function randomString(random: () => number): string {
  const alphabet = ['\\', '\t', '\n', '\r', 'N', 'n', 't', 'r', '.', ' ', 'a', 'é', '😀', '\u2028', '\\N', '\\\\', '"', '{', '}'];
  const length = Math.floor(random() * 24);
  let s = '';
  for (let i = 0; i < length; i++) {
    if (random() < 0.15) s += String.fromCharCode(1 + Math.floor(random() * 0x7f));
    else s += alphabet[Math.floor(random() * alphabet.length)] as string;
  }
  return s;
}

describe('escapeCopyText', () => {
  it('leaves ordinary text untouched', () => {
    for (const s of ['', 'plain', 'é 😀 ☃', '{"a":1}', 'N', 'quote " and \' fine']) expect(escapeCopyText(s)).toBe(s);
  });

  it('escapes backslash, tab, newline and carriage return', () => {
    expect(escapeCopyText('\\')).toBe('\\\\');
    expect(escapeCopyText('\t')).toBe('\\t');
    expect(escapeCopyText('\n')).toBe('\\n');
    expect(escapeCopyText('\r')).toBe('\\r');
    expect(escapeCopyText('a\\b\tc\nd\re')).toBe('a\\\\b\\tc\\nd\\re');
  });

  it('never lets a text field read as NULL', () => {
    expect(escapeCopyText('\\N')).not.toBe(COPY_NULL);
    expect(decodeCopyLine(encodeLine(['\\N']))).toEqual(['\\N']);
  });
});

describe('decodeCopyLine', () => {
  it('splits on tabs, maps \\N to null and drops the trailing newline', () => {
    expect(decodeCopyLine('a\t\\N\tc\n')).toEqual(['a', null, 'c']);
    expect(decodeCopyLine('a\t\\N\tc')).toEqual(['a', null, 'c']);
    expect(decodeCopyLine('\t\n')).toEqual(['', '']);
  });

  it('round-trips hand-picked awkward fields', () => {
    const fields = ['', '\\', '\\\\', '\t', '\n', '\r\n', 'ends with backslash\\', '\\t literal', 'a\tb\\nc', '\\N', 'N', null, '😀\t😀'];
    const line = encodeLine(fields);
    expect(line.slice(0, -1)).not.toMatch(/[\n\r]/);
    expect(line.split('\t')).toHaveLength(fields.length);
    expect(decodeCopyLine(line)).toEqual(fields);
  });

  it('round-trips 5,000 deterministic random lines', () => {
    const random = prng(20261125);
    for (let i = 0; i < 5_000; i++) {
      const count = 1 + Math.floor(random() * 6);
      const fields: Array<string | null> = Array.from({ length: count }, () => (random() < 0.1 ? null : randomString(random)));
      const line = encodeLine(fields);
      // The only raw newline is the terminator; tabs are exactly the separators.
      expect(line.indexOf('\n')).toBe(line.length - 1);
      expect(line).not.toContain('\r');
      expect(line.split('\t').length).toBe(count);
      expect(decodeCopyLine(line), JSON.stringify(fields)).toEqual(fields);
    }
  });

  it('escaping is injective on random strings: distinct inputs, distinct encodings', () => {
    const random = prng(99);
    const seen = new Map<string, string>();
    for (let i = 0; i < 5_000; i++) {
      const s = randomString(random);
      const e = escapeCopyText(s);
      const before = seen.get(e);
      if (before !== undefined) expect(before).toBe(s);
      seen.set(e, s);
    }
    expect(seen.size).toBeGreaterThan(1_000);
  });
});
