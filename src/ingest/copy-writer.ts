/**
 * Write one sealed batch to staging in one transaction: COPY the rows, insert
 * the batch's rejects, commit. If Postgres refuses the COPY because of the
 * data (a value that slipped past validation), the batch is bisected under
 * savepoints until each refused row is isolated and rejected with Postgres'
 * own message; every other row still lands, all in the same transaction.
 */
import type pg from 'pg';
import copyStreams from 'pg-copy-streams';
import { isDataError } from '../errors.js';
import { decodeCopyLine } from './copy-text.js';
import type { CopyBuffer } from './copy-buffer.js';
import { insertRejects, type RejectRow, type RejectSource } from './rejects.js';

export interface CopyTarget {
  readonly stream: string;
  /** `COPY sluice_staging."s" (cols…) FROM STDIN`, identifiers quoted. */
  readonly copySql: string;
  readonly columns: readonly string[];
  readonly source: RejectSource;
}

export interface BatchToWrite {
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

function copyIn(client: pg.ClientBase, sql: string, data: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    const stream = client.query(copyStreams.from(sql));
    stream.on('error', reject);
    stream.on('finish', () => resolve());
    stream.end(data);
  });
}

async function bisect(
  client: pg.ClientBase,
  sql: string,
  copy: CopyBuffer,
  lo: number,
  hi: number,
  refused: Array<{ index: number; message: string }>,
): Promise<void> {
  await client.query('SAVEPOINT sluice_copy');
  try {
    await copyIn(client, sql, copy.range(lo, hi));
    await client.query('RELEASE SAVEPOINT sluice_copy');
    return;
  } catch (err) {
    if (!isDataError(err)) throw err;
    await client.query('ROLLBACK TO SAVEPOINT sluice_copy');
    await client.query('RELEASE SAVEPOINT sluice_copy');
    if (hi - lo === 1) {
      refused.push({ index: lo, message: (err as Error).message });
      return;
    }
  }
  const mid = lo + Math.floor((hi - lo) / 2);
  await bisect(client, sql, copy, lo, mid, refused);
  await bisect(client, sql, copy, mid, hi, refused);
}

function refusedRow(target: CopyTarget, batch: BatchToWrite, index: number, message: string): RejectRow {
  let raw = batch.raws[index];
  if (raw === undefined) {
    const fields = decodeCopyLine(batch.copy.line(index));
    raw = JSON.stringify(Object.fromEntries(target.columns.map((c, i) => [c, fields[i] ?? null])));
  }
  return { reason: 'copy_rejected', message: `Postgres refused the row: ${message}`, raw };
}

export async function writeBatch(client: pg.ClientBase, target: CopyTarget, batch: BatchToWrite, wantXid: boolean): Promise<WriteResult> {
  const rows = batch.copy.count;
  let knownBad = false;
  // Common case — nothing to reject, no xid wanted: one COPY in its own implicit
  // transaction, one round trip.
  if (rows > 0 && batch.rejects.length === 0 && !wantXid) {
    try {
      await copyIn(client, target.copySql, batch.copy.range());
      return { written: rows, refused: [], rejected: 0, xid: undefined };
    } catch (err) {
      if (!isDataError(err)) throw err;
      knownBad = true;
    }
  }
  const refused: Array<{ index: number; message: string }> = [];
  await client.query('BEGIN');
  try {
    if (rows > 0) {
      try {
        if (knownBad) throw Object.assign(new Error('known bad batch'), { code: '22000' });
        await copyIn(client, target.copySql, batch.copy.range());
      } catch (err) {
        if (!isDataError(err)) throw err;
        // The batch failed on data: bisect under savepoints to find the refused rows...
        await client.query('ROLLBACK');
        await client.query('BEGIN');
        await bisect(client, target.copySql, batch.copy, 0, rows, refused);
        // ...then write the good rows again at the top level, so their xmin is the
        // transaction id the durable ack tracks (rows written in a savepoint carry a
        // subtransaction id instead).
        await client.query('ROLLBACK');
        await client.query('BEGIN');
        if (refused.length < rows) await copyIn(client, target.copySql, batch.copy.without(new Set(refused.map((r) => r.index))));
      }
    }
    const rejects = refused.length
      ? [...batch.rejects, ...refused.map((r) => refusedRow(target, batch, r.index, r.message))]
      : batch.rejects;
    await insertRejects(client, target.stream, target.source, rejects);
    const xid = wantXid && rows > refused.length ? (await client.query<{ xid: string }>(CURRENT_XID)).rows[0]?.xid : undefined;
    await client.query('COMMIT');
    return { written: rows - refused.length, refused, rejected: rejects.length, xid };
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}
