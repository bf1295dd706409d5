/**
 * Split an NDJSON byte stream into lines, bounded: a line longer than
 * `maxLineChars` is not buffered whole (one runaway line must not exhaust
 * memory); it is reported with its head so it can still be rejected.
 */
import { StringDecoder } from 'node:string_decoder';
import type { Readable } from 'node:stream';

export interface NdjsonLine {
  /** 1-based line number in the input. */
  readonly number: number;
  readonly text: string;
  /** True when the line was cut at maxLineChars. */
  readonly truncated: boolean;
  /** Length of the full line in characters. */
  readonly length: number;
}

export async function* readNdjson(
  input: Readable,
  maxLineChars: number,
  onBytes?: (bytes: number) => void,
): AsyncGenerator<NdjsonLine> {
  const decoder = new StringDecoder('utf8');
  let carry = '';
  let carryLength = 0;
  let overflow = false;
  let number = 0;
  const take = (piece: string): NdjsonLine | undefined => {
    number++;
    const length = carryLength + piece.length;
    let text = overflow ? carry : carry + piece;
    // Cut at the same bound whether the line arrived in one chunk or across several.
    const truncated = overflow || text.length > maxLineChars;
    if (text.length > maxLineChars) text = text.slice(0, maxLineChars);
    const line = { number, text: !truncated && text.endsWith('\r') ? text.slice(0, -1) : text, truncated, length };
    carry = '';
    carryLength = 0;
    overflow = false;
    return line;
  };
  for await (const chunk of input) {
    const buffer = chunk as Buffer;
    onBytes?.(buffer.length);
    const text = decoder.write(buffer);
    let start = 0;
    for (let nl = text.indexOf('\n'); nl !== -1; nl = text.indexOf('\n', start)) {
      const line = take(text.slice(start, nl));
      if (line) yield line;
      start = nl + 1;
    }
    const rest = text.slice(start);
    carryLength += rest.length;
    if (!overflow) {
      carry += rest;
      if (carry.length > maxLineChars) {
        carry = carry.slice(0, maxLineChars);
        overflow = true;
      }
    }
  }
  const tail = decoder.end();
  if (tail) {
    carryLength += tail.length;
    if (!overflow) carry += tail;
  }
  if (carryLength > 0) {
    const line = take('');
    if (line) yield line;
  }
}
