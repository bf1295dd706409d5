/**
 * One key casing for everything sluice writes as JSON (CLI `--json`, log
 * fields): snake_case. The TypeScript API keeps camelCase (the language's
 * convention); the conversion happens where JSON leaves the process, so no
 * report can forget it.
 */

/** `oldestStagedAgeS` → `oldest_staged_age_s`; keys without capitals (stream names, GUCs, reason codes) are unchanged. */
export function snakeCase(key: string): string {
  return /[A-Z]/.test(key) ? key.replace(/([a-z0-9])([A-Z])/g, '$1_$2').replace(/([A-Z])([A-Z][a-z])/g, '$1_$2').toLowerCase() : key;
}

/** Any object JSON.stringify would write as an object (class instances too: their own enumerable keys). */
function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/**
 * A JSON.stringify replacer renaming the keys of every object to snake_case.
 * JSON.stringify has already applied toJSON (Dates are strings here) and recurses
 * into what the replacer returns, so nested objects and arrays are covered.
 */
export function snakeCaseReplacer(_key: string, value: unknown): unknown {
  if (!isObject(value)) return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) out[snakeCase(k)] = v;
  return out;
}

/** JSON text with snake_case keys (bigints as exact numbers would need the codec; reports hold none). */
export function toSnakeJson(value: unknown, indent?: number): string {
  return JSON.stringify(value, snakeCaseReplacer, indent);
}

/** The type of a snake_cased string literal. */
export type SnakeCase<S extends string> = S extends `${infer H}${infer T}`
  ? `${H extends Lowercase<H> ? H : `_${Lowercase<H>}`}${SnakeCase<T>}`
  : S;

/** What `toSnakeJson(value)` parses back to: keys snake_cased, Dates as strings (for tests and typed consumers). */
export type JsonOf<T> = T extends Date
  ? string
  : T extends ReadonlyArray<infer U>
    ? Array<JsonOf<U>>
    : T extends object
      ? { [K in keyof T as K extends string ? SnakeCase<K> : K]: JsonOf<T[K]> }
      : T;
