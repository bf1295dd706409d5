/**
 * `sluice migrate`: sluice's numbered SQL files (postgres-migrations, which
 * checksums applied files and takes an advisory lock) and graphile-worker's
 * own schema. Idempotent: a second run applies nothing.
 */
import pg from 'pg';
import { migrate as runSqlMigrations } from 'postgres-migrations';
import { runMigrations as runWorkerMigrations } from 'graphile-worker';
import type { Logger } from '../logger.js';
import { MIGRATIONS_DIR } from '../paths.js';
import { toGraphileLogger } from '../graphile-logger.js';

// postgres-migrations keeps its ledger in an unqualified `migrations` table;
// creating it in schema sluice first keeps it out of the app's namespace.
const PREPARE_LEDGER = `
CREATE SCHEMA IF NOT EXISTS sluice;
CREATE TABLE IF NOT EXISTS sluice.migrations (
  id integer PRIMARY KEY,
  name varchar(100) UNIQUE NOT NULL,
  hash varchar(40) NOT NULL,
  executed_at timestamp DEFAULT current_timestamp
)`;

export interface MigrateResult {
  applied: string[];
}

/**
 * Migrate through a connection string, or through an existing pool (a worker
 * migrates on its own pool, so even start-up stays inside its budget).
 */
export async function migrateDatabase(target: string | pg.Pool, log: Logger): Promise<MigrateResult> {
  const own = typeof target === 'string' ? new pg.Client({ connectionString: target, application_name: 'sluice/migrate' }) : undefined;
  const client: pg.Client | pg.PoolClient = own ?? (await (target as pg.Pool).connect());
  let applied: string[];
  try {
    if (own) {
      own.on('error', () => undefined);
      await own.connect();
    }
    await client.query(PREPARE_LEDGER);
    await client.query('SET search_path TO sluice, public');
    try {
      const done = await runSqlMigrations({ client }, MIGRATIONS_DIR, {
        logger: (msg) => log.debug({ component: 'postgres-migrations' }, msg),
      });
      applied = done.filter((m) => m.id > 0).map((m) => m.fileName);
    } finally {
      await client.query('RESET search_path').catch(() => undefined);
    }
  } finally {
    if (own) await own.end().catch(() => undefined);
    else (client as pg.PoolClient).release();
  }
  await runWorkerMigrations(
    typeof target === 'string' ? { connectionString: target, logger: toGraphileLogger(log) } : { pgPool: target, logger: toGraphileLogger(log) },
  );
  if (applied.length) log.info({ applied }, 'migrate: applied migrations');
  else log.debug('migrate: schema is up to date');
  return { applied };
}
