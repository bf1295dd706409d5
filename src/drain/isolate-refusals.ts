/**
 * The drain's slow path for rows the durable table refuses (an index row over
 * the btree maximum, a CHECK or unique index of the user's, a trigger that
 * raises…). Staging has no indexes or constraints of the durable table, so such
 * a row stages fine and then fails every batch it is in.
 *
 * Lock a batch of staged rows (SKIP LOCKED, as the fast path does: rows another
 * session holds are skipped, not waited on), then bisect their ctids under
 * savepoints with the drain's own move statement. A set that moves is kept; a
 * set that fails on a row-caused error is split; a single row that fails is
 * moved from staging to sluice.rejects (reason `drain_refused`, Postgres'
 * SQLSTATE and message, the row as JSON). Every row taken out of staging —
 * moved or refused — records its exit in sluice.staging_exits in the same
 * transaction, for the durable ack. k refused rows among n cost O(k log n)
 * statements, committed every MAX_RELEASED_SAVEPOINTS moves (usually once).
 *
 * Any other error aborts the transaction in progress and is thrown to the
 * caller: a missing partition goes to its repair path, a transient error to
 * the retry loop, anything else to the drain's backoff.
 */
import type pg from 'pg';
import { withTransaction } from '../db/transaction.js';
import { isMissingPartition, isRowRefusal, sqlState } from '../errors.js';
import { durableTable, stagingTable } from '../streams/names.js';
import type { StreamDefinition } from '../streams/registry.js';
import { DRAIN_STATS_BUCKET, drainCtidsStatement, drainStatsUpsert } from './move-statement.js';

export interface IsolationResult {
  readonly moved: number;
  readonly inserted: number;
  readonly maxLagMs: number;
  /** Rows moved to sluice.rejects with reason drain_refused. */
  readonly refused: number;
}

const LOCK_CANDIDATES = (staging: string) => `SELECT ctid::text AS ctid FROM ${staging} LIMIT $1 FOR UPDATE SKIP LOCKED`;

const REJECT_ROW = (staging: string) => `
WITH moved AS (
  DELETE FROM ${staging} AS s WHERE s.ctid = $1::tid
  RETURNING row_to_json(s)::text AS raw, s.xmin::text::bigint AS staged_xid
), rejected AS (
  INSERT INTO sluice.rejects (stream, source, reason, message, raw)
  SELECT $2::text, 'drain', 'drain_refused', $3::text, raw FROM moved
), exits AS (
  INSERT INTO sluice.staging_exits (stream, xid, rows)
  SELECT $2::text, staged_xid, count(*) FROM moved GROUP BY staged_xid
)
SELECT count(*)::int AS refused FROM moved`;

/** One drain_stats update for the whole isolation (the fast path counts per statement). */
const RECORD_STATS = drainStatsUpsert(`VALUES ($1::text, ${DRAIN_STATS_BUCKET}, $2::text, 1, $3::bigint, $4::bigint, $5::bigint)`);

const SAVEPOINT = 'sluice_isolate';
/**
 * Savepoints released with writes stay in the transaction's subtransaction
 * cache until it ends; past 64 (PGPROC_MAX_CACHED_SUBXIDS) every other session's
 * snapshots overflow to pg_subtrans lookups. So one isolation transaction
 * releases at most this many, commits, and goes on with the sets it has not
 * tried yet in a new transaction (re-locking them, SKIP LOCKED).
 */
const MAX_RELEASED_SAVEPOINTS = 48;

const RELOCK = (staging: string) => `SELECT ctid::text AS ctid FROM ${staging} WHERE ctid = ANY ($1::tid[]) FOR UPDATE SKIP LOCKED`;

interface Tally {
  moved: number;
  inserted: number;
  maxLagMs: number;
  refused: number;
  /** Savepoints released after a move (they stay in the transaction's subxact cache). */
  released: number;
}

/** What a sluice.rejects row says about a refused row. */
export function refusalMessage(stream: StreamDefinition, err: unknown): string {
  const e = err as Error & { detail?: string };
  const message = `${durableTable(stream.name)} refused the row (SQLSTATE ${sqlState(err) ?? 'unknown'}): ${e.message}`;
  return e.detail ? `${message} (${e.detail})` : message;
}

export async function isolateRefusals(
  client: pg.ClientBase,
  stream: StreamDefinition,
  batchRows: number,
  drainer: string,
): Promise<IsolationResult> {
  const staging = stagingTable(stream.name);
  const move = drainCtidsStatement(stream);
  const total = { moved: 0, inserted: 0, maxLagMs: 0, refused: 0 };

  /** Try `ctids` under a savepoint; returns the halves to try next when a row-caused error needs them split. */
  async function attempt(ctids: readonly string[], tally: Tally): Promise<Array<readonly string[]>> {
    await client.query(`SAVEPOINT ${SAVEPOINT}`);
    try {
      const { rows } = await client.query<{ moved: number; inserted: number; max_lag_ms: number }>({ ...move, values: [ctids, stream.name] });
      await client.query(`RELEASE SAVEPOINT ${SAVEPOINT}`);
      tally.released++;
      tally.moved += rows[0]?.moved ?? 0;
      tally.inserted += rows[0]?.inserted ?? 0;
      tally.maxLagMs = Math.max(tally.maxLagMs, rows[0]?.max_lag_ms ?? 0);
      return [];
    } catch (err) {
      await client.query(`ROLLBACK TO SAVEPOINT ${SAVEPOINT}`);
      await client.query(`RELEASE SAVEPOINT ${SAVEPOINT}`);
      if (!isRowRefusal(err) || isMissingPartition(err)) throw err;
      if (ctids.length > 1) return halves(ctids);
      const { rows } = await client.query<{ refused: number }>(REJECT_ROW(staging), [ctids[0], stream.name, refusalMessage(stream, err)]);
      tally.refused += rows[0]?.refused ?? 0;
      return [];
    }
  }

  // Sets still to try, the next one last. The batch statement has just failed on
  // (almost surely) the same rows: start from its halves, not the whole again.
  let pending: Array<readonly string[]> | undefined;
  while (pending === undefined || pending.length > 0) {
    const tally: Tally = { moved: 0, inserted: 0, maxLagMs: 0, refused: 0, released: 0 };
    // READ COMMITTED whatever the database's default: SKIP LOCKED re-reads need it (40001 under REPEATABLE READ).
    await withTransaction(client, async () => {
      if (pending === undefined) {
        const { rows } = await client.query<{ ctid: string }>(LOCK_CANDIDATES(staging), [batchRows]);
        pending = halves(rows.map((r) => r.ctid)).reverse();
      } else {
        // A new transaction: lock again what is left (rows drained meanwhile by others are gone),
        // keeping the sets as the bisection left them: halves known to hold a refused row stay apart.
        const { rows } = await client.query<{ ctid: string }>(RELOCK(staging), [pending.flat()]);
        const locked = new Set(rows.map((r) => r.ctid));
        pending = pending.map((set) => set.filter((c) => locked.has(c))).filter((set) => set.length > 0);
      }
      while (pending.length > 0 && tally.released < MAX_RELEASED_SAVEPOINTS) {
        const ctids = pending.pop() as readonly string[];
        pending.push(...(await attempt(ctids, tally)).reverse());
      }
      if (tally.moved > 0) {
        await client.query(RECORD_STATS, [stream.name, drainer, tally.moved, tally.inserted, Math.round(tally.maxLagMs)]);
      }
    }, { isolation: 'READ COMMITTED' });
    total.moved += tally.moved;
    total.inserted += tally.inserted;
    total.refused += tally.refused;
    total.maxLagMs = Math.max(total.maxLagMs, tally.maxLagMs);
  }
  return total;
}

function halves(ctids: readonly string[]): Array<readonly string[]> {
  if (ctids.length <= 1) return ctids.length ? [ctids] : [];
  const mid = Math.floor(ctids.length / 2);
  return [ctids.slice(0, mid), ctids.slice(mid)];
}
