/**
 * How many connections a worker holds, seen from outside: every connection of
 * a worker is named `sluice/<worker-id>/<role>` (see connections.ts), so
 * pg_stat_activity counts them. The demo, the bench and the budget tests
 * sample it while a worker runs to show the peak stays inside its budget.
 */
import type pg from 'pg';
import { sleep } from '../timing.js';
import { applicationName, connectClient } from './connections.js';

/** This database's only: pg_stat_activity is cluster-wide, and another database may run a worker of the same name. */
const WORKER_CONNECTIONS = `SELECT application_name FROM pg_stat_activity WHERE datname = current_database() AND starts_with(application_name, $1)`;

/** Named as sluice's own, under an id no worker has: the sampler never counts itself. */
const SAMPLER_APPLICATION_NAME = applicationName('connection-sampler', 'observer');

type Queryable = Pick<pg.ClientBase, 'query'>;

/** application_name of every connection the worker holds now. */
export async function workerConnections(db: Queryable, workerId: string): Promise<string[]> {
  const { rows } = await db.query<{ application_name: string }>(WORKER_CONNECTIONS, [`sluice/${workerId}/`]);
  return rows.map((r) => r.application_name);
}

export interface ConnectionSamples {
  readonly peak: number;
  readonly samples: number;
  /** Every application_name seen. */
  readonly names: ReadonlySet<string>;
}

/**
 * Samples a worker's connections every `everyMs` until stop(). Given a URL it
 * opens (and closes) a connection of its own; given a pool or client, it uses it.
 */
export class ConnectionSampler {
  private peakSeen = 0;
  private sampleCount = 0;
  private readonly names = new Set<string>();
  private readonly stopped = new AbortController();
  private readonly done: Promise<void>;

  constructor(db: Queryable | string, workerId: string, everyMs: number) {
    this.done = this.run(db, workerId, everyMs);
    this.done.catch(() => undefined); // reported by stop()
  }

  /** The most connections seen so far. */
  get peak(): number {
    return this.peakSeen;
  }

  /** Stops sampling; rejects when a sample failed. */
  async stop(): Promise<ConnectionSamples> {
    this.stopped.abort();
    await this.done;
    return { peak: this.peakSeen, samples: this.sampleCount, names: this.names };
  }

  private async run(db: Queryable | string, workerId: string, everyMs: number): Promise<void> {
    const own = typeof db === 'string' ? await connectClient(db, SAMPLER_APPLICATION_NAME) : undefined;
    try {
      while (!this.stopped.signal.aborted) {
        const names = await workerConnections(own ?? (db as Queryable), workerId);
        this.sampleCount++;
        this.peakSeen = Math.max(this.peakSeen, names.length);
        for (const name of names) this.names.add(name);
        await sleep(everyMs, this.stopped.signal);
      }
    } finally {
      await own?.end().catch(() => undefined);
    }
  }
}
