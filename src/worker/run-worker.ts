/**
 * `sluice worker`: graphile-worker in library mode with sluice's tasks and
 * crontab, plus the worker's dedicated COPY and drain connections, inside a
 * declared connection budget registered in sluice.workers.
 *
 * Shutdown (SIGTERM/SIGINT): stop taking jobs, let running jobs finish (ingest
 * jobs complete when their rows are flushed; drains stop after the current
 * batch), flush what is buffered, deregister, close every connection.
 */
import { readFileSync } from 'node:fs';
import { run, type Runner } from 'graphile-worker';
import { DRAINERS_DEFAULT, type SluiceConfig } from '../config.js';
import type { Logger } from '../logger.js';
import { applicationName, ConnectionSet, createPool, DedicatedConnection } from '../db/connections.js';
import { assertPlanFitsBudget, describePlan, planConnections, type ConnectionPlan } from '../db/budget.js';
import { migrateDatabase } from '../db/migrate.js';
import { DrainKicker } from '../drain/drain-kicker.js';
import { coerceError } from '../errors.js';
import { CRONTAB_FILE } from '../paths.js';
import { sluiceDrainTask } from '../../tasks/sluice_drain.js';
import { sluiceIngestTask } from '../../tasks/sluice_ingest.js';
import { sluiceRotatePartitionsTask } from '../../tasks/sluice_rotate_partitions.js';
import type { WorkerContext } from './context.js';
import { toGraphileLogger } from './graphile-logger.js';
import { IngestHub } from './ingest-hub.js';
import { deregisterWorker, heartbeat, registerWorker, type Registration } from './registry.js';

/** A drain statement that runs longer than this is cancelled and retried smaller. */
const DRAIN_STATEMENT_TIMEOUT_MS = 60_000;

export interface RunWorkerOptions {
  readonly config: SluiceConfig;
  readonly connectionString: string;
  readonly log: Logger;
}

export interface WorkerHandle {
  readonly id: string;
  readonly plan: ConnectionPlan;
  readonly registration: Registration;
  /** Resolves when the worker has stopped; rejects if graphile-worker failed fatally. */
  readonly done: Promise<void>;
  /** Graceful shutdown; safe to call more than once. */
  stop(reason?: string): Promise<void>;
}

export async function runWorker({ config, connectionString, log: parentLog }: RunWorkerOptions): Promise<WorkerHandle> {
  const workerId = config.workerId;
  const log = parentLog.child({ worker: workerId });
  const plan = planConnections(config);
  assertPlanFitsBudget(plan, config.maxConnections);

  const pool = createPool(connectionString, applicationName(workerId, 'pool'), plan.pool, log);
  const opened: ConnectionSet[] = [];
  let registered = false;
  try {
    // On the worker's own pool: start-up stays inside the budget too.
    if (config.migrate) await migrateDatabase(pool, log);
    const registration = await withClient(pool, (client) =>
      registerWorker(client, {
        workerId,
        budget: config.maxConnections,
        plan,
        reserve: config.reserve,
        staleAfterMs: config.staleAfterMs,
      }),
    );
    registered = true;
    const flushers = new ConnectionSet(
      Array.from({ length: config.flushers }, (_, i) => new DedicatedConnection(connectionString, applicationName(workerId, `flush-${i}`), log)),
    );
    opened.push(flushers);
    const drainers = new ConnectionSet(
      Array.from(
        { length: config.drainers },
        (_, i) => new DedicatedConnection(connectionString, applicationName(workerId, `drain-${i}`), log, DRAIN_STATEMENT_TIMEOUT_MS),
      ),
    );
    opened.push(drainers);
    // Open the dedicated connections now: fail fast, and hold exactly the plan.
    await Promise.all([...flushers.connections, ...drainers.connections].map((c) => c.get()));

    const shutdown = new AbortController();
    // An ingest-only worker (--drainers 0) still asks for the default number of drain slots, for other workers.
    const kicker = new DrainKicker((text, values) => pool.query(text, values), config.drainers || DRAINERS_DEFAULT, log);
    const ingest = new IngestHub({ pool, flushers, kicker, config, log, source: 'sql' });
    const ctx: WorkerContext = { workerId, config, log, pool, ingest, drainers, kicker, shutdownSignal: shutdown.signal };

    const runner: Runner = await run({
      pgPool: pool,
      noHandleSignals: true,
      logger: toGraphileLogger(log),
      concurrency: config.concurrency,
      taskList: {
        sluice_ingest: sluiceIngestTask(ctx),
        // Without drain connections this worker does not take drain jobs (graphile-worker only
        // fetches jobs of the tasks it knows); the crontab's sweep then runs on other workers.
        ...(config.drainers > 0 ? { sluice_drain: sluiceDrainTask(ctx) } : {}),
        sluice_rotate_partitions: sluiceRotatePartitionsTask(ctx),
      },
      crontab: readFileSync(CRONTAB_FILE, 'utf8'),
      preset: {
        worker: {
          concurrentJobs: config.concurrency,
          gracefulShutdownAbortTimeout: config.shutdownTimeoutMs,
          ...(config.localQueueSize > 0 ? { localQueue: { size: config.localQueueSize } } : {}),
          completeJobBatchDelay: config.completeJobBatchDelayMs,
          failJobBatchDelay: config.completeJobBatchDelayMs,
        },
      },
    });

    const heartbeatTimer = setInterval(() => {
      void ingest
        .stats()
        .then((stats) => heartbeat(pool, workerId, { ingest: stats }))
        .then((alive) => {
          if (!alive) log.warn('worker: registry row vanished (pruned while paused?); budget no longer counted');
        })
        .catch((err: Error) => log.warn({ err: err.message }, 'worker: heartbeat failed'));
    }, config.heartbeatMs);

    let stopping: Promise<void> | undefined;
    const stop = (reason = 'stop requested'): Promise<void> => {
      stopping ??= (async () => {
        const started = Date.now();
        log.info({ reason }, 'worker: stopping: no new jobs; finishing running jobs, flushing buffers');
        shutdown.abort();
        await runner.stop().catch((err: Error) => log.warn({ err: err.message }, 'worker: graphile-worker stop reported an error'));
        await ingest.close();
        await kicker.close();
        clearInterval(heartbeatTimer);
        await deregisterWorker(pool, workerId).catch((err: Error) => log.warn({ err: err.message }, 'worker: could not deregister'));
        await Promise.all([flushers.closeAll(), drainers.closeAll()]);
        await pool.end();
        log.info({ duration_ms: Date.now() - started }, 'worker: stopped');
      })();
      return stopping;
    };

    const done = runner.promise.then(
      () => stop('graphile-worker exited'),
      async (err: unknown) => {
        log.fatal({ err: coerceError(err).message }, 'worker: graphile-worker failed');
        await stop('graphile-worker failed');
        throw coerceError(err);
      },
    );
    done.catch(() => undefined);

    log.info(
      {
        plan: describePlan(plan),
        budget: config.maxConnections,
        cluster_available: registration.capacity.available,
        live_workers_budget: registration.liveBudget,
        concurrency: config.concurrency,
      },
      'worker: started',
    );
    return { id: workerId, plan, registration, done, stop };
  } catch (err) {
    if (registered) await deregisterWorker(pool, workerId).catch(() => undefined);
    await Promise.all(opened.map((set) => set.closeAll()));
    await pool.end().catch(() => undefined);
    throw err;
  }
}

async function withClient<T>(pool: import('pg').Pool, fn: (client: import('pg').PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    return await fn(client);
  } finally {
    client.release();
  }
}
