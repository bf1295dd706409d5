/**
 * Write one sealed batch to staging in one transaction: COPY the rows, insert
 * the batch's rejects, commit. If Postgres refuses the COPY because of the
 * data (a value that slipped past validation), the batch is bisected under
 * savepoints (each rolled back) until each refused row is isolated and
 * rejected with Postgres' own message; every other row still lands, all in
 * one transaction.
 */
import type pg from 'pg';
import copyStreams from 'pg-copy-streams';
import { isDataError } from '../errors.js';
import { decodeCopyLine } from '../codec/copy-text.js';
import { quoteIdent, stagingTable } from '../streams/names.js';
import type { CopyBuffer } from './copy-buffer.js';
import { insertRejects, type RejectRow, type RejectSource } from './rejects.js';

export interface CopyTarget {
  readonly stream: string;
  /** `COPY sluice_staging."s" (cols…) FROM STDIN`, identifiers quoted. */
  readonly copySql: string;
  readonly columns: readonly string[];
  readonly source: RejectSource;
}

/** `COPY sluice_staging."s" (cols…) FROM STDIN`, identifiers quoted (the encoder's copyColumns, in line order). */
export function stagingCopySql(stream: string, columns: readonly string[]): string {
  return `COPY ${stagingTable(stream)} (${columns.map(quoteIdent).join(', ')}) FROM STDIN`;
}

/** Where an Ingestor's batches go: its stream's staging table, in the encoder's column order. */
export function stagingCopyTarget(stream: string, columns: readonly string[], source: RejectSource): CopyTarget {
  return { stream, copySql: stagingCopySql(stream, columns), columns, source };
}

export interface BatchToWrite {
  /**
   * Chosen once per batch and kept across retries: a transactional flush records
   * it in sluice.flushes, so a retry after a lost COMMIT reply finds its first
   * attempt instead of writing its rejects again.
   */
  readonly flushId: string;
  readonly copy: CopyBuffer;
  /** Original input text per line when known (NDJSON), for rejects. */
  readonly raws: ReadonlyArray<string | undefined>;
  readonly rejects: readonly RejectRow[];
}

export interface WriteResult {
  readonly written: number;
  /** Indexes (lines of `copy`) of rows Postgres refused, with its reason. */
  readonly refused: ReadonlyArray<{ index: number; message: string }>;
  readonly rejected: number;
  /** Transaction id of the commit (for the durable ack), when asked for. */
  readonly xid: string | undefined;
}

const CURRENT_XID = 'SELECT pg_current_xact_id()::xid::text AS xid';
/** ON CONFLICT waits for a concurrent first attempt still in flight and returns no row if it committed. */
const RECORD_FLUSH = `
INSERT INTO sluice.flushes (id, stream, xid, rows, rejected, refused)
VALUES ($1, $2, $3::bigint, $4, $5, $6::jsonb)
ON CONFLICT (id) DO NOTHING
RETURNING 1`;
const FIND_FLUSH = `SELECT xid::text AS xid, rows, rejected, refused FROM sluice.flushes WHERE id = $1`;

interface FlushRow {
  xid: string | null;
  rows: number;
  rejected: number;
  refused: Array<{ index: number; message: string }>;
}

/** The result of an earlier attempt of this flush that committed, if one did. */
export async function findCommittedFlush(client: pg.ClientBase, flushId: string): Promise<WriteResult | undefined> {
  const { rows } = await client.query<FlushRow>(FIND_FLUSH, [flushId]);
  const row = rows[0];
  if (!row) return undefined;
  return { written: row.rows, refused: row.refused, rejected: row.rejected, xid: row.xid ?? undefined };
}

function copyIn(client: pg.ClientBase, sql: string, data: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    const stream = client.query(copyStreams.from(sql));
    stream.on('error', reject);
    stream.on('finish', () => resolve());
    stream.end(data);
  });
}

/**
 * Which lines of `copy[lo, hi)` Postgres refuses on data, appended to `refused`.
 * Bisection under savepoints, each rolled back whether its COPY went through or
 * not: nothing is written here, and no subtransaction stays in the caller's
 * transaction (a savepoint released after writing stays in its subxact cache
 * until the end; past 64 every other session's snapshots overflow to
 * pg_subtrans). The caller then copies the lines left, once, at its own level.
 * Staging has no indexes or constraints across rows, so a line is refused for
 * itself, never because of another line: what passes alone passes together.
 * (The drain's isolation, src/drain/isolate-refusals.ts, keeps what moves
 * instead: a user's unique index on the durable table can refuse a row because
 * of another one.)
 */
async function findRefusedLines(
  client: pg.ClientBase,
  sql: string,
  copy: CopyBuffer,
  lo: number,
  hi: number,
  refused: Array<{ index: number; message: string }>,
): Promise<void> {
  let dataError: Error | undefined;
  await client.query('SAVEPOINT sluice_copy');
  try {
    await copyIn(client, sql, copy.range(lo, hi));
  } catch (err) {
    if (!isDataError(err)) throw err;
    dataError = err as Error;
  }
  await client.query('ROLLBACK TO SAVEPOINT sluice_copy');
  await client.query('RELEASE SAVEPOINT sluice_copy');
  if (dataError === undefined) return;
  if (hi - lo === 1) {
    refused.push({ index: lo, message: dataError.message });
    return;
  }
  const mid = lo + Math.floor((hi - lo) / 2);
  await findRefusedLines(client, sql, copy, lo, mid, refused);
  await findRefusedLines(client, sql, copy, mid, hi, refused);
}

/** COPY every line but the refused ones (sorted by index), at the caller's level. */
async function copyAllBut(client: pg.ClientBase, sql: string, copy: CopyBuffer, refused: ReadonlyArray<{ index: number }>): Promise<void> {
  if (refused.length < copy.count) await copyIn(client, sql, refused.length ? copy.without(new Set(refused.map((r) => r.index))) : copy.range());
}

/**
 * COPY every line inside the caller's open transaction, isolating the lines
 * Postgres refuses on data instead of failing: returns the refused lines with
 * Postgres' message. For the rejects replay, whose transaction also marks the
 * rejects it moves: the first try runs under a savepoint so a refusal does not
 * abort that transaction.
 */
export async function copyIsolatingRefusals(client: pg.ClientBase, sql: string, copy: CopyBuffer): Promise<Array<{ index: number; message: string }>> {
  const refused: Array<{ index: number; message: string }> = [];
  if (copy.count === 0) return refused;
  await client.query('SAVEPOINT sluice_copy_all');
  try {
    await copyIn(client, sql, copy.range());
    await client.query('RELEASE SAVEPOINT sluice_copy_all');
    return refused;
  } catch (err) {
    if (!isDataError(err)) throw err;
    await client.query('ROLLBACK TO SAVEPOINT sluice_copy_all');
    await client.query('RELEASE SAVEPOINT sluice_copy_all');
  }
  await findRefusedLines(client, sql, copy, 0, copy.count, refused);
  await copyAllBut(client, sql, copy, refused);
  return refused;
}

function refusedRow(target: CopyTarget, batch: BatchToWrite, index: number, message: string): RejectRow {
  let raw = batch.raws[index];
  if (raw === undefined) {
    const fields = decodeCopyLine(batch.copy.line(index));
    raw = JSON.stringify(Object.fromEntries(target.columns.map((c, i) => [c, fields[i] ?? null])));
  }
  return { reason: 'copy_rejected', message: `Postgres refused the row: ${message}`, raw };
}

/** COPY every row of the batch; false when Postgres refused it on data (a transaction around it is then aborted). */
async function copyWholeBatch(client: pg.ClientBase, target: CopyTarget, batch: BatchToWrite): Promise<boolean> {
  try {
    await copyIn(client, target.copySql, batch.copy.range());
    return true;
  } catch (err) {
    if (!isDataError(err)) throw err;
    return false;
  }
}

/**
 * Write one batch in one transaction. It runs its own BEGIN/COMMIT, not
 * withTransaction: after a COPY refused on data the transaction is aborted and
 * a new one begins (no savepoint can stand in: rows written in one carry a
 * subtransaction id, not the xid the durable ack tracks), and when an earlier
 * attempt of the same flush committed meanwhile it rolls back and returns that
 * attempt's result.
 */
export async function writeBatch(client: pg.ClientBase, target: CopyTarget, batch: BatchToWrite, wantXid: boolean): Promise<WriteResult> {
  const rows = batch.copy.count;
  // Common case — nothing to reject, no xid wanted: one COPY in its own implicit
  // transaction, one round trip. When it fails on data, the batch is known bad.
  let wholeBatchCopied: boolean | undefined;
  if (rows > 0 && batch.rejects.length === 0 && !wantXid) {
    wholeBatchCopied = await copyWholeBatch(client, target, batch);
    if (wholeBatchCopied) return { written: rows, refused: [], rejected: 0, xid: undefined };
  }
  const refused: Array<{ index: number; message: string }> = [];
  await client.query('BEGIN');
  try {
    if (rows > 0) {
      if (wholeBatchCopied === false || !(await copyWholeBatch(client, target, batch))) {
        // The batch failed on data: find the refused rows (every savepoint rolled back)...
        await client.query('ROLLBACK');
        await client.query('BEGIN');
        await findRefusedLines(client, target.copySql, batch.copy, 0, rows, refused);
        // ...then write the others at the top level, so their xmin is the transaction
        // id the durable ack tracks (rows written in a savepoint carry a subtransaction id).
        await copyAllBut(client, target.copySql, batch.copy, refused);
      }
    }
    const rejects = refused.length
      ? [...batch.rejects, ...refused.map((r) => refusedRow(target, batch, r.index, r.message))]
      : batch.rejects;
    await insertRejects(client, target.stream, target.source, rejects);
    const xid = wantXid && rows > refused.length ? (await client.query<{ xid: string }>(CURRENT_XID)).rows[0]?.xid : undefined;
    const result: WriteResult = { written: rows - refused.length, refused, rejected: rejects.length, xid };
    const recorded = await client.query(RECORD_FLUSH, [batch.flushId, target.stream, xid ?? null, result.written, result.rejected, JSON.stringify(refused)]);
    if (recorded.rowCount === 0) {
      // An earlier attempt of this very flush committed meanwhile: keep its rows and rejects, not ours.
      await client.query('ROLLBACK');
      const earlier = await findCommittedFlush(client, batch.flushId);
      if (!earlier) throw new Error(`sluice: flush ${batch.flushId} is recorded but could not be read back`);
      return earlier;
    }
    await client.query('COMMIT');
    return result;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}
