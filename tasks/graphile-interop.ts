/**
 * sluice inside a plain graphile-worker: the task list, the crontab and a
 * graphile-config preset, for shops that already run their own worker:
 *
 *   import { run } from 'graphile-worker';
 *   import { sluiceTasks, sluiceCrontab, SluicePreset } from 'sluice';
 *   await run({ preset: SluicePreset, taskList: { ...myTasks, ...sluiceTasks }, crontab: myCrontab + sluiceCrontab });
 *
 * The sluice context is made on the first sluice job, not at import: control
 * queries go through the host worker's own pool (the job's helpers.withPgClient),
 * and sluice opens only its dedicated connections (flushers + drainers, named
 * `sluice/<worker-id>/flush-N` and `…/drain-N`), which it registers in
 * sluice.workers as its budget. The host pool is the host's to size: it is not
 * counted in sluice's budget. SluicePreset closes sluice's connections when the
 * host worker shuts down gracefully, after flushing what is buffered and
 * draining (for up to 3 s) what this process staged — so `graphile-worker
 * --once` leaves its events durable, not staged until the next run.
 */
import { readFileSync } from 'node:fs';
import type pg from 'pg';
import type { JobHelpers, Task, TaskList, WithPgClient } from 'graphile-worker';
import { ConfigError, DRAINERS_DEFAULT, loadConfig, type ConfigFlags, type SluiceConfig } from '../src/config.js';
import { applicationName, ConnectionSet, DedicatedConnection } from '../src/db/connections.js';
import { migrateDatabase } from '../src/db/migrate.js';
import { DrainKicker } from '../src/drain/drain-kicker.js';
import { createLogger, type Logger } from '../src/logger.js';
import { CRONTAB_FILE } from '../src/paths.js';
import type { WorkerContext, WorkerTaskList } from '../src/worker/context.js';
import { IngestHub } from '../src/worker/ingest-hub.js';
import { deregisterWorker, registerWorker } from '../src/worker/worker-registry.js';
import { HeartbeatLoop } from '../src/worker/heartbeat-loop.js';
import { DRAIN_STATEMENT_TIMEOUT_MS } from '../src/worker/run-worker.js';
import { sweepStagedStreams } from '../src/drain/sweep.js';
import { drainBeforeStop } from '../src/drain/drain-runner.js';
import { sluiceTaskList } from './index.js';


export interface SluiceTasksOptions {
  /** For sluice's dedicated connections (and migrations); default: DATABASE_URL. */
  readonly connectionString?: string;
  /** sluice settings as flags (flushers, drainers, flush sizes, worker id…); the environment fills the rest. */
  readonly flags?: ConfigFlags;
  readonly env?: Readonly<Record<string, string | undefined>>;
  readonly log?: Logger;
}

export interface SluiceTasks {
  /** Task identifier → graphile-worker task; spread it into your run()'s taskList. */
  readonly taskList: TaskList;
  /** sluice's schedules, in graphile-worker's crontab format; append them to yours. */
  readonly crontab: string;
  /** Flush what is buffered, deregister, close sluice's own connections. Safe to call more than once. */
  close(): Promise<void>;
}

/**
 * A pg.Pool look-alike over the host worker's pool: sluice's control queries
 * (stream lookups, kicks, sweeps, prunes) borrow a host connection per query.
 */
function poolOverHelpers(withPgClient: WithPgClient): pg.Pool {
  const adapter = {
    query: (text: string, values?: unknown[]) => withPgClient((client) => client.query(text, values)),
    // A held client: graphile-worker's callback style, given back when the caller calls release().
    // A proxy, not a copy, so the client's own state stays on the client.
    connect: () =>
      new Promise((resolve, reject) => {
        withPgClient(
          (client) =>
            new Promise<void>((done) => {
              resolve(
                new Proxy(client, {
                  get: (target, prop) => {
                    if (prop === 'release') return () => done();
                    const value = Reflect.get(target, prop, target) as unknown;
                    return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
                  },
                }),
              );
            }),
        ).catch(reject);
      }),
  };
  return adapter as unknown as pg.Pool;
}

interface LiveContext {
  readonly ctx: WorkerContext;
  readonly stop: () => Promise<void>;
}

async function openContext(config: SluiceConfig, connectionString: string, log: Logger, helpers: JobHelpers): Promise<LiveContext> {
  const workerId = config.workerId;
  const pool = poolOverHelpers(helpers.withPgClient);
  if (config.migrate) await migrateDatabase(connectionString, log);
  const plan = { concurrency: 0, pool: 0, flushers: config.flushers, drainers: config.drainers, total: config.flushers + config.drainers };
  // Under --budget-scope cluster the dedicated connections carry the claim (`…/b<n>`) and are opened
  // before the check, so other databases see this budget before it is checked (see worker-registry.ts).
  const claim = config.budgetScope === 'cluster' ? plan.total : undefined;
  const connections = (role: string, n: number, timeout?: number) =>
    new ConnectionSet(Array.from({ length: n }, (_, i) => new DedicatedConnection(connectionString, applicationName(workerId, `${role}-${i}`, claim), log, timeout)));
  const flushers = connections('flush', config.flushers);
  const drainers = connections('drain', config.drainers, DRAIN_STATEMENT_TIMEOUT_MS);
  try {
    await Promise.all([...flushers.connections, ...drainers.connections].map((c) => c.get()));
    await helpers.withPgClient((client) =>
      registerWorker(client as pg.PoolClient, {
        workerId,
        budget: plan.total,
        plan,
        reserve: config.reserve,
        heartbeatMs: config.heartbeatMs,
        staleAfterMs: config.staleAfterMs,
        scope: config.budgetScope,
      }),
    );
  } catch (err) {
    await Promise.all([flushers.closeAll(), drainers.closeAll()]);
    throw err;
  }
  const shutdown = new AbortController();
  const kicker = new DrainKicker((text, values) => pool.query(text, values), config.drainers || DRAINERS_DEFAULT, log);
  const ingest = new IngestHub({ pool, flushers, kicker, config, log, source: 'sql' });
  const ctx: WorkerContext = { workerId, config, log, pool, ingest, drainers, kicker, shutdownSignal: shutdown.signal };
  // The same heartbeat loop as `sluice worker`: heartbeats, dead workers' jobs released, the crash
  // sentinel checked (staged rows lost in a Postgres crash recorded), drains kicked after a reconnect.
  const heartbeats = new HeartbeatLoop({
    pool,
    workerId,
    heartbeatMs: config.heartbeatMs,
    staleAfterMs: config.staleAfterMs,
    log,
    stats: async () => ({ ingest: await ingest.stats() }),
    onReconnect: async () => void (await sweepStagedStreams(pool, kicker)),
    unref: true, // the host's worker decides when the process ends
  });
  await heartbeats.recover().catch((err: Error) => log.warn({ err: err.message }, 'sluice tasks: start-up recovery check failed; retried at each heartbeat'));
  heartbeats.start();
  log.info({ worker: workerId, dedicated_connections: plan.total, flushers: plan.flushers, drainers: plan.drainers }, 'sluice tasks: started inside graphile-worker');
  const stop = async () => {
    shutdown.abort();
    await heartbeats.stop();
    const staged = ingest.streams();
    await ingest.close();
    await kicker.close();
    // What this process staged, drained now rather than at the host's next run (`--once` ends before a late kick).
    const final = await drainBeforeStop(ctx, pool, staged);
    if (final.moved > 0 || final.left.length > 0) {
      log.info({ worker: workerId, rows: final.moved, streams_left_staged: final.left }, 'sluice tasks: drained what was staged before stopping');
    }
    await deregisterWorker(pool, workerId).catch((err: Error) => log.warn({ err: err.message }, 'sluice tasks: could not deregister'));
    await Promise.all([flushers.closeAll(), drainers.closeAll()]);
    log.info({ worker: workerId }, 'sluice tasks: stopped');
  };
  return { ctx, stop };
}

/** sluice's tasks for your own graphile-worker, each building the shared sluice context on first use. */
export function createSluiceTasks(options: SluiceTasksOptions = {}): SluiceTasks {
  const env = options.env ?? process.env;
  let config: SluiceConfig | undefined;
  const configOf = () => (config ??= loadConfig(options.flags ?? {}, env, { logLevel: 'warn' }));
  let live: Promise<LiveContext> | undefined;
  let closed = false;

  const contextFor = (helpers: JobHelpers): Promise<WorkerContext> => {
    if (closed) return Promise.reject(new Error('sluice tasks: closed (the worker is shutting down)'));
    live ??= (async () => {
      const cfg = configOf();
      const connectionString = options.connectionString ?? cfg.databaseUrl;
      if (!connectionString) {
        throw new ConfigError(
          'sluice tasks need a database for their dedicated connections: set DATABASE_URL or pass createSluiceTasks({ connectionString })',
        );
      }
      return openContext(cfg, connectionString, options.log ?? createLogger(cfg.logLevel), helpers);
    })();
    // A failed start (database down, over budget) is tried again by the next job.
    live.catch(() => (live = undefined));
    return live.then((l) => l.ctx);
  };

  const taskList: TaskList = {};
  for (const [identifier, spec] of Object.entries(sluiceTaskList as WorkerTaskList)) {
    let task: Task | undefined;
    taskList[identifier] = async (payload, helpers) => {
      const ctx = await contextFor(helpers);
      if (spec.needsDrainers && ctx.config.drainers === 0) {
        throw new Error(`${identifier}: this worker has no drain connections (drainers 0); run it where drainers > 0`);
      }
      task ??= spec.create(ctx);
      return task(payload, helpers);
    };
  }

  return {
    taskList,
    crontab: readFileSync(CRONTAB_FILE, 'utf8'),
    close: async () => {
      closed = true;
      const current = live;
      live = undefined;
      if (current) await (await current.catch(() => undefined))?.stop();
    },
  };
}

/** A graphile-config preset whose plugin closes `sluice`'s connections when the host worker shuts down gracefully. */
export function createSluicePreset(sluice: SluiceTasks): GraphileConfig.Preset {
  return {
    plugins: [
      {
        name: 'SluicePlugin',
        version: '0.1.0',
        worker: {
          middleware: {
            poolGracefulShutdown: async (next) => {
              try {
                return await next();
              } finally {
                await sluice.close();
              }
            },
          },
        },
      },
    ],
  };
}

/** The default instance: configured from the environment (DATABASE_URL, SLUICE_FLUSHERS, SLUICE_DRAINERS…). */
const defaultSluice = createSluiceTasks();
export const sluiceTasks: TaskList = defaultSluice.taskList;
export const sluiceCrontab: string = defaultSluice.crontab;
export const SluicePreset: GraphileConfig.Preset = createSluicePreset(defaultSluice);
/** Close the default instance's connections yourself when you do not use SluicePreset. */
export const closeSluiceTasks = (): Promise<void> => defaultSluice.close();
