/**
 * The "durable" acknowledgement, in two steps:
 *
 * 1. wait until none of a flush's rows is left in staging: we remember the
 *    flush's transaction id and poll staging for rows whose xmin is still that
 *    id (each drain deletes what it moved in the same transaction as its insert);
 * 2. then confirm the batch's keys are in the durable table. Rows also leave
 *    staging when crash recovery empties the UNLOGGED table, or when the drain
 *    rejects them (no partition in the window): neither may be acknowledged.
 */
import type { Logger } from '../logger.js';
import type { ConnectionSet } from '../db/connections.js';
import { coerceError, SluiceError } from '../errors.js';
import { durableTable, stagingTable } from '../streams/names.js';

export const DURABLE_POLL_MS = 25;

/** (event_id, occurred_at) of the rows of one flush. */
export interface BatchKeys {
  readonly eventIds: readonly string[];
  readonly occurredAts: readonly string[];
}

interface Waiter {
  resolve: () => void;
  reject: (err: Error) => void;
}

export class DurableTracker {
  private readonly waiters = new Map<string, Waiter[]>();
  private timer: NodeJS.Timeout | undefined;
  private readonly stagedSql: string;
  private readonly confirmSql: string;
  private closed = false;

  constructor(
    private readonly stream: string,
    private readonly connections: ConnectionSet,
    private readonly log: Logger,
    private readonly pollMs = DURABLE_POLL_MS,
  ) {
    this.stagedSql = `SELECT DISTINCT xmin::text AS xid FROM ${stagingTable(stream)} WHERE xmin = ANY($1::xid[])`;
    this.confirmSql = `
      SELECT count(*)::int AS missing
        FROM (SELECT DISTINCT * FROM unnest($1::uuid[], $2::timestamptz[]) AS k(event_id, occurred_at)) k
       WHERE NOT EXISTS (SELECT 1 FROM ${durableTable(stream)} d WHERE d.occurred_at = k.occurred_at AND d.event_id = k.event_id)`;
  }

  /**
   * Resolves once the flush `xid` left staging and every key is durable;
   * rejects if some did not become durable, or when `signal` aborts.
   */
  async wait(xid: string, keys: BatchKeys, signal?: AbortSignal): Promise<void> {
    await this.leftStaging(xid, signal);
    const connection = await this.connections.acquire(signal);
    if (!connection) throw new SluiceError('durable_wait_aborted', 'stopped waiting for the durable acknowledgement');
    try {
      const { rows } = await (await connection.get()).query<{ missing: number }>(this.confirmSql, [keys.eventIds, keys.occurredAts]);
      const missing = rows[0]?.missing ?? 0;
      if (missing > 0) {
        throw new SluiceError(
          'not_durable',
          `${missing} event(s) of a flush to stream ${this.stream} left staging without reaching the durable table: ` +
            'rejected by the drain (see sluice.rejects, reason no_partition) or lost when Postgres restarted ' +
            '(crash recovery empties UNLOGGED staging). Re-send them.',
        );
      }
    } finally {
      this.connections.release(connection);
    }
  }

  /** Fail every pending wait (the Ingestor is closing). */
  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    for (const list of this.waiters.values()) {
      for (const w of list) w.reject(new SluiceError('durable_wait_aborted', `ingestor for stream ${this.stream} closed before the rows were durable`));
    }
    this.waiters.clear();
  }

  private leftStaging(xid: string, signal?: AbortSignal): Promise<void> {
    if (this.closed) return Promise.reject(new SluiceError('durable_wait_aborted', `ingestor for stream ${this.stream} is closed`));
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        resolve: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
        reject: (err) => {
          signal?.removeEventListener('abort', onAbort);
          reject(err);
        },
      };
      const onAbort = () => {
        const list = this.waiters.get(xid);
        if (list) {
          list.splice(list.indexOf(waiter), 1);
          if (list.length === 0) this.waiters.delete(xid);
        }
        reject(new SluiceError('durable_wait_aborted', 'stopped waiting for the durable acknowledgement (shutting down)'));
      };
      if (signal?.aborted) return onAbort();
      signal?.addEventListener('abort', onAbort, { once: true });
      const list = this.waiters.get(xid);
      if (list) list.push(waiter);
      else this.waiters.set(xid, [waiter]);
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.timer || this.closed || this.waiters.size === 0) return;
    this.timer = setTimeout(() => void this.poll(), this.pollMs);
  }

  private async poll(): Promise<void> {
    const connection = await this.connections.acquire();
    try {
      if (!connection) return;
      const client = await connection.get();
      const xids = [...this.waiters.keys()];
      const { rows } = await client.query<{ xid: string }>(this.stagedSql, [xids]);
      const remaining = new Set(rows.map((r) => r.xid));
      for (const xid of xids) {
        if (remaining.has(xid)) continue;
        for (const w of this.waiters.get(xid) ?? []) w.resolve();
        this.waiters.delete(xid);
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
