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
import { insertRejects, type RejectRow, type RejectSource } from './rejects.js';

export interface CopyTarget {
  readonly stream: string;
  /** `COPY sluice_staging."s" (cols…) FROM STDIN`, identifiers quoted. */
  readonly copySql: string;
  readonly columns: readonly string[];
  readonly source: RejectSource;
}

export interface BatchToWrite {
  readonly lines: readonly string[];
  /** Original input text per line when known (NDJSON), for rejects. */
  readonly raws: ReadonlyArray<string | undefined>;
  readonly rejects: readonly RejectRow[];
}

export interface WriteResult {
  readonly written: number;
  /** Indexes (into `lines`) of rows Postgres refused, with its reason. */
  readonly refused: ReadonlyArray<{ index: number; message: string }>;
  readonly rejected: number;
  /** Transaction id of the commit (for the durable ack), when asked for. */
  readonly xid: string | undefined;
}

const CURRENT_XID = 'SELECT pg_current_xact_id()::xid::text AS xid';

function copyIn(client: pg.ClientBase, sql: string, text: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const stream = client.query(copyStreams.from(sql));
    stream.on('error', reject);
    stream.on('finish', () => resolve());
    stream.end(text);
  });
}

async function bisect(
  client: pg.ClientBase,
  sql: string,
  lines: readonly string[],
  lo: number,
  hi: number,
  refused: Array<{ index: number; message: string }>,
): Promise<void> {
  await client.query('SAVEPOINT sluice_copy');
  try {
    await copyIn(client, sql, lines.slice(lo, hi).join(''));
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
  await bisect(client, sql, lines, lo, mid, refused);
  await bisect(client, sql, lines, mid, hi, refused);
}

function refusedRow(target: CopyTarget, batch: BatchToWrite, index: number, message: string): RejectRow {
  let raw = batch.raws[index];
  if (raw === undefined) {
    const fields = decodeCopyLine(batch.lines[index] ?? '');
    raw = JSON.stringify(Object.fromEntries(target.columns.map((c, i) => [c, fields[i] ?? null])));
  }
  return { reason: 'copy_rejected', message: `Postgres refused the row: ${message}`, raw };
}

export async function writeBatch(client: pg.ClientBase, target: CopyTarget, batch: BatchToWrite, wantXid: boolean): Promise<WriteResult> {
  const refused: Array<{ index: number; message: string }> = [];
  await client.query('BEGIN');
  try {
    if (batch.lines.length > 0) {
      try {
        await copyIn(client, target.copySql, batch.lines.join(''));
      } catch (err) {
        if (!isDataError(err)) throw err;
        // The fast path failed on data: bisect under savepoints to find the refused rows...
        await client.query('ROLLBACK');
        await client.query('BEGIN');
        await bisect(client, target.copySql, batch.lines, 0, batch.lines.length, refused);
        // ...then write the good rows again at the top level, so their xmin is the
        // transaction id the durable ack tracks (rows written in a savepoint carry a
        // subtransaction id instead).
        await client.query('ROLLBACK');
        await client.query('BEGIN');
        const bad = new Set(refused.map((r) => r.index));
        const good = batch.lines.filter((_, i) => !bad.has(i));
        if (good.length > 0) await copyIn(client, target.copySql, good.join(''));
      }
    }
    const rejects = refused.length
      ? [...batch.rejects, ...refused.map((r) => refusedRow(target, batch, r.index, r.message))]
      : batch.rejects;
    await insertRejects(client, target.stream, target.source, rejects);
    const xid = wantXid && batch.lines.length > refused.length ? (await client.query<{ xid: string }>(CURRENT_XID)).rows[0]?.xid : undefined;
    await client.query('COMMIT');
    return { written: batch.lines.length - refused.length, refused, rejected: rejects.length, xid };
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}
