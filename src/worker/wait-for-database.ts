/**
 * A worker started while Postgres is down or still starting (systemd starts
 * both at boot; a crash recovery takes seconds) waits for it with jittered
 * backoff, logging each attempt, for a bounded time — instead of exiting at
 * once and burning the unit's restart budget. Errors other than "cannot reach
 * / not accepting connections yet" (bad password, unknown database) fail at once.
 */
import type pg from 'pg';
import type { Logger } from '../logger.js';
import { coerceError, isTransientError } from '../errors.js';
import { backoffMs, sleep } from '../timing.js';

/** How long a starting worker waits for Postgres before giving up. */
export const DATABASE_WAIT_MS = 60_000;

export async function waitForDatabase(pool: pg.Pool, log: Logger, maxWaitMs = DATABASE_WAIT_MS): Promise<void> {
  const started = Date.now();
  for (let attempt = 0; ; attempt++) {
    try {
      await pool.query('SELECT 1');
      if (attempt > 0) log.info({ waited_ms: Date.now() - started, attempts: attempt + 1 }, 'worker: Postgres is reachable');
      return;
    } catch (err) {
      const waited = Date.now() - started;
      if (!isTransientError(err) || waited >= maxWaitMs) throw err;
      const delay = Math.min(backoffMs(attempt, 250, 5_000) + 100, maxWaitMs - waited);
      log.warn({ err: coerceError(err).message, attempt: attempt + 1, waited_ms: waited, max_wait_ms: maxWaitMs }, 'worker: Postgres not reachable yet; retrying');
      await sleep(delay);
    }
  }
}
