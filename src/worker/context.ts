/** What a running worker hands its tasks: config, pools, dedicated connections, ingestors. */
import type pg from 'pg';
import type { Task } from 'graphile-worker';
import type { SluiceConfig } from '../config.js';
import type { Logger } from '../logger.js';
import type { ConnectionSet } from '../db/connections.js';
import type { DrainKicker } from '../drain/drain-kicker.js';
import type { IngestHub } from './ingest-hub.js';

export interface WorkerContext {
  readonly workerId: string;
  readonly config: SluiceConfig;
  readonly log: Logger;
  /** graphile-worker's pool (concurrency + 1); short control queries only. */
  readonly pool: pg.Pool;
  readonly ingest: IngestHub;
  readonly drainers: ConnectionSet;
  readonly kicker: DrainKicker;
  /** Aborted when the worker begins its graceful shutdown. */
  readonly shutdownSignal: AbortSignal;
}

/** A task the worker runs, built from its context. */
export interface WorkerTaskSpec {
  readonly create: (ctx: WorkerContext) => Task;
  /**
   * Only on workers with drain connections: graphile-worker fetches only jobs of
   * the tasks it knows, so an ingest-only worker (--drainers 0) leaves them to others.
   */
  readonly needsDrainers?: boolean;
}

/** Task identifier → spec; assembled in tasks/index.ts and handed to runWorker. */
export type WorkerTaskList = Readonly<Record<string, WorkerTaskSpec>>;
