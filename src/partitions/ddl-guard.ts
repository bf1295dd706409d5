/**
 * DDL that must never queue every writer behind a long query: run under a
 * session lock_timeout (DETACH … CONCURRENTLY cannot run in a transaction
 * block, so SET LOCAL is not available), and while it waits, ask another
 * connection who blocks it (pg_blocking_pids), so a failed step names its
 * blockers instead of just timing out.
 */
import type pg from 'pg';
import { SQLSTATE, sqlState } from '../errors.js';

export interface Blocker {
  readonly step: string;
  readonly pid: number;
  readonly application_name: string;
  readonly state: string | null;
  readonly query_start: string | null;
  readonly query: string | null;
}

const BACKEND_PID = `SELECT pg_backend_pid() AS pid`;
const SET_LOCK_TIMEOUT = `SELECT set_config('lock_timeout', $1::text, false)`;
const RESET_LOCK_TIMEOUT = `RESET lock_timeout`;
const BLOCKERS = `
SELECT a.pid, coalesce(a.application_name, '') AS application_name, a.state,
       to_char(a.query_start AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS query_start,
       left(a.query, 200) AS query
  FROM pg_stat_activity a
 WHERE a.pid = ANY (pg_blocking_pids($1::int))
 ORDER BY a.pid`;

export class LockBlocked extends Error {
  override name = 'LockBlocked';
  constructor(
    readonly step: string,
    readonly blockers: readonly Blocker[],
    options: { cause: unknown },
  ) {
    super(`${step}: lock not available within lock_timeout${blockers.length ? ` (blocked by pid ${blockers.map((b) => b.pid).join(', ')})` : ''}`, options);
  }
}

/**
 * Run `fn` on `client` with lock_timeout = `lockTimeoutMs` for the session
 * (reset after). `observer` (another connection or a pool) polls the blockers
 * while `fn` runs. A lock timeout becomes LockBlocked carrying them.
 */
/** How long one blocker poll may wait for the observer before it is dropped. */
const OBSERVER_WAIT_MS = 1_000;

/** `promise`'s value, or undefined once `ms` passed (the promise itself is left to settle on its own). */
function withinMs<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  promise.catch(() => undefined);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => resolve(undefined), ms);
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (err: unknown) => {
        clearTimeout(timer);
        reject(err);
      },
    );
  });
}

export async function withLockGuard<T>(
  client: pg.ClientBase,
  observer: pg.Pool | pg.ClientBase,
  step: string,
  lockTimeoutMs: number,
  fn: () => Promise<T>,
): Promise<T> {
  const pid = (await client.query<{ pid: number }>(BACKEND_PID)).rows[0]?.pid ?? 0;
  const seen = new Map<number, Blocker>();
  let polling: Promise<void> = Promise.resolve();
  // Best effort: the observer may be a pool with nothing free (the rotation's own connection came from
  // it); a poll that cannot get a connection in time is dropped, never waited for.
  const poll = () => {
    polling = polling
      .then(() => withinMs(observer.query<Omit<Blocker, 'step'>>(BLOCKERS, [pid]), OBSERVER_WAIT_MS))
      .then((result) => {
        for (const row of result?.rows ?? []) seen.set(row.pid, { step, ...row });
      })
      .catch(() => undefined);
  };
  const timer = setInterval(poll, Math.max(20, Math.floor(lockTimeoutMs / 3)));
  await client.query(SET_LOCK_TIMEOUT, [`${Math.max(1, Math.round(lockTimeoutMs))}ms`]);
  try {
    return await fn();
  } catch (err) {
    if (sqlState(err) === SQLSTATE.LOCK_NOT_AVAILABLE) {
      clearInterval(timer);
      await polling;
      throw new LockBlocked(step, [...seen.values()], { cause: err });
    }
    throw err;
  } finally {
    clearInterval(timer);
    await polling;
    await client.query(RESET_LOCK_TIMEOUT).catch(() => undefined);
  }
}
