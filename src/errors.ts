/**
 * Error vocabulary: SQLSTATE names we act on, one error class for problems the
 * user must fix (with the next step in the message), and helpers to classify
 * what is worth retrying.
 */

export const SQLSTATE = {
  UNIQUE_VIOLATION: '23505',
  CHECK_VIOLATION: '23514', // also "no partition of relation found for row"
  NOT_NULL_VIOLATION: '23502',
  UNDEFINED_TABLE: '42P01',
  UNDEFINED_FUNCTION: '42883',
  LOCK_NOT_AVAILABLE: '55P03',
  QUERY_CANCELED: '57014',
  ADMIN_SHUTDOWN: '57P01',
  CRASH_SHUTDOWN: '57P02',
  CANNOT_CONNECT_NOW: '57P03',
  SERIALIZATION_FAILURE: '40001',
  DEADLOCK_DETECTED: '40P01',
  TOO_MANY_CONNECTIONS: '53300',
  PROGRAM_LIMIT_EXCEEDED: '54000',
} as const;

/** A problem the user can fix; `code` is machine-readable, the message says what to do. */
export class SluiceError extends Error {
  override name = 'SluiceError';
  constructor(
    readonly code: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
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

/** Full-jitter exponential backoff: a delay in [0, min(cap, base * 2^attempt)). */
export function backoffMs(attempt: number, baseMs = 100, capMs = 5_000): number {
  return Math.floor(Math.random() * Math.min(capMs, baseMs * 2 ** attempt));
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}
