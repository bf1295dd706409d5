/** Start a real worker in-process against a test database. */
import { randomBytes } from 'node:crypto';
import { loadConfig, type ConfigFlags } from '../../src/config.js';
import { createLogger } from '../../src/logger.js';
import { runWorker, type WorkerHandle } from '../../src/worker/run-worker.js';
import { sluiceTaskList } from '../../tasks/index.js';
import type { TestDatabase } from './database.js';

const running = new Set<WorkerHandle>();

/** Stop every worker this file started (the database helper calls it before dropping the database). */
export async function stopAllWorkers(): Promise<void> {
  await Promise.all([...running].map((w) => w.stop('test finished').catch(() => undefined)));
}

export async function startWorker(db: TestDatabase, flags: ConfigFlags = {}): Promise<WorkerHandle> {
  const config = loadConfig(
    // Scope 'database' unless a test asks for the cluster-wide check: see cliEnv in cli.ts.
    { workerId: `test-${randomBytes(3).toString('hex')}`, migrate: false, budgetScope: 'database', ...flags },
    {},
    { logLevel: 'silent' },
  );
  const worker = await runWorker({ config, connectionString: db.url, log: createLogger(config.logLevel), tasks: sluiceTaskList });
  running.add(worker);
  void worker.done.finally(() => running.delete(worker)).catch(() => undefined);
  return worker;
}
