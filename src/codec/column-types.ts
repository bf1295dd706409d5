/**
 * The column types a stream may declare, each with the check and COPY text
 * encoding sluice applies before a value reaches Postgres. Mirrors
 * sluice.allowed_column_types() in migrations/00002.
 */
import { escapeCopyText } from './copy-text.js';
import { parseDate, parseTimestamp } from './timestamps.js';
import { ExactNumber, isNumberLike, numberText, numericProblem, stringifyJson, toPlainNumber } from './exact-json.js';

/** Thrown by an encoder; the message says what was wrong with the value. */
export class InvalidValue extends Error {}

export type Encoder = (value: unknown) => string;

const UUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;
const INTEGER_TEXT = /^[+-]?\d{1,20}$/;
const NUMERIC_TEXT = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;
const NUL_OR_LONE_SURROGATE_IN_JSON = /(^|[^\\])(\\\\)*\\u(0000|d[89a-f][0-9a-f]{2})/i;

function describe(value: unknown): string {
  const text = typeof value === 'string' ? JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value) : String(value).slice(0, 60);
  const kind = value === null ? 'null' : Array.isArray(value) ? 'array' : value instanceof ExactNumber ? 'number' : typeof value;
  return `${text} (${kind})`;
}

export function checkText(value: string): string {
  if (value.includes('\0')) throw new InvalidValue('text cannot contain the NUL character (\\u0000)');
  if (!value.isWellFormed()) throw new InvalidValue('text contains an unpaired UTF-16 surrogate');
  return value;
}

/** JSON text for a jsonb value; Postgres' jsonb refuses \u0000 and unpaired surrogates. */
export function encodeJson(value: unknown): string {
  let json: string | undefined;
  try {
    json = stringifyJson(value);
  } catch (err) {
    throw new InvalidValue(`value is not serialisable as JSON: ${(err as Error).message}`);
  }
  if (json === undefined) throw new InvalidValue(`value ${describe(value)} is not JSON`);
  const problem = jsonProblem(json);
  if (problem) throw new InvalidValue(problem);
  return json;
}

/** Why Postgres' jsonb would refuse this JSON text (\u0000, unpaired surrogates), or undefined. */
export function jsonProblem(json: string): string | undefined {
  if (json.includes('\\u') && NUL_OR_LONE_SURROGATE_IN_JSON.test(json)) {
    return 'JSON cannot contain \\u0000 or an unpaired UTF-16 surrogate (Postgres jsonb refuses both)';
  }
  return undefined;
}

const JSON_NUMBER_PARTS = /^(-)?(\d+)(?:\.(\d+))?(?:[eE]([+-]?\d+))?$/;

/**
 * The integer a JSON number token stands for (`1.0`, `12e1`, `-0` included),
 * or undefined when it is not an integer or has more than `maxDigits` digits.
 * Exact: no double in between.
 */
export function exactInteger(token: string, maxDigits = 20): bigint | undefined {
  const m = JSON_NUMBER_PARTS.exec(token);
  if (!m) return undefined;
  const sign = m[1] ?? '';
  const digits = `${m[2] as string}${m[3] ?? ''}`.replace(/^0+/, '');
  if (digits === '') return 0n;
  const expText = (m[4] ?? '0').replace(/^([+-]?)0+(?=\d)/, '$1');
  if (expText.replace(/^[+-]/, '').length > 7) return undefined; // |exponent| ≥ 10^7: never a small integer (digits ≠ 0)
  const shift = Number(expText) - (m[3]?.length ?? 0); // value = digits × 10^shift
  const significant = digits.replace(/0+$/, '');
  const trailingZeros = digits.length - significant.length;
  if (shift < 0 && -shift > trailingZeros) return undefined; // a fraction remains
  if (digits.length + shift > maxDigits) return undefined;
  const n = shift >= 0 ? BigInt(digits) * 10n ** BigInt(shift) : BigInt(digits.slice(0, digits.length + shift));
  return sign === '-' ? -n : n;
}
function integerEncoder(min: bigint, max: bigint, typeName: string): Encoder {
  const minN = Number(min);
  const maxN = Number(max);
  return (value) => {
    if (typeof value === 'number') {
      if (Number.isInteger(value) && value >= minN && value <= maxN && Number.isSafeInteger(value)) return String(value);
      throw new InvalidValue(`${describe(value)} is not a ${typeName}`);
    }
    if (typeof value === 'bigint' || value instanceof ExactNumber) {
      // Exact: a JSON number past 2^53 (kept as its text) or a TS bigint.
      const n = typeof value === 'bigint' ? value : exactInteger(value.text);
      if (n !== undefined && n >= min && n <= max) return n.toString();
      throw new InvalidValue(`${describe(value)} is not a ${typeName} (range ${min} to ${max})`);
    }
    if (typeof value === 'string' && INTEGER_TEXT.test(value)) {
      const n = BigInt(value);
      if (n >= min && n <= max) return n.toString();
    }
    throw new InvalidValue(`${describe(value)} is not a ${typeName} (range ${min} to ${max})`);
  };
}

const NONZERO_MANTISSA = /^[+-]?0*\.?0*[1-9]/;

/**
 * real / double precision. Postgres (12+) refuses values that overflow *or
 * underflow* the type ("out of range"), so both are caught here rather than
 * failing a whole COPY.
 */
function floatEncoder(maxAbs: number, typeName: string, single: boolean): Encoder {
  return (input) => {
    // Exact numbers and bigints go as their text: Postgres rounds it as Number() does.
    const value = typeof input === 'bigint' || input instanceof ExactNumber ? numberText(input) : input;
    const n = typeof value === 'number' ? value : typeof value === 'string' && NUMERIC_TEXT.test(value) ? Number(value) : NaN;
    if (!Number.isFinite(n) || Math.abs(n) > maxAbs) throw new InvalidValue(`${describe(value)} is not a finite ${typeName}`);
    const underflows = single ? n !== 0 && Math.fround(n) === 0 : n === 0 && typeof value === 'string' && NONZERO_MANTISSA.test(value);
    if (underflows || (typeof value === 'string' && single && n === 0 && NONZERO_MANTISSA.test(value))) {
      throw new InvalidValue(`${describe(value)} is too small for ${typeName} (underflow)`);
    }
    return typeof value === 'string' ? value : String(value);
  };
}

const ENCODERS: Record<string, Encoder> = {
  text: (value) => {
    if (typeof value === 'string') return escapeCopyText(checkText(value));
    // A JSON number as written (on the fast path String(n) is the token: see exact-json.ts).
    if (isNumberLike(value)) return numberText(value);
    if (typeof value === 'boolean') return String(value);
    throw new InvalidValue(`${describe(value)} is not text`);
  },
  smallint: integerEncoder(-32768n, 32767n, 'smallint'),
  integer: integerEncoder(-2147483648n, 2147483647n, 'integer'),
  bigint: integerEncoder(-9223372036854775808n, 9223372036854775807n, 'bigint'),
  numeric: (value) => {
    if (typeof value === 'number' && Number.isFinite(value)) return String(value);
    if (typeof value === 'bigint') return value.toString();
    const text = value instanceof ExactNumber ? value.text : typeof value === 'string' && NUMERIC_TEXT.test(value) ? value : undefined;
    if (text === undefined) throw new InvalidValue(`${describe(value)} is not a number`);
    // Exact text goes through as written; only Postgres' numeric limits are checked here.
    const problem = numericProblem(text);
    if (problem) throw new InvalidValue(problem);
    return text;
  },
  real: floatEncoder(3.4028234663852886e38, 'real', true),
  'double precision': floatEncoder(Number.MAX_VALUE, 'double precision', false),
  boolean: (value) => {
    if (value === true || value === 'true') return 't';
    if (value === false || value === 'false') return 'f';
    throw new InvalidValue(`${describe(value)} is not a boolean`);
  },
  uuid: (value) => {
    if (typeof value === 'string' && UUID.test(value)) return value;
    throw new InvalidValue(`${describe(value)} is not a UUID`);
  },
  'timestamp with time zone': (value) => {
    const parsed = parseTimestamp(toPlainNumber(value)); // epoch ms: a double is exact enough
    if (typeof parsed === 'string') throw new InvalidValue(parsed);
    return parsed.text;
  },
  date: (value) => {
    const parsed = parseDate(toPlainNumber(value));
    if (typeof parsed !== 'string') throw new InvalidValue(parsed.error);
    return parsed;
  },
  jsonb: (value) => escapeCopyText(encodeJson(value)),
};
ENCODERS['character varying'] = ENCODERS.text as Encoder;

/** Canonical type names (Postgres' regtype text) sluice accepts for declared columns. */
export const SUPPORTED_COLUMN_TYPES: readonly string[] = Object.keys(ENCODERS);

/** Common spellings users type, mapped to canonical names. */
const TYPE_ALIASES: Record<string, string> = {
  varchar: 'character varying',
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
};

/** Canonical name of a user-typed column type, or undefined when sluice does not support it. */
export function canonicalColumnType(typed: string): string | undefined {
  const lowered = typed.trim().toLowerCase().replace(/\s+/g, ' ');
  const canonical = TYPE_ALIASES[lowered] ?? lowered;
  return canonical in ENCODERS ? canonical : undefined;
}

export function encoderFor(type: string): Encoder {
  const encoder = ENCODERS[type];
  if (!encoder) throw new Error(`sluice: no encoder for column type ${type}`);
  return encoder;
}
