/**
 * One drain micro-batch = one statement = one transaction:
 *
 *   DELETE FROM staging WHERE ctid = ANY(ARRAY(SELECT ctid … LIMIT $n FOR UPDATE SKIP LOCKED))
 *   RETURNING …  →  INSERT INTO durable … ON CONFLICT (occurred_at, event_id) DO NOTHING
 *
 * plus the rows' exits (the durable ack's ledger) and this drainer's counters
 * (10-second buckets). Rows leave staging only in the transaction that makes
 * them durable (or rejects them), so a crash at any instant either keeps a row
 * in staging or has it durable; ON CONFLICT on the primary key makes re-drains
 * and producer retries collapse to one row. Concurrent drainers
 * skip each other's locked rows instead of waiting, and insert in primary-key
 * order: two batches holding the same re-sent keys then wait on each other in
 * one direction only, never in a cycle (unsorted, they deadlock).
 */
import { DDL_LOCK_TIMEOUT, withTransaction } from '../db/transaction.js';
import type pg from 'pg';
import { isMissingPartition, isRowRefusal } from '../errors.js';
import type { StreamDefinition } from '../streams/registry.js';
import { isolateRefusals } from './isolate-refusals.js';
import { drainStatement } from './move-statement.js';

export { drainStatement } from './move-statement.js';

export interface DrainBatchResult {
  /** Rows moved from staging to the durable table (refused and rejected rows not included). */
  readonly moved: number;
  /** Rows that were new in the durable table (moved − inserted = duplicates collapsed). */
  readonly inserted: number;
  /** Age of the oldest row in the batch when it became durable. */
  readonly maxLagMs: number;
  /** Partitions created and rows rejected by the missing-partition slow path, if it ran. */
  readonly partitionsCreated: number;
  readonly rejected: number;
  /** Rows the durable table refused, moved to sluice.rejects (reason drain_refused). */
  readonly refused: number;
}

const REPAIR_MISSING_PARTITIONS = `SELECT created, rejected::int AS rejected FROM sluice.repair_missing_partitions($1::text)`;

/**
 * Move one micro-batch. When a row's month has no partition, the slow path
 * creates it (inside the stream's window) or rejects the rows (outside it),
 * in its own transaction, and the batch is tried again. When the durable
 * table refuses rows of the batch (see isRowRefusal), they are isolated and
 * rejected (`drain_refused`) and their neighbours moved, in one transaction.
 * The fast path — one statement — is unchanged when nothing fails.
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
  let isolate = false;
  for (let repairs = 0; ; ) {
    try {
      if (isolate) {
        const isolated = await isolateRefusals(client, stream, batchRows, drainer);
        return { ...isolated, partitionsCreated, rejected };
      }
      const { rows } = await client.query<{ moved: number; inserted: number; max_lag_ms: number }>({
        ...statement,
        values: [batchRows, stream.name, drainer],
      });
      const row = rows[0] ?? { moved: 0, inserted: 0, max_lag_ms: 0 };
      return { moved: row.moved, inserted: row.inserted, maxLagMs: row.max_lag_ms, partitionsCreated, rejected, refused: 0 };
    } catch (err) {
      if (isMissingPartition(err)) {
        if (++repairs > 3) throw err;
        const repaired = await repairMissingPartitions(client, stream.name);
        partitionsCreated += repaired.created;
        rejected += repaired.rejected;
      } else if (isRowRefusal(err) && !isolate) {
        isolate = true;
      } else {
        throw err;
      }
    }
  }
}

async function repairMissingPartitions(client: pg.ClientBase, stream: string): Promise<{ created: number; rejected: number }> {
  // READ COMMITTED whatever the database's default: the repair re-checks the catalog after
  // waiting for its advisory lock, and must see what the lock's previous holder committed.
  const { rows } = await withTransaction(client, (c) => c.query<{ created: number; rejected: number }>(REPAIR_MISSING_PARTITIONS, [stream]), {
    isolation: 'READ COMMITTED',
    lockTimeout: DDL_LOCK_TIMEOUT,
  });
  return rows[0] ?? { created: 0, rejected: 0 };
}
