/**
 * Pruning sluice's bookkeeping, so no table of its own grows without bound:
 * - every minute (the `sluice_drain` sweep): drain counters past a day, and the
 *   durable ack's ledgers (staging exits past an hour, flushes past a day);
 * - hourly (`sluice_rotate_partitions`): rejects past --rejects-retention-days.
 */
import type pg from 'pg';

const PRUNE_DRAIN_STATS = `DELETE FROM sluice.drain_stats WHERE bucket < now() - interval '1 day'`;
/** The durable ack's ledgers (see migrations/00004): a waiter older than this falls back to a staging check. */
const PRUNE_STAGING_EXITS = `DELETE FROM sluice.staging_exits WHERE at < now() - interval '1 hour'`;
const PRUNE_FLUSHES = `DELETE FROM sluice.flushes WHERE committed_at < now() - interval '1 day'`;

/** Rows per DELETE when pruning rejects: a huge backlog goes in many short transactions, not one giant one. */
export const PRUNE_REJECTS_CHUNK_ROWS = 5_000;
// Oldest first, through rejects_received_at_idx (migrations/00006).
const PRUNE_REJECTS_CHUNK = `
WITH doomed AS (
  SELECT id FROM sluice.rejects
   WHERE received_at < now() - make_interval(days => $1::int)
   ORDER BY received_at
   LIMIT $2::int)
DELETE FROM sluice.rejects r USING doomed WHERE r.id = doomed.id`;

/**
 * Delete rejects older than `retentionDays` (0: keep all), `chunkRows` per
 * statement (each its own transaction), until none is left or `signal`
 * aborts. Returns how many were deleted.
 */
export async function pruneRejects(
  db: pg.Pool | pg.ClientBase,
  retentionDays: number,
  { chunkRows = PRUNE_REJECTS_CHUNK_ROWS, signal }: { chunkRows?: number; signal?: AbortSignal } = {},
): Promise<number> {
  if (retentionDays <= 0) return 0;
  let deleted = 0;
  while (!signal?.aborted) {
    const { rowCount } = await db.query(PRUNE_REJECTS_CHUNK, [retentionDays, chunkRows]);
    deleted += rowCount ?? 0;
    if ((rowCount ?? 0) < chunkRows) break;
  }
  return deleted;
}

/** Drain counters and the durable ack's ledgers past their windows. */
export async function pruneStatsAndLedgers(db: pg.Pool | pg.ClientBase): Promise<void> {
  await db.query(PRUNE_DRAIN_STATS);
  await db.query(PRUNE_STAGING_EXITS);
  await db.query(PRUNE_FLUSHES);
}
