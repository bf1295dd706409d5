import type { CommandModule } from 'yargs';
import type { ConfigFlags } from '../config.js';
import { runWorker } from '../worker/run-worker.js';
import { globalOptions, keepRunningOnUnhandledRejections, say, withRuntime, type GlobalArgs } from './runtime.js';

type WorkerArgs = GlobalArgs & ConfigFlags;

export const workerCommand: CommandModule<object, WorkerArgs> = {
  command: 'worker',
  describe: 'Run a worker: ingest and drain tasks, the crontab, inside a declared connection budget',
  builder: (y) =>
    globalOptions(y)
      .option('max-connections', { type: 'number', describe: 'Declared connection budget of this worker (default 16; $SLUICE_MAX_CONNECTIONS)' })
      .option('concurrency', { type: 'number', describe: 'graphile-worker job slots (default 8; $SLUICE_CONCURRENCY)' })
      .option('pool-size', { type: 'number', describe: 'graphile-worker pool connections (default concurrency + 1). sluice tasks rarely hold one, so many job slots can share a small pool' })
      .option('drainers', { type: 'number', describe: 'Parallel drainers, one dedicated connection each (default 2; 0 = ingest-only worker, others drain)' })
      .option('flushers', { type: 'number', describe: 'Dedicated COPY connections (default 1)' })
      .option('reserve', { type: 'number', describe: 'Connections left free for admins/migrations in the cluster check (default 10)' })
      .option('flush-rows', { type: 'number', describe: 'Flush a buffer at this many rows (default 5000)' })
      .option('flush-age-ms', { type: 'number', describe: 'Flush a buffer once its oldest row waited this long (default 50)' })
      .option('drain-batch-rows', { type: 'number', describe: "Rows per drain transaction (default: the stream's drain_batch_rows)" })
      .option('local-queue-size', { type: 'number', describe: 'graphile-worker localQueue size, jobs fetched per query (default max(32, 4×concurrency); 0 disables)' })
      .option('complete-job-batch-delay-ms', { type: 'number', describe: 'graphile-worker batched job completion delay in ms (default -1 = off, see docs/design.md)' })
      .option('worker-id', { type: 'string', describe: 'Id shown in sluice.workers and application_name (default host-pid-rand)' })
      .option('migrate', { type: 'boolean', describe: 'Migrate on start (default true; --no-migrate to skip)' }),
  handler: (argv) =>
    withRuntime(
      argv,
      async ({ config, log, db, signal }) => {
        const restore = keepRunningOnUnhandledRejections(log);
        const worker = await runWorker({ config, connectionString: db.url, log });
        say(`worker ${worker.id} running (${worker.plan.total} connections of a ${config.maxConnections} budget); Ctrl-C or SIGTERM stops it cleanly`);
        signal.addEventListener('abort', () => void worker.stop('signal'), { once: true });
        await worker.done.finally(restore);
        say(`worker ${worker.id} stopped`);
      },
      { logLevel: 'info' },
    ),
};
