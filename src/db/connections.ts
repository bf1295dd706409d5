/**
 * Connections are visible and owned: every one carries an application_name
 * `sluice/<worker-id>/<role>`, COPY writers and drainers are dedicated clients
 * (never borrowed from the job pool), and a dedicated client reconnects in
 * place, so faults never push a process past its connection budget.
 */
import pg from 'pg';
import type { Logger } from '../logger.js';
import { coerceError, isTransientError } from '../errors.js';
import { backoffMs, sleep } from '../timing.js';
import { JSON_KEEPING_TYPES } from './json-types.js';

/** Postgres truncates application_name to this many bytes (NAMEDATALEN − 1). */
export const APPLICATION_NAME_MAX = 63;

/**
 * application_name is truncated by Postgres at 63 bytes; keep the role visible.
 * With `budget` (a worker under --budget-scope cluster), the name ends
 * `/b<budget>`: the worker's declared budget, readable from every database of
 * the cluster in pg_stat_activity (see budget-claims.ts). That name is never
 * shortened: a cut claim would be misread, so one that does not fit throws
 * (ids are at most 40 characters, roles at most 8, budgets at most 10000:
 * 7 + 40 + 1 + 8 + 2 + 5 = 63).
 */
export function applicationName(workerId: string, role: string, budget?: number): string {
  if (budget !== undefined) {
    const claim = `sluice/${workerId}/${role}/b${budget}`;
    if (Buffer.byteLength(claim) > APPLICATION_NAME_MAX || !Number.isInteger(budget) || budget < 0) {
      throw new Error(`sluice: application_name ${JSON.stringify(claim)} would not carry the budget intact (at most ${APPLICATION_NAME_MAX} bytes)`);
    }
    return claim;
  }
  const name = `sluice/${workerId}/${role}`;
  return name.length <= APPLICATION_NAME_MAX ? name : `sluice/${workerId.slice(0, APPLICATION_NAME_MAX - 8 - role.length)}/${role}`;
}

export function createPool(connectionString: string, appName: string, max: number, log?: Logger): pg.Pool {
  // json/jsonb parse as usual, keeping raw text where numbers would change (sluice_ingest re-reads it exactly).
  const pool = new pg.Pool({ connectionString, application_name: appName, max, idleTimeoutMillis: 30_000, types: JSON_KEEPING_TYPES });
  // A client that loses its server emits 'error'; unhandled, Node would crash. The pool replaces it.
  const onError = (err: Error) => log?.warn({ role: appName, err: err.message }, 'connection: pooled connection lost');
  pool.on('error', onError);
  pool.on('connect', (client) => client.on('error', onError));
  return pool;
}

export async function connectClient(connectionString: string, appName: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString, application_name: appName });
  client.on('error', () => undefined);
  await client.connect();
  return client;
}

/**
 * One long-lived connection for one role. `use()` hands out the client; when
 * it broke, the next `use()` replaces it (after closing the old one), with
 * jittered backoff between attempts.
 */
export class DedicatedConnection {
  private client: pg.Client | undefined;
  private broken = false;
  private closed = false;

  constructor(
    private readonly connectionString: string,
    readonly appName: string,
    private readonly log: Logger,
    /** Server-side limit per statement (ms), e.g. so a drain batch cannot hang forever. */
    private readonly statementTimeoutMs?: number,
  ) {}

  async get(signal?: AbortSignal): Promise<pg.Client> {
    if (this.closed) throw new Error(`connection ${this.appName} is closed`);
    if (this.client && !this.broken) return this.client;
    if (this.client) {
      const old = this.client;
      this.client = undefined;
      await old.end().catch(() => undefined);
    }
    for (let attempt = 0; ; attempt++) {
      try {
        const client = new pg.Client({
          connectionString: this.connectionString,
          application_name: this.appName,
          ...(this.statementTimeoutMs ? { statement_timeout: this.statementTimeoutMs } : {}),
        });
        client.on('error', (err) => {
          this.broken = true;
          this.log.warn({ role: this.appName, err: err.message }, 'connection: lost, will reconnect on next use');
        });
        await client.connect();
        this.client = client;
        this.broken = false;
        if (attempt > 0) this.log.info({ role: this.appName, attempts: attempt + 1 }, 'connection: reconnected');
        return client;
      } catch (err) {
        if (!isTransientError(err) || attempt >= 8 || signal?.aborted) throw coerceError(err);
        const delay = backoffMs(attempt, 200, 5_000);
        this.log.warn({ role: this.appName, attempt: attempt + 1, delay_ms: delay, err: coerceError(err).message }, 'connection: connect failed, retrying');
        await sleep(delay, signal);
      }
    }
  }

  /** The server process of the open session (for pg_cancel_backend), if one is open. */
  get backendPid(): number | undefined {
    // node-pg records it from BackendKeyData; @types/pg does not declare it.
    const pid = (this.client as { processID?: unknown } | undefined)?.processID;
    return typeof pid === 'number' ? pid : undefined;
  }

  /** Mark the client unusable (e.g. after a failed transaction on a lost socket). */
  markBroken(): void {
    this.broken = true;
  }

  async close(): Promise<void> {
    this.closed = true;
    const client = this.client;
    this.client = undefined;
    if (client) await client.end().catch(() => undefined);
  }
}

/** A fixed set of dedicated connections handed out one at a time (drainers, flushers). */
export class ConnectionSet {
  private readonly free: DedicatedConnection[];
  private readonly waiters: Array<(c: DedicatedConnection) => void> = [];

  constructor(readonly connections: readonly DedicatedConnection[]) {
    this.free = [...connections];
  }

  acquire(signal?: AbortSignal): Promise<DedicatedConnection | undefined> {
    const next = this.free.shift();
    if (next) return Promise.resolve(next);
    if (signal?.aborted) return Promise.resolve(undefined);
    return new Promise((resolve) => {
      const onAbort = () => {
        const i = this.waiters.indexOf(grant);
        if (i >= 0) this.waiters.splice(i, 1);
        resolve(undefined);
      };
      const grant = (c: DedicatedConnection) => {
        signal?.removeEventListener('abort', onAbort);
        resolve(c);
      };
      this.waiters.push(grant);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  release(connection: DedicatedConnection): void {
    const waiter = this.waiters.shift();
    if (waiter) waiter(connection);
    else this.free.push(connection);
  }

  get size(): number {
    return this.connections.length;
  }

  async closeAll(): Promise<void> {
    await Promise.all(this.connections.map((c) => c.close()));
  }
}
