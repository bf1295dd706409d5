/**
 * One way to run a transaction: BEGIN (with an explicit isolation level when a
 * check depends on it — never the database's default by accident), optional
 * SET LOCAL lock_timeout for DDL, COMMIT (ROLLBACK for a rehearsal), or
 * ROLLBACK on any error.
 */
import type pg from 'pg';

export type IsolationLevel = 'READ COMMITTED' | 'REPEATABLE READ' | 'SERIALIZABLE';

export interface TransactionOptions {
  /** Say it whenever correctness depends on it (e.g. a check after waiting for a lock needs READ COMMITTED). */
  readonly isolation?: IsolationLevel;
  /** e.g. '5s': DDL waits this long for its lock, then fails with 55P03 instead of queueing every writer behind it. */
  readonly lockTimeout?: string;
  /** A rehearsal (--dry-run): run everything, then roll back instead of committing. */
  readonly rollback?: boolean;
}

/** DDL waits at most this long for a lock (partition creation and rotation, a matview refresh), then is retried later. */
export const DDL_LOCK_TIMEOUT = '5s';

const LOCK_TIMEOUT_PATTERN = /^\d+(ms|s|min)?$/;

export async function withTransaction<T>(client: pg.ClientBase, fn: (client: pg.ClientBase) => Promise<T>, options: TransactionOptions = {}): Promise<T> {
  await client.query(options.isolation ? `BEGIN ISOLATION LEVEL ${options.isolation}` : 'BEGIN');
  try {
    if (options.lockTimeout !== undefined) {
      if (!LOCK_TIMEOUT_PATTERN.test(options.lockTimeout)) throw new Error(`invalid lock_timeout ${JSON.stringify(options.lockTimeout)}`);
      await client.query(`SET LOCAL lock_timeout = '${options.lockTimeout}'`);
    }
    const result = await fn(client);
    await client.query(options.rollback ? 'ROLLBACK' : 'COMMIT');
    return result;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}
