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
import { toGraphileLogger } from '../worker/graphile-logger.js';

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

export async function migrateDatabase(connectionString: string, log: Logger): Promise<MigrateResult> {
  const client = new pg.Client({ connectionString, application_name: 'sluice/migrate' });
  client.on('error', () => undefined);
  await client.connect();
  let applied: string[];
  try {
    await client.query(PREPARE_LEDGER);
    await client.query('SET search_path TO sluice, public');
    const done = await runSqlMigrations({ client }, MIGRATIONS_DIR, {
      logger: (msg) => log.debug({ component: 'postgres-migrations' }, msg),
    });
    applied = done.filter((m) => m.id > 0).map((m) => m.fileName);
  } finally {
    await client.end().catch(() => undefined);
  }
  await runWorkerMigrations({ connectionString, logger: toGraphileLogger(log) });
  if (applied.length) log.info({ applied }, 'migrate: applied migrations');
  else log.debug('migrate: schema is up to date');
  return { applied };
}
