/**
 * A database per test file, cloned from the migrated template. Dropped after
 * the file when every test passed; kept (and named on stderr) when one failed,
 * so the data can be inspected.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, inject } from 'vitest';
import { stopAllWorkers } from './worker.js';

export interface TestDatabase {
  readonly name: string;
  readonly url: string;
  /** A small pool for assertions (application_name sluice-test). */
  readonly pool: pg.Pool;
  query<R extends pg.QueryResultRow = pg.QueryResultRow>(text: string, values?: unknown[]): Promise<pg.QueryResult<R>>;
}

export function urlForDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${database}`;
  return u.toString();
}

async function admin<T>(fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: inject('adminUrl') });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/** Create this file's database; call at module level or in beforeAll. */
export async function createTestDatabase(label: string): Promise<TestDatabase> {
  const name = `sluice_t_${label.replace(/[^a-z0-9_]/gi, '_').toLowerCase().slice(0, 30)}_${randomBytes(3).toString('hex')}`;
  const template = inject('templateDatabase');
  await admin((c) => c.query(`CREATE DATABASE ${c.escapeIdentifier(name)} TEMPLATE ${c.escapeIdentifier(template)}`));
  const url = urlForDatabase(inject('adminUrl'), name);
  const pool = new pg.Pool({ connectionString: url, max: 4, application_name: 'sluice-test' });
  pool.on('error', () => undefined);
  const db: TestDatabase = { name, url, pool, query: (text, values) => pool.query(text, values) };
  // vitest passes the suite second; its first argument must be destructured.
  // eslint-disable-next-line no-empty-pattern
  afterAll(async ({}, suite) => {
    // Workers first: dropping the database under them would kill their in-flight queries.
    await stopAllWorkers();
    await pool.end();
    const failed = (suite as { tasks?: Array<{ result?: { state?: string } }> }).tasks?.some((t) => t.result?.state === 'fail');
    if (failed) {
      process.stderr.write(`[sluice tests] kept database ${name} for inspection\n`);
      return;
    }
    await admin((c) => c.query(`DROP DATABASE IF EXISTS ${c.escapeIdentifier(name)} WITH (FORCE)`));
  });
  return db;
}

/**
 * Sessions of their own on a test database (a held lock, an open transaction, a
 * second refresher): `connect(applicationName?)` opens one, all are ended after the file.
 */
export function sessionClients(db: TestDatabase, defaultApplicationName: string): (applicationName?: string) => Promise<pg.Client> {
  const clients: pg.Client[] = [];
  afterAll(async () => {
    await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
  });
  return async (applicationName = defaultApplicationName) => {
    const client = new pg.Client({ connectionString: db.url, application_name: applicationName });
    client.on('error', () => undefined);
    await client.connect();
    clients.push(client);
    return client;
  };
}
