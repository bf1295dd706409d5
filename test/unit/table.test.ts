/**
 * Terminal tables: a long message is cut between words with an ellipsis (never
 * mid-word, never over its width), cells stay on one line, counts are grouped
 * and identifiers (pid, id, version) never are.
 */
import { describe, expect, it } from 'vitest';
import { renderTable, truncateWords } from '../../src/cli/table.js';

const LONG =
  'duplicate key value violates unique constraint "orders_external_ref_key" while draining a batch of staged rows into the durable table';

describe('truncateWords', () => {
  it('keeps short text as it is (whitespace runs and newlines flattened)', () => {
    expect(truncateWords('all good', 20)).toBe('all good');
    expect(truncateWords('line one\n  line two', 40)).toBe('line one line two');
  });

  it('cuts at a word boundary with an ellipsis, within the width, for every width the first word fits in', () => {
    const words = new Set(LONG.split(' '));
    for (let max = 10; max < LONG.length; max++) {
      const out = truncateWords(LONG, max);
      expect(out.length, `max ${max}`).toBeLessThanOrEqual(max);
      expect(out.endsWith('…'), `max ${max}: ${out}`).toBe(true);
      // Every word kept is a whole word of the original (the last may lose trailing punctuation).
      const kept = out.slice(0, -1).split(' ');
      for (const w of kept) expect(words.has(w) || [...words].some((x) => x.startsWith(w) && /^[,;:.]$/.test(x.slice(w.length))), `max ${max}: "${w}" in ${out}`).toBe(true);
      expect(LONG.startsWith(out.slice(0, -1)), `max ${max}: ${out}`).toBe(true);
    }
  });

  it('uses the whole width when the limit falls right after a word', () => {
    expect(truncateWords('alpha beta gamma', 11)).toBe('alpha beta…');
    expect(truncateWords('alpha beta gamma', 10)).toBe('alpha…');
  });

  it('cuts a single word longer than the width (nothing else fits)', () => {
    expect(truncateWords('x'.repeat(50), 10)).toBe(`${'x'.repeat(9)}…`);
  });
});

describe('renderTable', () => {
  it('limits a column by its header, cutting between words, and keeps each row on one line', () => {
    const table = renderTable(['reason', 'count', 'message'], [['drain_refused', 3, LONG], ['copy_rejected', 1, 'short\nmessage']], { maxWidth: { message: 40 } });
    const lines = table.split('\n');
    expect(lines).toHaveLength(4);
    const message = lines[2]!.slice(lines[0]!.indexOf('message'));
    expect(message.length).toBeLessThanOrEqual(40);
    expect(message).toBe(truncateWords(LONG, 40));
    expect(message).toMatch(/^duplicate key value violates unique…$/);
    expect(lines[3]).toMatch(/short message$/);
  });

  it('groups counts with thousands separators but never pids, ids or versions', () => {
    const table = renderTable(['worker', 'pid', 'job id', 'version', 'rows'], [['w-1', 1234567, 9876543, 1000001, 1234567]]);
    const row = table.split('\n')[2]!;
    expect(row.split(/\s+/)).toEqual(['w-1', '1234567', '9876543', '1000001', '1,234,567']);
  });

  it('right-aligns numeric columns and pads text columns', () => {
    const table = renderTable(['name', 'n'], [['a', 5], ['bbbb', 12345]]);
    expect(table.split('\n')).toEqual(['name       n', '----  ------', 'a          5', 'bbbb  12,345']);
  });
});
