/**
 * Give staging its space back when a drain finds it empty. Staging is a queue:
 * under sustained load its heap grows with dead tuples, and once vacuumed the
 * live rows scatter over all of it, so every drain batch reads through the
 * whole heap (the 10-million scale run: 536 MB for ~30,000 live rows, the
 * drain down from 82k to 22k events/s). VACUUM makes the space reusable but
 * cannot shrink a heap that is being written; TRUNCATE empties it at once.
 *
 * Only when nothing is in staging and nobody is using it: ACCESS EXCLUSIVE is
 * taken with NOWAIT (a producer's COPY or INSERT, another drain's locked rows,
 * a reader, autovacuum: any lock at all and the reset is skipped, never waited
 * for), then staging is looked at with a snapshot taken after the lock (READ
 * COMMITTED), when no one can write to it; only if that finds no row is it
 * truncated. At most once per RESET_EVERY_MS per stream and process, and only
 * above RESET_MIN_BYTES, so an idle stream is not locked every few seconds.
 */
import type pg from 'pg';
import { withTransaction } from '../db/transaction.js';
import { SQLSTATE, sqlState } from '../errors.js';
import { stagingTable } from '../streams/names.js';

/** Below this, the heap is cheap to read through and a reset buys nothing. */
export const RESET_MIN_BYTES = 8 * 1024 * 1024;
const RESET_EVERY_MS = 30_000;

const HEAP_BYTES = `SELECT pg_relation_size(to_regclass($1))::float8 AS bytes`;

const lastTry = new Map<string, number>();

export type ResetOutcome = 'truncated' | 'small' | 'recent' | 'busy' | 'not_empty';

export async function resetStagingIfEmpty(client: pg.ClientBase, stream: string, options: { minBytes?: number; now?: number } = {}): Promise<ResetOutcome> {
  const now = options.now ?? Date.now();
  if (now - (lastTry.get(stream) ?? -Infinity) < RESET_EVERY_MS) return 'recent';
  const staging = stagingTable(stream);
  const bytes = (await client.query<{ bytes: number | null }>(HEAP_BYTES, [staging])).rows[0]?.bytes ?? 0;
  if (bytes < (options.minBytes ?? RESET_MIN_BYTES)) return 'small';
  lastTry.set(stream, now);
  try {
    return await withTransaction(
      client,
      async (c) => {
        await c.query(`LOCK TABLE ${staging} IN ACCESS EXCLUSIVE MODE NOWAIT`);
        if ((await c.query(`SELECT 1 FROM ${staging} LIMIT 1`)).rowCount) return 'not_empty' as const;
        await c.query(`TRUNCATE ${staging}`);
        return 'truncated' as const;
      },
      { isolation: 'READ COMMITTED' },
    );
  } catch (err) {
    // Someone holds a lock on staging (55P03), or this role may not truncate it (42501): leave it.
    if (sqlState(err) === SQLSTATE.LOCK_NOT_AVAILABLE || sqlState(err) === SQLSTATE.INSUFFICIENT_PRIVILEGE) return 'busy';
    throw err;
  }
}

/**
 * Rows this process's drains have taken out of each stream's staging since its
 * last VACUUM there. Autovacuum cannot keep up with a queue drained at tens of
 * thousands of rows a second (it naps a minute between rounds, and its workers
 * spend them, cost-limited, on the growing durable partitions: in a 3-million
 * run it never reached staging, which held 3 M dead tuples in 320 MB), so the
 * drain vacuums what it empties: every VACUUM_EVERY_ROWS rows moved,
 * `VACUUM (SKIP_LOCKED)` (another VACUUM or autovacuum already at it: skipped).
 * The dead space is then reused and the heap stays near the size of
 * VACUUM_EVERY_ROWS rows, so drain batches do not read through a bloated heap.
 * UNLOGGED: the VACUUM writes no WAL; it takes SHARE UPDATE EXCLUSIVE, which
 * producers' COPY and other drains do not conflict with.
 */
export const VACUUM_EVERY_ROWS = 200_000;
const movedSinceVacuum = new Map<string, number>();

export async function vacuumStagingIfDue(client: pg.ClientBase, stream: string, moved: number): Promise<boolean> {
  const total = (movedSinceVacuum.get(stream) ?? 0) + moved;
  if (total < VACUUM_EVERY_ROWS) {
    movedSinceVacuum.set(stream, total);
    return false;
  }
  movedSinceVacuum.set(stream, 0);
  await client.query(`VACUUM (SKIP_LOCKED) ${stagingTable(stream)}`);
  return true;
}

/** For tests: forget when each stream was last tried, and what was moved since the last VACUUM. */
export function forgetResetTries(): void {
  lastTry.clear();
  movedSinceVacuum.clear();
}
