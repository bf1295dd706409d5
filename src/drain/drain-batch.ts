/**
 * One drain micro-batch = one statement = one transaction:
 *
 *   DELETE FROM staging WHERE ctid = ANY(ARRAY(SELECT ctid … LIMIT $n FOR UPDATE SKIP LOCKED))
 *   RETURNING …  →  INSERT INTO durable … ON CONFLICT DO NOTHING
 *
 * plus this drainer's counters (10-second buckets). Rows leave staging only in the
 * transaction that makes them durable, so a crash at any instant either
 * keeps a row in staging or has it durable; ON CONFLICT DO NOTHING makes
 * re-drains and producer retries collapse to one row. Concurrent drainers
 * skip each other's locked rows instead of waiting, and insert in primary-key
 * order: two batches holding the same re-sent keys then wait on each other in
 * one direction only, never in a cycle (unsorted, they deadlock).
 */
import { createHash } from 'node:crypto';
import type pg from 'pg';
import { SQLSTATE, sqlState } from '../errors.js';
import { durableTable, quoteIdent, stagingTable } from '../streams/names.js';
import type { StreamDefinition } from '../streams/registry.js';

export interface DrainBatchResult {
  /** Rows taken out of staging. */
  readonly moved: number;
  /** Rows that were new in the durable table (moved − inserted = duplicates collapsed). */
  readonly inserted: number;
  /** Age of the oldest row in the batch when it became durable. */
  readonly maxLagMs: number;
  /** Partitions created and rows rejected by the missing-partition slow path, if it ran. */
  readonly partitionsCreated: number;
  readonly rejected: number;
}

/** The drain statement for a stream ($1 batch rows, $2 stream name, $3 drainer name). */
export function drainStatement(stream: StreamDefinition): pg.QueryConfig {
  const columns = ['event_id', 'occurred_at', ...stream.columns.map((c) => c.name), 'payload', 'received_at'].map(quoteIdent).join(', ');
  const staging = stagingTable(stream.name);
  const text = `
WITH moved AS (
  DELETE FROM ${staging} AS s
   WHERE s.ctid = ANY (ARRAY(SELECT ctid FROM ${staging} LIMIT $1 FOR UPDATE SKIP LOCKED))
  RETURNING ${columns}
), inserted AS (
  INSERT INTO ${durableTable(stream.name)} (${columns})
  SELECT ${columns} FROM moved
   ORDER BY occurred_at, event_id
  ON CONFLICT DO NOTHING
  RETURNING 1
), counts AS (
  SELECT count(*)::int AS moved,
         (SELECT count(*)::int FROM inserted) AS inserted,
         coalesce(floor(extract(epoch FROM now() - min(received_at)) * 1000), 0)::bigint AS max_lag_ms
    FROM moved
), stats AS (
  INSERT INTO sluice.drain_stats AS d (stream, bucket, drainer, batches, moved, inserted, max_lag_ms)
  SELECT $2::text, date_bin('10 seconds', now(), timestamptz '2000-01-01'), $3::text, 1, moved, inserted, max_lag_ms
    FROM counts WHERE moved > 0
  ON CONFLICT (stream, bucket, drainer) DO UPDATE
     SET batches = d.batches + 1,
         moved = d.moved + excluded.moved,
         inserted = d.inserted + excluded.inserted,
         max_lag_ms = greatest(d.max_lag_ms, excluded.max_lag_ms)
)
SELECT moved, inserted, max_lag_ms::float8 AS max_lag_ms FROM counts`;
  // Named by content: a prepared statement per connection, re-planned only if the stream changes shape.
  const name = `sluice_drain_${createHash('sha1').update(text).digest('hex').slice(0, 16)}`;
  return { name, text };
}

const REPAIR_MISSING_PARTITIONS = `SELECT created, rejected::int AS rejected FROM sluice.repair_missing_partitions($1::text)`;
/** Partition DDL waits at most this long for its lock, then the batch is retried later. */
const PARTITION_LOCK_TIMEOUT = '5s';

function isMissingPartition(err: unknown): boolean {
  return sqlState(err) === SQLSTATE.CHECK_VIOLATION && /no partition of relation/i.test((err as Error).message);
}

/**
 * Move one micro-batch. When a row's month has no partition, the slow path
 * creates it (inside the stream's window) or rejects the rows (outside it),
 * in its own transaction, and the batch is tried again.
 */
export async function drainBatch(
  client: pg.ClientBase,
  stream: StreamDefinition,
  batchRows: number,
  drainer: string,
): Promise<DrainBatchResult> {
  const statement = drainStatement(stream);
  let partitionsCreated = 0;
  let rejected = 0;
  for (let attempt = 0; ; attempt++) {
    try {
      const { rows } = await client.query<{ moved: number; inserted: number; max_lag_ms: number }>({
        ...statement,
        values: [batchRows, stream.name, drainer],
      });
      const row = rows[0] ?? { moved: 0, inserted: 0, max_lag_ms: 0 };
      return { moved: row.moved, inserted: row.inserted, maxLagMs: row.max_lag_ms, partitionsCreated, rejected };
    } catch (err) {
      if (!isMissingPartition(err) || attempt >= 3) throw err;
      const repaired = await repairMissingPartitions(client, stream.name);
      partitionsCreated += repaired.created;
      rejected += repaired.rejected;
    }
  }
}

async function repairMissingPartitions(client: pg.ClientBase, stream: string): Promise<{ created: number; rejected: number }> {
  await client.query('BEGIN');
  try {
    await client.query(`SET LOCAL lock_timeout = '${PARTITION_LOCK_TIMEOUT}'`);
    const { rows } = await client.query<{ created: number; rejected: number }>(REPAIR_MISSING_PARTITIONS, [stream]);
    await client.query('COMMIT');
    return rows[0] ?? { created: 0, rejected: 0 };
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}
