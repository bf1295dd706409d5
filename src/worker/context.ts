/** What a running worker hands its tasks: config, pools, dedicated connections, ingestors. */
import type pg from 'pg';
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
