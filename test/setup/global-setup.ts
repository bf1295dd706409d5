/**
 * One Postgres for the whole run, and a migrated template database each test
 * file clones (CREATE DATABASE … TEMPLATE) so files can run in parallel:
 *
 * - TEST_DATABASE_URL set      → that server (e.g. the machine's PostgreSQL 15);
 * - SLUICE_TEST_DOCKER=1       → a throwaway container via testcontainers;
 * - otherwise                  → an embedded Postgres in a temporary directory.
 */
import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import type { TestProject } from 'vitest/node';
import { removeEmbeddedHome, startEmbeddedServer } from '../../src/db/embedded-server.js';
import { migrateDatabase } from '../../src/db/migrate.js';
import { createLogger } from '../../src/logger.js';

declare module 'vitest' {
  export interface ProvidedContext {
    adminUrl: string;
    templateDatabase: string;
    serverLabel: string;
  }
}

function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${database}`;
  return u.toString();
}

export default async function setup(project: TestProject) {
  const log = createLogger('warn');
  const cleanups: Array<() => Promise<void>> = [];
  let adminUrl: string;
  let serverLabel: string;

  if (process.env.TEST_DATABASE_URL) {
    adminUrl = process.env.TEST_DATABASE_URL;
    serverLabel = 'TEST_DATABASE_URL';
  } else if (process.env.SLUICE_TEST_DOCKER === '1') {
    const { PostgreSqlContainer } = await import('@testcontainers/postgresql');
    const container = await new PostgreSqlContainer('postgres:16').withCommand(['postgres', '-c', 'max_connections=200']).start();
    adminUrl = container.getConnectionUri();
    serverLabel = 'testcontainers postgres:16';
    cleanups.push(async () => void (await container.stop()));
  } else {
    const home = await mkdtemp(path.join(os.tmpdir(), 'sluice-test-pg-'));
    const server = await startEmbeddedServer({ homeDir: home, log, database: 'postgres' });
    adminUrl = server.url;
    serverLabel = 'embedded';
    cleanups.push(async () => {
      await server.stop();
      await removeEmbeddedHome(home); // as root, also its cluster under /var/lib/sluice
    });
  }

  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  const version = (await admin.query<{ server_version: string }>('SHOW server_version')).rows[0]?.server_version;
  const templateDatabase = `sluice_tpl_${process.pid}_${Date.now().toString(36)}`;
  await admin.query(`CREATE DATABASE ${admin.escapeIdentifier(templateDatabase)}`);
  await migrateDatabase(withDatabase(adminUrl, templateDatabase), log);
  await admin.end();
  process.stderr.write(`[sluice tests] Postgres ${version} (${serverLabel}); template ${templateDatabase}\n`);

  project.provide('adminUrl', adminUrl);
  project.provide('templateDatabase', templateDatabase);
  project.provide('serverLabel', `${serverLabel} ${version}`);

  return async () => {
    const client = new pg.Client({ connectionString: adminUrl });
    await client.connect();
    await client.query(`DROP DATABASE IF EXISTS ${client.escapeIdentifier(templateDatabase)} WITH (FORCE)`).catch(() => undefined);
    await client.end();
    for (const cleanup of cleanups.reverse()) await cleanup();
  };
}
