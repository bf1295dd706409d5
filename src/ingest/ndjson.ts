/**
 * Split an NDJSON byte stream into lines, bounded: a line longer than
 * `maxLineChars` is not buffered whole (one runaway line must not exhaust
 * memory); it is reported with its head so it can still be rejected.
 *
 * Lines are split and checked as bytes: a line that is not valid UTF-8 is
 * reported as such with its raw bytes escaped (never decoded with U+FFFD
 * replacements, which would silently alter the data).
 */
import { isUtf8 } from 'node:buffer';
import type { Readable } from 'node:stream';

export interface NdjsonLine {
  /** 1-based line number in the input. */
  readonly number: number;
  /** The line, or for invalid UTF-8 its bytes escaped (see escapeBytes). */
  readonly text: string;
  /** True when the line was cut at maxLineChars. */
  readonly truncated: boolean;
  /** Length of the full line in characters (UTF-16 units). */
  readonly length: number;
  /** True when the line's bytes are not valid UTF-8. */
  readonly invalidUtf8: boolean;
}

const NEWLINE = 0x0a;
const CARRIAGE_RETURN = 0x0d;
const BACKSLASH = 0x5c;

/**
 * Printable ASCII as itself (a backslash doubled), every other byte as \xNN:
 * the exact bytes can be read back from the text.
 */
export function escapeBytes(bytes: Buffer): string {
  let out = '';
  for (const b of bytes) {
    if (b === BACKSLASH) out += '\\\\';
    else if (b >= 0x20 && b < 0x7f) out += String.fromCharCode(b);
    else out += `\\x${b.toString(16).padStart(2, '0')}`;
  }
  return out;
}

/** UTF-16 units the bytes decode to (continuation bytes add none; 4-byte sequences add two). */
function utf16Units(bytes: Buffer, from = 0, to = bytes.length): number {
  let units = 0;
  for (let i = from; i < to; i++) {
    const b = bytes[i]!;
    if ((b & 0xc0) !== 0x80) units += b >= 0xf0 ? 2 : 1;
  }
  return units;
}

export async function* readNdjson(
  input: Readable,
  maxLineChars: number,
  onBytes?: (bytes: number) => void,
): AsyncGenerator<NdjsonLine> {
  // A UTF-16 unit takes at most 3 bytes: a line of more bytes than this has more than maxLineChars characters.
  const maxLineBytes = maxLineChars * 3 + 4;
  let parts: Buffer[] = [];
  let kept = 0;
  let overflowUnits = 0;
  let overflow = false;
  let number = 0;
  const take = (): NdjsonLine => {
    number++;
    let bytes = parts.length === 1 ? parts[0]! : Buffer.concat(parts, kept);
    parts = [];
    kept = 0;
    const wasOverflow = overflow;
    const extra = overflowUnits;
    overflow = false;
    overflowUnits = 0;
    if (!wasOverflow && bytes.length > 0 && bytes[bytes.length - 1] === CARRIAGE_RETURN) bytes = bytes.subarray(0, -1);
    if (!wasOverflow && !isUtf8(bytes)) {
      return { number, text: escapeBytes(bytes).slice(0, maxLineChars), truncated: false, length: bytes.length, invalidUtf8: true };
    }
    // A cut line may end inside a character: its head decodes with a replacement there (it is rejected anyway).
    let text = bytes.toString('utf8');
    const length = wasOverflow ? utf16Units(bytes) + extra : text.length;
    const truncated = wasOverflow || text.length > maxLineChars;
    if (text.length > maxLineChars) text = text.slice(0, maxLineChars);
    return { number, text, truncated, length, invalidUtf8: false };
  };
  const keep = (chunk: Buffer) => {
    if (overflow) {
      overflowUnits += utf16Units(chunk);
      return;
    }
    const room = maxLineBytes - kept;
    if (chunk.length > room) {
      parts.push(chunk.subarray(0, room));
      kept += room;
      overflowUnits += utf16Units(chunk, room);
      overflow = true;
      return;
    }
    parts.push(chunk);
    kept += chunk.length;
  };
  for await (const chunk of input) {
    const buffer = chunk as Buffer;
    onBytes?.(buffer.length);
    let start = 0;
    for (let nl = buffer.indexOf(NEWLINE); nl !== -1; nl = buffer.indexOf(NEWLINE, start)) {
      keep(buffer.subarray(start, nl));
      yield take();
      start = nl + 1;
    }
    if (start < buffer.length) keep(buffer.subarray(start));
  }
  if (kept > 0 || overflow) yield take();
}
