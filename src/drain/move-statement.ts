/**
 * The drain's move statement: DELETE rows from staging RETURNING them, record
 * their exits (the durable ack's ledger), INSERT them into the durable table,
 * count — one statement, so rows leave staging only in the transaction that
 * makes them durable.
 */
import { createHash } from 'node:crypto';
import type pg from 'pg';
import { durableTable, quoteIdent, stagingTable } from '../streams/names.js';
import type { StreamDefinition } from '../streams/registry.js';

/** The rows a drain statement takes: the next batch ($1 rows), or the listed ctids ($1 tid[]). */
type Selection = 'next_batch' | 'ctids';

const SELECTIONS: Record<Selection, (staging: string) => string> = {
  next_batch: (staging) => `s.ctid = ANY (ARRAY(SELECT ctid FROM ${staging} LIMIT $1 FOR UPDATE SKIP LOCKED))`,
  ctids: () => `s.ctid = ANY ($1::tid[])`,
};

/** A drainer's counters go in 10-second buckets. */
export const DRAIN_STATS_BUCKET = `date_bin('10 seconds', now(), timestamptz '2000-01-01')`;

/**
 * Add one batch's counters to its drainer's bucket in sluice.drain_stats; `rows` yields
 * (stream, bucket, drainer, batches, moved, inserted, max_lag_ms). Used by the move
 * statement and by the refused-row isolation (one update for the whole isolation).
 */
export function drainStatsUpsert(rows: string): string {
  return `
  INSERT INTO sluice.drain_stats AS d (stream, bucket, drainer, batches, moved, inserted, max_lag_ms)
  ${rows}
  ON CONFLICT (stream, bucket, drainer) DO UPDATE
     SET batches = d.batches + 1,
         moved = d.moved + excluded.moved,
         inserted = d.inserted + excluded.inserted,
         max_lag_ms = greatest(d.max_lag_ms, excluded.max_lag_ms)`;
}

/**
 * The statement that moves rows from staging to the durable table ($2 stream
 * name, $3 drainer name when `withStats`). The conflict target is the primary
 * key: only re-sent events collapse; a conflict on a unique index of the
 * user's raises 23505 and is isolated like any other refused row, instead of
 * silently dropping a different event as a "duplicate".
 */
function moveStatement(stream: StreamDefinition, selection: Selection, withStats: boolean): pg.QueryConfig {
  const columns = ['event_id', 'occurred_at', ...stream.columns.map((c) => c.name), 'payload', 'received_at'].map(quoteIdent).join(', ');
  const staging = stagingTable(stream.name);
  const stats = withStats
    ? `, stats AS (${drainStatsUpsert(`SELECT $2::text, ${DRAIN_STATS_BUCKET}, $3::text, 1, moved, inserted, max_lag_ms FROM counts WHERE moved > 0`)})`
    : '';
  const text = `
WITH moved AS (
  DELETE FROM ${staging} AS s
   WHERE ${SELECTIONS[selection](staging)}
  RETURNING ${columns}, s.xmin::text::bigint AS staged_xid
), exits AS (
  -- The durable ack's ledger: how many rows of each flush transaction left staging.
  INSERT INTO sluice.staging_exits (stream, xid, rows)
  SELECT $2::text, staged_xid, count(*) FROM moved GROUP BY staged_xid
), inserted AS (
  INSERT INTO ${durableTable(stream.name)} (${columns})
  SELECT ${columns} FROM moved
   ORDER BY occurred_at, event_id
  ON CONFLICT (occurred_at, event_id) DO NOTHING
  RETURNING 1
), counts AS (
  SELECT count(*)::int AS moved,
         (SELECT count(*)::int FROM inserted) AS inserted,
         coalesce(floor(extract(epoch FROM now() - min(received_at)) * 1000), 0)::bigint AS max_lag_ms
    FROM moved
)${stats}
SELECT moved, inserted, max_lag_ms::float8 AS max_lag_ms FROM counts`;
  // Named by content: a prepared statement per connection, re-planned only if the stream changes shape.
  const name = `sluice_drain_${createHash('sha1').update(text).digest('hex').slice(0, 16)}`;
  return { name, text };
}

/** The drain statement for a stream ($1 batch rows, $2 stream name, $3 drainer name). */
export function drainStatement(stream: StreamDefinition): pg.QueryConfig {
  return moveStatement(stream, 'next_batch', true);
}

/**
 * The same move for an explicit set of staged rows ($1 tid[], $2 stream name),
 * without the counters: the refused-row isolation runs it under savepoints and
 * counts once at the end.
 */
export function drainCtidsStatement(stream: StreamDefinition): pg.QueryConfig {
  return moveStatement(stream, 'ctids', false);
}
