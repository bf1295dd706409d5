/**
 * JSON without silent number changes.
 *
 * Postgres keeps a JSON number as `numeric`, exactly as written
 * (`12345678901234567890`, `1.0`, `1e400`); JSON.parse turns it into a double.
 * For most tokens that changes nothing: when `String(Number(t)) === t`,
 * JSON.stringify(JSON.parse(t)) gives back `t` itself. Only events whose text
 * holds a token that does not round-trip take the slow path here: a parser
 * that keeps such tokens as ExactNumber (their source text), and a serialiser
 * that writes them back verbatim.
 *
 * Why not lossless-json: it throws on duplicate keys (Postgres and JSON.parse
 * keep the last), and it needs its own full validating parser on every
 * slow-path event; here the text is always validated by JSON.parse first, so
 * the slow path only has to split valid JSON, and strings are decoded by
 * JSON.parse itself (identical escapes and errors).
 */

/** A JSON number kept as its source text because a double would change it. */
export class ExactNumber {
  constructor(readonly text: string) {}

  toString(): string {
    return this.text;
  }

  /** Refuse the lossy way out: JSON.stringify of an ExactNumber fails; use stringifyJson. */
  toJSON(): never {
    throw NEEDS_EXACT_JSON;
  }
}

class NeedsExactJson extends Error {}
/** One instance, thrown without building a stack each time. */
const NEEDS_EXACT_JSON = new NeedsExactJson('an exact JSON number must be serialised with stringifyJson');

/** Objects and arrays the exact parser built that hold an ExactNumber somewhere inside. */
const holdsExactNumber = new WeakSet<object>();

/** A number read from JSON or given by a TS caller: double, bigint, or kept text. */
export function isNumberLike(value: unknown): value is number | bigint | ExactNumber {
  return typeof value === 'number' || typeof value === 'bigint' || value instanceof ExactNumber;
}

/** The value as a plain double where one is expected (epoch milliseconds). */
export function toPlainNumber(value: unknown): unknown {
  if (value instanceof ExactNumber) return Number(value.text);
  if (typeof value === 'bigint') return Number(value);
  return value;
}

/** The decimal text of a number-like value (as written, for ExactNumber). */
export function numberText(value: number | bigint | ExactNumber): string {
  return value instanceof ExactNumber ? value.text : String(value);
}

const enum Char {
  Quote = 34,
  Backslash = 92,
  Minus = 45,
  Plus = 43,
  Dot = 46,
  Zero = 48,
  Nine = 57,
  LowerE = 101,
  UpperE = 69,
}

function isNumberChar(c: number): boolean {
  return (c >= Char.Zero && c <= Char.Nine) || c === Char.Dot || c === Char.Minus || c === Char.Plus || c === Char.LowerE || c === Char.UpperE;
}

/** Index of the quote closing the string whose opening quote is at `open` (-1: unterminated). */
function closingQuote(text: string, open: number): number {
  let q = text.indexOf('"', open + 1);
  while (q !== -1) {
    // The quote is escaped when an odd number of backslashes precede it.
    let b = q - 1;
    while (text.charCodeAt(b) === Char.Backslash) b--;
    if ((q - 1 - b) % 2 === 0) return q;
    q = text.indexOf('"', q + 1);
  }
  return -1;
}

/**
 * End of the number token starting at `start`, as `end` when the token
 * survives a double unchanged and `-1 - end` when it does not. Decides in
 * place, without slicing, for the common tokens: at most 15 digits (DBL_DIG:
 * such a decimal comes back from a double digit for digit), no exponent, no
 * trailing zero after a point, at least 1e-6 (below, JS writes 1e-7).
 */
function scanNumber(text: string, start: number): number {
  const n = text.length;
  let i = start;
  if (text.charCodeAt(i) === Char.Minus) i++;
  const intStart = i;
  while (i < n && isDigit(text.charCodeAt(i))) i++;
  const intDigits = i - intStart;
  let fracDigits = 0;
  let lastFrac = 0;
  let leadingFracZeros = 0;
  let plain = true;
  if (text.charCodeAt(i) === Char.Dot) {
    i++;
    const fracStart = i;
    while (i < n && isDigit(text.charCodeAt(i))) i++;
    fracDigits = i - fracStart;
    lastFrac = text.charCodeAt(i - 1);
    while (leadingFracZeros < fracDigits && text.charCodeAt(fracStart + leadingFracZeros) === Char.Zero) leadingFracZeros++;
    plain = fracDigits > 0 && lastFrac !== Char.Zero;
  }
  let end = i;
  while (end < n && isNumberChar(text.charCodeAt(end))) end++;
  if (end === i && plain && intDigits + fracDigits <= 15) {
    const leadingZero = text.charCodeAt(intStart) === Char.Zero;
    if (!leadingZero) return end; // 7, -42, 1700000000000, 72.07
    if (intDigits === 1 && fracDigits > 0 && leadingFracZeros < 6) return end; // 0.5, -0.25, 0.000001
    if (intDigits === 1 && fracDigits === 0 && intStart === start) return end; // 0 (but not -0)
  }
  return isExactAsDouble(text.slice(start, end)) ? end : -1 - end;
}

function isDigit(c: number): boolean {
  return c >= Char.Zero && c <= Char.Nine;
}

/** True when the number token survives a trip through a double unchanged. */
export function isExactAsDouble(token: string): boolean {
  // Fast common case: a short plain integer without a leading zero or sign quirk.
  const n = token.length;
  if (n <= 15) {
    let i = token.charCodeAt(0) === Char.Minus ? 1 : 0;
    const first = token.charCodeAt(i);
    if (first > Char.Zero && first <= Char.Nine) {
      for (i++; i < n; i++) {
        const c = token.charCodeAt(i);
        if (c < Char.Zero || c > Char.Nine) break;
      }
      if (i === n) return true;
    }
  }
  return String(Number(token)) === token;
}

/**
 * Whether JSON text holds a number token a double would change (big or long
 * numbers, `1.0`, `1e2`, `-0`, `1e400`, `1e-7`…). Skips over strings, minding
 * escaped quotes. Runs on every line, so it jumps from quote to quote with
 * indexOf and only looks at characters between strings.
 */
export function hasInexactNumber(text: string): boolean {
  const n = text.length;
  let i = 0;
  while (i < n) {
    const c = text.charCodeAt(i);
    if (c === Char.Quote) {
      const close = closingQuote(text, i);
      if (close === -1) return false; // not valid JSON; JSON.parse reports it
      i = close + 1;
    } else if (c === Char.Minus || (c >= Char.Zero && c <= Char.Nine)) {
      const end = scanNumber(text, i);
      if (end < 0) return true;
      i = end;
    } else {
      i++;
    }
  }
  return false;
}

/**
 * Parse JSON text as JSON.parse does, except that number tokens a double would
 * change become ExactNumber. Objects are plain objects with own properties
 * only (`__proto__` included, as JSON.parse makes it); a repeated key keeps
 * its last value, as in JSON.parse and Postgres jsonb.
 * Throws SyntaxError on invalid JSON (JSON.parse validates first).
 */
export function parseJsonExact(text: string): unknown {
  const fast = JSON.parse(text) as unknown;
  if (!hasInexactNumber(text)) return fast;
  return new ExactParser(text).parseDocument();
}

/**
 * The slow path alone, for text JSON.parse has already accepted (e.g. a job
 * payload node-pg parsed): numbers a double would change become ExactNumber.
 */
export function reparseJsonExact(validText: string): unknown {
  return new ExactParser(validText).parseDocument();
}

/** Splits text already known to be valid JSON (JSON.parse accepted it). */
class ExactParser {
  private pos = 0;
  /** ExactNumbers made so far: a container whose parse raised it holds one. */
  private exactCount = 0;

  constructor(private readonly text: string) {}

  parseDocument(): unknown {
    const value = this.value();
    this.skipSpace();
    if (this.pos !== this.text.length) throw new SyntaxError(`unexpected text at position ${this.pos}`);
    return value;
  }

  private skipSpace(): void {
    const t = this.text;
    for (;;) {
      const c = t.charCodeAt(this.pos);
      if (c === 32 || c === 9 || c === 10 || c === 13) this.pos++;
      else return;
    }
  }

  private value(): unknown {
    this.skipSpace();
    const t = this.text;
    const c = t.charCodeAt(this.pos);
    if (c === Char.Quote) return this.string();
    if (c === 123 /* { */) return this.object();
    if (c === 91 /* [ */) return this.array();
    if (c === Char.Minus || (c >= Char.Zero && c <= Char.Nine)) return this.number();
    if (t.startsWith('true', this.pos)) return this.literal(4, true);
    if (t.startsWith('false', this.pos)) return this.literal(5, false);
    if (t.startsWith('null', this.pos)) return this.literal(4, null);
    throw new SyntaxError(`unexpected character at position ${this.pos}`);
  }

  private literal<T>(length: number, value: T): T {
    this.pos += length;
    return value;
  }

  private string(): string {
    const close = closingQuote(this.text, this.pos);
    if (close === -1) throw new SyntaxError(`unterminated string at position ${this.pos}`);
    const raw = this.text.slice(this.pos, close + 1);
    this.pos = close + 1;
    // Escapes are decoded by JSON.parse itself: same rules, same results.
    return raw.includes('\\') ? (JSON.parse(raw) as string) : raw.slice(1, -1);
  }

  private number(): number | ExactNumber {
    const start = this.pos;
    const scanned = scanNumber(this.text, start);
    const end = scanned < 0 ? -1 - scanned : scanned;
    this.pos = end;
    const token = this.text.slice(start, end);
    if (scanned >= 0) return Number(token);
    this.exactCount++;
    return new ExactNumber(token);
  }

  /** Remember containers holding exact numbers, so stringifyJson goes straight to the exact walk. */
  private mark<T extends object>(container: T, exactBefore: number): T {
    if (this.exactCount > exactBefore) holdsExactNumber.add(container);
    return container;
  }

  private array(): unknown[] {
    this.pos++; // [
    const exactBefore = this.exactCount;
    const out: unknown[] = [];
    this.skipSpace();
    if (this.text.charCodeAt(this.pos) === 93 /* ] */) {
      this.pos++;
      return out;
    }
    for (;;) {
      out.push(this.value());
      this.skipSpace();
      const c = this.text.charCodeAt(this.pos++);
      if (c === 93) return this.mark(out, exactBefore);
      if (c !== 44 /* , */) throw new SyntaxError(`expected , or ] at position ${this.pos - 1}`);
    }
  }

  private object(): Record<string, unknown> {
    this.pos++; // {
    const exactBefore = this.exactCount;
    const out: Record<string, unknown> = {};
    this.skipSpace();
    if (this.text.charCodeAt(this.pos) === 125 /* } */) {
      this.pos++;
      return out;
    }
    for (;;) {
      this.skipSpace();
      if (this.text.charCodeAt(this.pos) !== Char.Quote) throw new SyntaxError(`expected a key at position ${this.pos}`);
      const key = this.string();
      this.skipSpace();
      if (this.text.charCodeAt(this.pos++) !== 58 /* : */) throw new SyntaxError(`expected : at position ${this.pos - 1}`);
      const value = this.value();
      // An own data property even for "__proto__" (plain assignment would set the prototype).
      if (key === '__proto__') Object.defineProperty(out, key, { value, writable: true, enumerable: true, configurable: true });
      else out[key] = value;
      this.skipSpace();
      const c = this.text.charCodeAt(this.pos++);
      if (c === 125) return this.mark(out, exactBefore);
      if (c !== 44) throw new SyntaxError(`expected , or } at position ${this.pos - 1}`);
    }
  }
}

/**
 * JSON.stringify, except that ExactNumber is written as its source text and
 * bigint as its decimal digits (JSON.stringify throws on both). The fast path
 * is JSON.stringify itself; only values holding one of those pay for the
 * exact walk (known up front for what the exact parser built; found by
 * JSON.stringify throwing for the rest). By default a number Postgres numeric cannot hold throws a
 * RangeError (jsonb would refuse it); `withinNumericLimits: false` writes it
 * anyway (for the raw text of a reject).
 */
export function stringifyJson(value: unknown, { withinNumericLimits = true } = {}): string | undefined {
  if (value instanceof ExactNumber || (typeof value === 'object' && value !== null && holdsExactNumber.has(value))) {
    return stringifyExact(value, '', new Set(), withinNumericLimits);
  }
  try {
    return JSON.stringify(value);
  } catch (err) {
    if (!(err instanceof NeedsExactJson) && !(err instanceof TypeError && /BigInt/i.test(err.message))) throw err;
    return stringifyExact(value, '', new Set(), withinNumericLimits);
  }
}

function exactText(value: ExactNumber, check: boolean): string {
  const problem = check ? numericProblem(value.text) : undefined;
  if (problem) throw new RangeError(problem);
  return value.text;
}

function stringifyExact(input: unknown, key: string, ancestors: Set<object>, check: boolean): string | undefined {
  let value = input;
  if (value instanceof ExactNumber) return exactText(value, check);
  if (typeof value === 'bigint') return value.toString();
  if (value !== null && typeof value === 'object' && typeof (value as { toJSON?: unknown }).toJSON === 'function') {
    value = (value as { toJSON(key: string): unknown }).toJSON(key);
    if (value instanceof ExactNumber) return exactText(value, check);
    if (typeof value === 'bigint') return value.toString();
  }
  switch (typeof value) {
    case 'string':
    case 'number':
    case 'boolean':
      return JSON.stringify(value);
    case 'undefined':
    case 'function':
    case 'symbol':
      return undefined;
    default:
  }
  if (value === null) return 'null';
  const object = value as object;
  // Boxed primitives serialise as their primitive, as in JSON.stringify.
  if (object instanceof Number || object instanceof String || object instanceof Boolean) return JSON.stringify(object);
  if (ancestors.has(object)) throw new TypeError('Converting circular structure to JSON');
  ancestors.add(object);
  let out: string;
  if (Array.isArray(object)) {
    out = '[';
    for (let i = 0; i < object.length; i++) {
      out += `${i === 0 ? '' : ','}${stringifyExact(object[i], String(i), ancestors, check) ?? 'null'}`;
    }
    out += ']';
  } else {
    out = '';
    for (const k of Object.keys(object)) {
      const member = stringifyExact((object as Record<string, unknown>)[k], k, ancestors, check);
      if (member === undefined) continue;
      out += `${out === '' ? '{' : ','}${JSON.stringify(k)}:${member}`;
    }
    out = out === '' ? '{}' : `${out}}`;
  }
  ancestors.delete(object);
  return out;
}

/** Postgres numeric limits (src/include/utils/numeric.h): NBASE 10000, weight ≤ 0x7FFF, dscale ≤ 0x3FFF. */
const NUMERIC_MAX_DECIMAL_WEIGHT = 0x7fff * 4 + 3; // 131071: the last decimal digit position of the largest weight
const NUMERIC_MAX_DSCALE = 0x3fff; // 16383 digits after the decimal point
/** PG 15's numeric input gives up on exponents past INT32_MAX / 2 ("invalid input syntax"). */
const NUMERIC_MAX_EXPONENT = 1_073_741_823;

/** A JSON number token, or the looser numeric text a string column value may hold (`+1`, `.5`, `007`, `1.`). */
const NUMBER_PARTS = /^[+-]?(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?$/;

/**
 * Why Postgres' numeric (and so jsonb) would refuse this number token
 * ("value overflows numeric format"), or undefined when it takes it. A
 * double's own range is far inside these limits: only exact tokens need it.
 */
export function numericProblem(token: string): string | undefined {
  const m = NUMBER_PARTS.exec(token);
  if (!m || (m[1] === '' && !m[2])) return `${token.slice(0, 40)} is not a number`;
  const intDigits = m[1] as string;
  const fracDigits = m[2] ?? '';
  const expText = m[3] ?? '0';
  // Compare exponents as text length first: an exponent of thousands of digits must not become Infinity quietly.
  const expDigits = expText.replace(/^[+-]?0*/, '');
  if (expDigits.length > 10 || Number(expDigits) > NUMERIC_MAX_EXPONENT) return `${token.slice(0, 40)}: exponent out of range for Postgres numeric`;
  const exponent = Number(expText);
  const dscale = Math.max(0, fracDigits.length - exponent);
  if (dscale > NUMERIC_MAX_DSCALE) return `${token.slice(0, 40)}… has ${dscale} digits after the decimal point; Postgres numeric allows ${NUMERIC_MAX_DSCALE}`;
  const digits = intDigits + fracDigits;
  const firstNonZero = digits.search(/[1-9]/);
  if (firstNonZero === -1) return undefined; // zero: only the scale matters
  const decimalWeight = intDigits.length - 1 - firstNonZero + exponent;
  if (decimalWeight > NUMERIC_MAX_DECIMAL_WEIGHT) return `${token.slice(0, 40)} is too large for Postgres numeric (more than ${NUMERIC_MAX_DECIMAL_WEIGHT + 1} digits before the decimal point)`;
  return undefined;
}
