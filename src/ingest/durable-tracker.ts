/**
 * The "durable" acknowledgement of one committed flush, in two steps:
 *
 * 1. wait until all of the flush's rows have left staging. Every statement
 *    that deletes staged rows (drain, refused-row isolation, partition repair)
 *    records in sluice.staging_exits how many rows of each flush transaction
 *    (the rows' xmin) it took out, in its own transaction; a flush of N rows has
 *    left staging once its exits sum to N. One index lookup per waiting flush
 *    per poll, whatever the size of staging (staging has no indexes: scanning
 *    it costs ~150 ms at 500k rows).
 * 2. then ask the durable table which of the flush's keys are missing. Rows
 *    also leave staging when the drain rejects them (sluice.rejects) or when
 *    crash recovery empties the UNLOGGED table: those may not be acknowledged,
 *    and the caller learns exactly which lines they were.
 *
 * The ledger cannot see rows that vanished without a drain (crash recovery
 * also empties the UNLOGGED ledger, a TRUNCATE, a stream dropped by hand, or
 * exits pruned after an hour). So a flush whose count has not moved for
 * STALL_CHECK_MS, or any flush after the server restarted, is checked against
 * staging itself, at most once per STALL_CHECK_MS per tracker; rows found
 * still staged get a fresh drain kick (the drain that skipped them because
 * another session held them locked will not come back by itself).
 */
import type { Logger } from '../logger.js';
import type { ConnectionSet } from '../db/connections.js';
import { coerceError, SluiceError } from '../errors.js';
import { durableTable, stagingTable } from '../streams/names.js';

/**
 * How often a durable-ack waiter polls the exit ledger. A judgement, not
 * measured: one cheap indexed query per poll per waiting tracker, and at most
 * 25 ms added to a durable ack, small beside the staged→durable lag
 * (p50 26 ms at half the max rate, docs/benchmarks.md).
 */
export const DURABLE_POLL_MS = 25;
/** How long a flush's exit count may stand still before staging itself is checked. */
export const STALL_CHECK_MS = 10_000;

/** (event_id, occurred_at) of the rows of one flush, in line order. */
export interface BatchKeys {
  readonly eventIds: readonly string[];
  readonly occurredAts: readonly string[];
}

const EXITS_AND_SERVER_START = `
SELECT e.xid::text AS xid, e.gone::float8 AS gone, pg_postmaster_start_time()::text AS server_started
  FROM (VALUES (1)) one
  LEFT JOIN (SELECT xid, sum(rows) AS gone
               FROM sluice.staging_exits
              WHERE stream = $1 AND xid = ANY ($2::bigint[])
              GROUP BY xid) e ON true`;

interface Waiter {
  readonly xid: string;
  readonly rows: number;
  gone: number;
  movedAt: number;
  readonly resolve: () => void;
  readonly reject: (err: Error) => void;
}

export class DurableTracker {
  private readonly waiters = new Set<Waiter>();
  private timer: NodeJS.Timeout | undefined;
  private readonly stagedSql: string;
  private readonly missingSql: string;
  private closed = false;
  private serverStarted: string | undefined;
  private lastStagingCheck = 0;

  constructor(
    private readonly stream: string,
    private readonly connections: ConnectionSet,
    private readonly log: Logger,
    /** Rows stood still in staging for STALL_CHECK_MS: e.g. ask for a drain again (a kick may have been lost, or rows were locked). */
    private readonly onStall: () => void = () => undefined,
    private readonly pollMs = DURABLE_POLL_MS,
    private readonly stallCheckMs = STALL_CHECK_MS,
  ) {
    this.stagedSql = `SELECT DISTINCT xmin::text AS xid FROM ${stagingTable(stream)} WHERE xmin = ANY ($1::xid[])`;
    this.missingSql = `
      SELECT (k.i - 1)::int AS i
        FROM unnest($1::uuid[], $2::timestamptz[]) WITH ORDINALITY AS k(event_id, occurred_at, i)
       WHERE NOT EXISTS (SELECT 1 FROM ${durableTable(stream)} d WHERE d.occurred_at = k.occurred_at AND d.event_id = k.event_id)`;
  }

  /**
   * Resolves once the `rows` rows written by flush transaction `xid` have left
   * staging, with the positions (in `keys`) of those that are not in the
   * durable table. Rejects when the tracker closes.
   */
  async wait(xid: string, rows: number, keys: BatchKeys): Promise<number[]> {
    await this.leftStaging(xid, rows);
    return this.missing(keys);
  }

  /** Fail every pending wait (the Ingestor is closing). */
  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    for (const w of this.waiters) w.reject(new SluiceError('durable_wait_aborted', `ingestor for stream ${this.stream} closed before the rows were durable`));
    this.waiters.clear();
  }

  private async missing(keys: BatchKeys): Promise<number[]> {
    if (keys.eventIds.length === 0) return [];
    for (let attempt = 0; ; attempt++) {
      const connection = await this.connections.acquire();
      if (!connection) throw new SluiceError('durable_wait_aborted', 'stopped waiting for the durable acknowledgement (connections closed)');
      try {
        const { rows } = await (await connection.get()).query<{ i: number }>(this.missingSql, [keys.eventIds, keys.occurredAts]);
        return rows.map((r) => r.i);
      } catch (err) {
        connection.markBroken();
        if (this.closed || attempt >= 20) throw err;
        this.log.warn({ stream: this.stream, err: coerceError(err).message }, 'ingest: durable-ack key check failed, retrying');
        await new Promise((resolve) => setTimeout(resolve, Math.min(2_000, 100 * 2 ** attempt)));
      } finally {
        this.connections.release(connection);
      }
    }
  }

  private leftStaging(xid: string, rows: number): Promise<void> {
    if (this.closed) return Promise.reject(new SluiceError('durable_wait_aborted', `ingestor for stream ${this.stream} is closed`));
    return new Promise((resolve, reject) => {
      this.waiters.add({ xid, rows, gone: 0, movedAt: Date.now(), resolve, reject });
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.timer || this.closed || this.waiters.size === 0) return;
    this.timer = setTimeout(() => void this.poll(), this.pollMs);
  }

  private settle(waiter: Waiter): void {
    this.waiters.delete(waiter);
    waiter.resolve();
  }

  private async poll(): Promise<void> {
    const connection = await this.connections.acquire();
    try {
      if (!connection) return;
      const client = await connection.get();
      const waiting = [...this.waiters];
      const { rows } = await client.query<{ xid: string | null; gone: number | null; server_started: string }>(EXITS_AND_SERVER_START, [
        this.stream,
        [...new Set(waiting.map((w) => w.xid))],
      ]);
      const gone = new Map(rows.filter((r) => r.xid !== null).map((r) => [r.xid as string, r.gone ?? 0]));
      const now = Date.now();
      const serverStarted = rows[0]?.server_started;
      // A restart empties UNLOGGED staging and the UNLOGGED ledger alike: check staging at once.
      const restarted = this.serverStarted !== undefined && serverStarted !== this.serverStarted;
      this.serverStarted = serverStarted;
      const stalled: Waiter[] = [];
      for (const w of waiting) {
        const count = gone.get(w.xid) ?? 0;
        if (count > w.gone) {
          w.gone = count;
          w.movedAt = now;
        }
        if (w.gone >= w.rows) this.settle(w);
        else if (restarted || now - w.movedAt >= this.stallCheckMs) stalled.push(w);
      }
      if (stalled.length && (restarted || now - this.lastStagingCheck >= this.stallCheckMs)) {
        this.lastStagingCheck = now;
        const staged = await client.query<{ xid: string }>(this.stagedSql, [[...new Set(stalled.map((w) => w.xid))]]);
        const still = new Set(staged.rows.map((r) => r.xid));
        for (const w of stalled) {
          if (!still.has(w.xid)) this.settle(w);
          else w.movedAt = now;
        }
        if (still.size > 0) this.onStall();
      }
    } catch (err) {
      connection?.markBroken();
      this.log.warn({ stream: this.stream, err: coerceError(err).message }, 'ingest: durable-ack poll failed, retrying');
    } finally {
      if (connection) this.connections.release(connection);
      this.timer = undefined;
      this.schedule();
    }
  }
}
