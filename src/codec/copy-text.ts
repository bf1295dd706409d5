/**
 * COPY text format: fields separated by tabs, rows by newlines, NULL as \N,
 * and backslash, newline, carriage return and tab escaped with a backslash.
 */

export const COPY_NULL = '\\N';

const NEEDS_ESCAPE = /[\\\n\r\t]/;
const ESCAPES: Record<string, string> = { '\\': '\\\\', '\n': '\\n', '\r': '\\r', '\t': '\\t' };

export function escapeCopyText(value: string): string {
  return NEEDS_ESCAPE.test(value) ? value.replace(/[\\\n\r\t]/g, (ch) => ESCAPES[ch] as string) : value;
}

/** Split one encoded COPY line back into its fields (used to describe a row Postgres refused). */
export function decodeCopyLine(line: string): Array<string | null> {
  const body = line.endsWith('\n') ? line.slice(0, -1) : line;
  return body.split('\t').map((field) =>
    field === COPY_NULL
      ? null
      : field.replace(/\\(.)/g, (_, ch: string) => ({ n: '\n', r: '\r', t: '\t', '\\': '\\' })[ch] ?? ch),
  );
}
