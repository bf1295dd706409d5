/**
 * `sluice worker`: graphile-worker in library mode with sluice's tasks and
 * crontab, plus the worker's dedicated COPY and drain connections, inside a
 * declared connection budget registered in sluice.workers.
 *
 * Shutdown (SIGTERM/SIGINT): stop taking jobs, let running jobs finish (ingest
 * jobs complete when their rows are flushed; drains stop after the current
 * batch), flush what is buffered, deregister, close every connection.
 */
import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import { run, type Runner, type WorkerEvents } from 'graphile-worker';
import { DRAINERS_DEFAULT, type SluiceConfig } from '../config.js';
import type { Logger } from '../logger.js';
import { applicationName, ConnectionSet, createPool, DedicatedConnection } from '../db/connections.js';
import { assertPlanFitsBudget, describePlan, planConnections, type ConnectionPlan } from '../db/budget.js';
import { migrateDatabase } from '../db/migrate.js';
import { DrainKicker } from '../drain/drain-kicker.js';
import { listenForStagedRows } from '../sqlfront/staged-notifications.js';
import { coerceError } from '../errors.js';
import { CRONTAB_FILE } from '../paths.js';
import type { TaskList } from 'graphile-worker';
import type { WorkerContext, WorkerTaskList } from './context.js';
import { toGraphileLogger } from '../graphile-logger.js';
import { IngestHub } from './ingest-hub.js';
import { recordOwnLockId } from './dead-workers.js';
import { HeldJobs, releaseOrphanedLocks, type ReleasedOrphans } from './orphaned-locks.js';
import { waitForDatabase } from './wait-for-database.js';
import { poolNotice } from './pool-notice.js';
import { HeartbeatLoop, logReleased } from './heartbeat-loop.js';
import { deregisterWorker, registerWorker, type Registration } from './worker-registry.js';

/** A drain statement that runs longer than this is cancelled and retried smaller. */
export const DRAIN_STATEMENT_TIMEOUT_MS = 60_000;

export interface RunWorkerOptions {
  readonly config: SluiceConfig;
  readonly connectionString: string;
  readonly log: Logger;
  /** The tasks to run (sluice's own: `sluiceTaskList` from tasks/index.ts). */
  readonly tasks: WorkerTaskList;
  /** Crontab text instead of the packaged `crontab` file (tests run schedules every minute). */
  readonly crontab?: string;
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

export async function runWorker({ config, connectionString, log: parentLog, tasks, crontab }: RunWorkerOptions): Promise<WorkerHandle> {
  const workerId = config.workerId;
  const log = parentLog.child({ worker: workerId });
  const plan = planConnections(config);
  assertPlanFitsBudget(plan, config.maxConnections);

  // Under --budget-scope cluster every session carries the budget (`…/b<n>`), from the first one on: the
  // claim other databases count is published before this worker's own check (see worker-registry.ts).
  const claim = config.budgetScope === 'cluster' ? config.maxConnections : undefined;
  const pool = createPool(connectionString, applicationName(workerId, 'pool', claim), plan.pool, log);
  const opened: ConnectionSet[] = [];
  let registered = false;
  try {
    await waitForDatabase(pool, log);
    // On the worker's own pool: start-up stays inside the budget too.
    if (config.migrate) await migrateDatabase(pool, log);
    const registration = await withClient(pool, (client) =>
      registerWorker(client, {
        workerId,
        budget: config.maxConnections,
        plan,
        reserve: config.reserve,
        heartbeatMs: config.heartbeatMs,
        staleAfterMs: config.staleAfterMs,
        scope: config.budgetScope,
      }),
    );
    registered = true;
    const flushers = new ConnectionSet(
      Array.from({ length: config.flushers }, (_, i) => new DedicatedConnection(connectionString, applicationName(workerId, `flush-${i}`, claim), log)),
    );
    opened.push(flushers);
    const drainers = new ConnectionSet(
      Array.from(
        { length: config.drainers },
        (_, i) => new DedicatedConnection(connectionString, applicationName(workerId, `drain-${i}`, claim), log, DRAIN_STATEMENT_TIMEOUT_MS),
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

    // graphile-worker locks jobs under its pool's own id: record it with this registration, so live
    // workers can release this worker's jobs once it is dead (see dead-workers.ts).
    const events = new EventEmitter() as WorkerEvents;
    // sluice.ingest() (the SQL front door) announces staged rows: kick their drains.
    listenForStagedRows(events, (stream) => kicker.kick(stream), log);
    let lockIdRecorded: Promise<void> | undefined;
    let lockId: string | undefined;
    const heldJobs = new HeldJobs();
    heldJobs.follow(events);
    events.on('pool:create', ({ workerPool }) => {
      lockId = workerPool.id;
      lockIdRecorded = recordOwnLockId(pool, workerId, workerPool.id).then(
        (released) => logReleased(log, released),
        (err: Error) => log.error({ err: err.message }, 'worker: could not record its job lock id; its jobs stay locked if it dies'),
      );
    });

    // A pool below the job slots is planned (--pool-size): say so once, in place of graphile-worker's warning.
    const notice = poolNotice(plan, config.maxConnections, config.tasksDir !== undefined);
    if (notice) log[notice.level](notice.fields, notice.message);
    const runner: Runner = await run({
      pgPool: pool,
      events,
      noHandleSignals: true,
      logger: toGraphileLogger(log, notice ? { plannedPool: { max: plan.pool, concurrency: config.concurrency } } : {}),
      concurrency: config.concurrency,
      taskList: buildTaskList(tasks, ctx),
      crontab: crontab ?? readFileSync(config.crontabFile ?? CRONTAB_FILE, 'utf8'),
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

    await lockIdRecorded;
    const addStartupJobs = async (when: 'startup' | 'reconnect'): Promise<void> => {
      for (const [task, payload] of STARTUP_JOBS) {
        if (task in tasks) await runner.addJob(task, payload, { jobKey: `${task}:${when}`, maxAttempts: 3 });
      }
    };
    const heartbeats = new HeartbeatLoop({
      pool,
      workerId,
      heartbeatMs: config.heartbeatMs,
      staleAfterMs: config.staleAfterMs,
      log,
      stats: async () => ({ ingest: await ingest.stats() }),
      onReconnect: () => addStartupJobs('reconnect'),
      orphanSweepMs: config.staleAfterMs,
      releaseOrphans: async () => {
        if (lockId) logOrphansReleased(log, await releaseOrphanedLocks(pool, lockId, heldJobs.ids()), 'its jobs are runnable again');
      },
    });
    // At start, not at the next heartbeat or schedule: free what dead workers hold locked, note a crash
    // that emptied staging, premake what a new or changed stream lacks, and drain what a dead worker left
    // staged (job keys keep several starting workers to one job each).
    await heartbeats.recover().catch((err: Error) => log.warn({ err: err.message }, 'worker: start-up recovery check failed; retried at each heartbeat'));
    await addStartupJobs('startup');
    heartbeats.start();

    let stopping: Promise<void> | undefined;
    const stop = (reason = 'stop requested'): Promise<void> => {
      stopping ??= (async () => {
        const started = Date.now();
        log.info({ reason }, 'worker: stopping: no new jobs; finishing running jobs, flushing buffers');
        shutdown.abort();
        await runner.stop().catch((err: Error) => log.warn({ err: err.message }, 'worker: graphile-worker stop reported an error'));
        await ingest.close();
        await kicker.close();
        await heartbeats.stop();
        // The pool has stopped: a job still locked under its id is an orphan (a completion lost with its connection).
        if (lockId) {
          await releaseOrphanedLocks(pool, lockId, [], 0).then(
            (released) => logOrphansReleased(log, released, 'released before exit'),
            (err: Error) => log.warn({ err: err.message }, 'worker: could not release its orphaned job locks before exit'),
          );
        }
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
        budget_scope: config.budgetScope,
        other_databases_budget: registration.elsewhereBudget,
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

function logOrphansReleased(log: Logger, released: ReleasedOrphans, what: string): void {
  if (released.jobs === 0) return;
  log.warn(
    { jobs: released.jobs, job_queues: released.queues },
    `worker: ${released.jobs} job(s) stayed locked by this worker after their completion or fetch was lost with a connection; ${what}`,
  );
}

async function withClient<T>(pool: import('pg').Pool, fn: (client: import('pg').PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    return await fn(client);
  } finally {
    client.release();
  }
}

/** Maintenance a starting worker asks for at once (task identifier, payload); each runs on some worker. */
const STARTUP_JOBS: ReadonlyArray<readonly [string, object]> = [
  ['sluice_rotate_partitions', {}],
  ['sluice_drain', { sweep: true }],
];

/** Without drain connections this worker leaves drain tasks to others (the crontab's sweep then runs there too). */
function buildTaskList(tasks: WorkerTaskList, ctx: WorkerContext): TaskList {
  const list: TaskList = {};
  for (const [identifier, spec] of Object.entries(tasks)) {
    if (spec.needsDrainers && ctx.config.drainers === 0) continue;
    list[identifier] = spec.create(ctx);
  }
  return list;
}
