/**
 * Error vocabulary: SQLSTATE names we act on, one error class for problems the
 * user must fix (with the next step in the message), and helpers to classify
 * what is worth retrying.
 */

export const SQLSTATE = {
  UNIQUE_VIOLATION: '23505',
  CHECK_VIOLATION: '23514', // also "no partition of relation found for row": see isMissingPartition
  NOT_NULL_VIOLATION: '23502',
  UNDEFINED_TABLE: '42P01',
  INSUFFICIENT_PRIVILEGE: '42501',
  INVALID_NAME: '42602',
  INVALID_ROLE_SPECIFICATION: '0P000',
  INVALID_SCHEMA_NAME: '3F000',
  LOCK_NOT_AVAILABLE: '55P03',
  QUERY_CANCELED: '57014',
  ADMIN_SHUTDOWN: '57P01',
  CRASH_SHUTDOWN: '57P02',
  CANNOT_CONNECT_NOW: '57P03',
  SERIALIZATION_FAILURE: '40001',
  DEADLOCK_DETECTED: '40P01',
  TOO_MANY_CONNECTIONS: '53300',
  PROGRAM_LIMIT_EXCEEDED: '54000',
  RAISE_EXCEPTION: 'P0001',
  ASSERT_FAILURE: 'P0004',
} as const;

/** Every `SluiceError['code']`: the machine-readable half of a problem the user can fix. */
export const SLUICE_ERROR_CODES = [
  // input, streams and columns
  'bad_input',
  'invalid_argument',
  'invalid_payload',
  'invalid_stream_name',
  'invalid_column_name',
  'invalid_column',
  'invalid_index',
  'invalid_stream_option',
  'unknown_stream',
  'stream_exists',
  'confirmation_required',
  // acknowledgements
  'not_durable',
  'durable_wait_aborted',
  // connection budget
  'over_budget',
  'cluster_over_budget',
  // embedded Postgres
  'embedded_unavailable',
  'embedded_not_a_cluster',
  'embedded_locked',
  'embedded_password_missing',
  'embedded_pidfile_unverified',
  'embedded_root_dir',
  'embedded_server_unresponsive',
  'embedded_start_failed',
  'embedded_unreachable',
  // partitions and materialized views
  'invalid_now',
  'invalid_matview_name',
  'invalid_unique_columns',
  'invalid_interval',
  'missing_sql',
  'no_unique_index',
  'unknown_matview',
  'matview_exists',
  'refresh_failed',
  // roles
  'invalid_role_prefix',
  'role_conflict',
  'roles_not_permitted',
  // optional packages
  'missing_optional_package',
] as const;
export type SluiceErrorCode = (typeof SLUICE_ERROR_CODES)[number];

/** A problem the user can fix; `code` is machine-readable, the message says what to do. */
export class SluiceError extends Error {
  override name = 'SluiceError';
  constructor(
    readonly code: SluiceErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/**
 * A job no retry can fix (unknown stream, malformed payload). The task that
 * throws it has already retired its job (attempts = max_attempts, see
 * src/worker/permanent-failure.ts); the graphile-worker logger adapter turns
 * graphile-worker's "Failed task … attempt 1 of 25" error line for it into one
 * warning that says the job will not be retried. `message` is the reason;
 * `cause` the error behind it (a SluiceError with its code, usually).
 */
export class PermanentJobError extends Error {
  override name = 'PermanentJobError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }

  /** The SluiceError code behind it, if any (e.g. unknown_stream). */
  get code(): SluiceErrorCode | undefined {
    return this.cause instanceof SluiceError ? this.cause.code : undefined;
  }
}

/** Anything thrown, as an Error (graphile-worker's coerceError idea). */
export function coerceError(thrown: unknown): Error & { code?: string } {
  if (thrown instanceof Error) return thrown as Error & { code?: string };
  return new Error(typeof thrown === 'string' ? thrown : JSON.stringify(thrown));
}

export function sqlState(thrown: unknown): string | undefined {
  const code = (thrown as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
}

/**
 * Errors caused by the rows themselves (data exceptions, constraint and
 * program-limit violations): retrying the same rows cannot succeed, so the
 * batch is bisected to isolate them instead.
 */
export function isDataError(thrown: unknown): boolean {
  const code = sqlState(thrown);
  if (!code) return false;
  return code.startsWith('22') || code === SQLSTATE.NOT_NULL_VIOLATION || code === SQLSTATE.CHECK_VIOLATION || code === SQLSTATE.PROGRAM_LIMIT_EXCEEDED;
}

/**
 * Errors the durable table raises because of the rows being inserted, so the
 * drain isolates and rejects those rows instead of retrying them:
 * - class 22 (data exception: a cast, an overflow, a too-long value for a
 *   column the user narrowed, in a CHECK, a generated column or a trigger);
 * - class 23 (integrity constraints: not-null, foreign key, unique — the
 *   drain's ON CONFLICT names the primary key, so a conflict here is on an
 *   index of the user's —, check, exclusion, restrict);
 * - 54000 program_limit_exceeded (an index row over the btree maximum);
 * - P0001 / P0004: a trigger's own verdict (RAISE EXCEPTION, ASSERT).
 * Not here, on purpose: other PL/pgSQL errors (P0002 no_data_found, P0003
 * too_many_rows) and class 42, 0A, 38, 39, XX, 58: they say a trigger or the
 * table is broken, not the row, and would send every row to the rejects;
 * the drain backs off on them instead.
 */
export function isRowRefusal(thrown: unknown): boolean {
  const code = sqlState(thrown);
  if (!code) return false;
  return (
    code.startsWith('22') ||
    code.startsWith('23') ||
    code === SQLSTATE.PROGRAM_LIMIT_EXCEEDED ||
    code === SQLSTATE.RAISE_EXCEPTION ||
    code === SQLSTATE.ASSERT_FAILURE
  );
}

/**
 * "no partition of relation … found for row" (23514): the drain creates the
 * partition or rejects the rows. Told from other 23514s by the error's fields,
 * never its text (lc_messages may be localized): tuple routing names the table
 * and no constraint; a CHECK or domain violation names its constraint, and a
 * RAISE … USING ERRCODE names neither (checked on PostgreSQL 15).
 */
export function isMissingPartition(thrown: unknown): boolean {
  if (sqlState(thrown) !== SQLSTATE.CHECK_VIOLATION) return false;
  const fields = thrown as { constraint?: unknown; table?: unknown };
  return fields.constraint === undefined && typeof fields.table === 'string';
}

/** Errors worth retrying on a fresh connection: lost connections, shutdowns, lock conflicts. */
export function isTransientError(thrown: unknown): boolean {
  const code = sqlState(thrown);
  if (code) {
    return (
      code.startsWith('08') ||
      code === SQLSTATE.ADMIN_SHUTDOWN ||
      code === SQLSTATE.CRASH_SHUTDOWN ||
      code === SQLSTATE.CANNOT_CONNECT_NOW ||
      code === SQLSTATE.SERIALIZATION_FAILURE ||
      code === SQLSTATE.DEADLOCK_DETECTED ||
      code === SQLSTATE.LOCK_NOT_AVAILABLE ||
      code === SQLSTATE.TOO_MANY_CONNECTIONS
    );
  }
  const message = coerceError(thrown).message;
  return /ECONNREFUSED|ECONNRESET|EPIPE|ETIMEDOUT|Connection terminated|connection.*(closed|ended)|Client was closed|not queryable/i.test(
    message,
  );
}
