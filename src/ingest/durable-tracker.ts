/**
 * The "durable" acknowledgement: a flush transaction's rows are durable once
 * none of them is left in staging (each drain deletes what it moved in the
 * same transaction as its insert). We remember the flush's transaction id and
 * poll staging for rows whose xmin is still that id.
 */
import type { Logger } from '../logger.js';
import type { ConnectionSet } from '../db/connections.js';
import { coerceError } from '../errors.js';
import { stagingTable } from '../streams/names.js';

export const DURABLE_POLL_MS = 25;

export class DurableTracker {
  private readonly waiters = new Map<string, Array<() => void>>();
  private timer: NodeJS.Timeout | undefined;
  private readonly sql: string;
  private closed = false;

  constructor(
    private readonly stream: string,
    private readonly connections: ConnectionSet,
    private readonly log: Logger,
    private readonly pollMs = DURABLE_POLL_MS,
  ) {
    this.sql = `SELECT DISTINCT xmin::text AS xid FROM ${stagingTable(stream)} WHERE xmin = ANY($1::xid[])`;
  }

  /** Resolves when no row committed by transaction `xid` remains in staging. */
  wait(xid: string): Promise<void> {
    return new Promise((resolve) => {
      const list = this.waiters.get(xid);
      if (list) list.push(resolve);
      else this.waiters.set(xid, [resolve]);
      this.schedule();
    });
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
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
      const { rows } = await client.query<{ xid: string }>(this.sql, [xids]);
      const remaining = new Set(rows.map((r) => r.xid));
      for (const xid of xids) {
        if (remaining.has(xid)) continue;
        for (const resolve of this.waiters.get(xid) ?? []) resolve();
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
