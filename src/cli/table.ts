/** Plain-text tables for terminal output (right-aligned numbers). */

/** Columns holding identifiers (process ids, job ids, versions): numbers, but never grouped with thousands separators. */
const ID_COLUMN = /(^|[ _])(pid|id|version)$/;

const ELLIPSIS = '…';

/**
 * `text` in at most `max` characters: whole words, then an ellipsis. A word is
 * cut only when it alone is longer than the room (a 200-character token), never
 * because it happened to straddle the limit.
 */
export function truncateWords(text: string, max: number): string {
  const flat = text.replace(/\s+/g, ' ').trim();
  if (flat.length <= max) return flat;
  if (max <= 1) return ELLIPSIS.slice(0, max);
  const room = flat.slice(0, max - 1);
  // The cut falls between words when the next character is a space; else back up to the last space.
  const cut = flat[max - 1] === ' ' ? room.length : room.lastIndexOf(' ');
  const kept = cut > 0 ? room.slice(0, cut) : room;
  return `${kept.replace(/[\s,;:.\-–—]+$/, '')}${ELLIPSIS}`;
}

export interface TableOptions {
  /** Longest cell per column (by header), e.g. { message: 60 }: longer text is cut at a word boundary with an ellipsis. */
  readonly maxWidth?: Readonly<Record<string, number>>;
}

function cell(value: string | number, grouped: boolean, max: number | undefined): string {
  if (typeof value === 'number') return grouped ? value.toLocaleString('en-US') : String(value);
  // A newline inside a cell (a Postgres message) would break the table's rows.
  const flat = value.replace(/\s+/g, ' ');
  return max === undefined ? flat : truncateWords(flat, max);
}

export function renderTable(headers: string[], rows: Array<Array<string | number>>, options: TableOptions = {}): string {
  const grouped = headers.map((h) => !ID_COLUMN.test(h));
  const cells = rows.map((r) => r.map((c, i) => cell(c, grouped[i] ?? true, options.maxWidth?.[headers[i] ?? ''])));
  const widths = headers.map((h, i) => Math.max(h.length, ...cells.map((r) => (r[i] ?? '').length)));
  const numeric = headers.map((_, i) => rows.length > 0 && rows.every((r) => typeof r[i] === 'number'));
  const line = (r: string[]) =>
    r.map((c, i) => (numeric[i] ? c.padStart(widths[i] ?? 0) : c.padEnd(widths[i] ?? 0))).join('  ').trimEnd();
  return [line(headers), line(widths.map((w) => '-'.repeat(w))), ...cells.map(line)].join('\n');
}
