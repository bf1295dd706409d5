/**
 * `sluice status` reports what is really in the database: staged rows and
 * their age before any worker runs, rejects, then after a worker drains:
 * nothing staged, the rows counted as durable in the last minute, and the
 * live worker with its declared budget. `sluice migrate` and migrateDatabase
 * are idempotent and record exactly the files in migrations/.
 */
import { randomBytes } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import pg from 'pg';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { migrateDatabase } from '../src/db/migrate.js';
import { createIngestor } from '../src/ingest/create-ingestor.js';
import { createLogger } from '../src/logger.js';
import { MIGRATIONS_DIR } from '../src/paths.js';
import { toSnakeJson, type JsonOf } from '../src/json-keys.js';
import type { StatusReport as StatusReportObject } from '../src/status/stream-status.js';
import { runCli } from './helpers/cli.js';
import { createTestDatabase, urlForDatabase } from './helpers/database.js';
import { durableIds, makeEvents, stagedCount } from './helpers/events.js';
import { waitFor } from './helpers/wait.js';
import { startWorker } from './helpers/worker.js';

const db = await createTestDatabase('status_cli');

/** `status --json` as printed: snake_case keys, dates as strings. */
type StatusReport = JsonOf<StatusReportObject>;

async function status(): Promise<StatusReport> {
  const result = await runCli(['status', '--json'], { env: { DATABASE_URL: db.url } });
  expect(result.stderr).toBe('');
  expect(result.code).toBe(0);
  return JSON.parse(result.stdout) as StatusReport;
}

function streamOf(report: StatusReport, name = 'events') {
  const s = report.streams.find((x) => x.stream === name);
  expect(s, `stream ${name} in ${JSON.stringify(report.streams.map((x) => x.stream))}`).toBeDefined();
  return s as StatusReport['streams'][number];
}

/** Empty databases (not cloned from the migrated template), dropped after the file. */
const emptyDatabases: string[] = [];
async function createEmptyDatabase(): Promise<string> {
  const name = `sluice_t_status_empty_${randomBytes(3).toString('hex')}`;
  const admin = new pg.Client({ connectionString: inject('adminUrl') });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${admin.escapeIdentifier(name)}`);
  } finally {
    await admin.end();
  }
  emptyDatabases.push(name);
  return urlForDatabase(inject('adminUrl'), name);
}
afterAll(async () => {
  const admin = new pg.Client({ connectionString: inject('adminUrl') });
  await admin.connect();
  for (const name of emptyDatabases) await admin.query(`DROP DATABASE IF EXISTS ${admin.escapeIdentifier(name)} WITH (FORCE)`);
  await admin.end();
});

async function migrationFiles(): Promise<string[]> {
  return (await readdir(MIGRATIONS_DIR)).filter((f) => f.endsWith('.sql')).sort();
}

describe('sluice status', () => {
  const { events, unique } = makeEvents(1_500, 11);
  const invalid = [
    { occurred_at: new Date().toISOString() }, // missing_event_id
    { event_id: '00000000-0000-4000-8000-000000000001', occurred_at: 'not a time' }, // invalid_occurred_at
    'not an object',
  ];

  it('before any worker runs: staged rows equal what was inserted, with a positive age; rejects counted', async () => {
    const ingestor = await createIngestor({ connectionString: db.url, stream: 'events', ack: 'staged', flushRows: 400 });
    const receipt = await ingestor.ingest(events);
    const bad = await ingestor.ingest(invalid);
    await ingestor.close();
    expect(receipt).toMatchObject({ accepted: events.length, rejected: 0 });
    expect(bad).toMatchObject({ accepted: 0, rejected: invalid.length });
    // Staging keeps re-sends until the drain collapses them.
    expect(await stagedCount(db)).toBe(events.length);

    const report = await status();
    const s = streamOf(report);
    expect(s.staged).toBe(events.length);
    expect(s.oldest_staged_age_s).toBeGreaterThan(0);
    expect(s.durable_last_minute).toBe(0);
    expect(s.rejects_total).toBe(invalid.length);
    expect(s.rejects_last_hour).toBe(invalid.length);
    expect(report.workers.filter((w) => w.live)).toEqual([]);
    expect(Number.isNaN(Date.parse(report.taken_at))).toBe(false);
  });

  it('after a worker drains: nothing staged, durable rows in the last minute, the live worker and its budget', async () => {
    const worker = await startWorker(db, { maxConnections: 12, concurrency: 2, drainers: 1, flushers: 1 });
    await waitFor(
      async () => ({ staged: await stagedCount(db), durable: (await durableIds(db)).rows }),
      (x) => x.staged === 0 && x.durable === unique,
      { what: 'events drained', timeoutMs: 45_000 },
    );
    const drained = (await durableIds(db)).rows;
    expect(drained).toBe(unique);

    const report = await status();
    const s = streamOf(report);
    expect(s.staged).toBe(0);
    expect(s.oldest_staged_age_s).toBe(0);
    expect(s.durable_last_minute).toBeGreaterThanOrEqual(drained);
    expect(s.duplicates_last_minute).toBe(events.length - unique);
    expect(s.rejects_total).toBe(invalid.length);
    expect(s.partitions).toBeGreaterThan(0);

    const live = report.workers.filter((w) => w.live);
    expect(live.map((w) => w.id)).toEqual([worker.id]);
    const w = live[0];
    expect(w?.budget).toBe(12);
    expect(w?.plan).toEqual(JSON.parse(toSnakeJson(worker.plan)));
    expect(w?.pid).toBe(process.pid);
    expect(w?.connections).toBeGreaterThan(0);
    expect(w?.connections).toBeLessThanOrEqual(12);
  });

  it('human output shows the stream, its column headers and the live worker', async () => {
    const result = await runCli(['status'], { env: { DATABASE_URL: db.url } });
    expect(result.code).toBe(0);
    const lines = result.stdout.split('\n');
    const header = lines.find((l) => l.startsWith('stream'));
    expect(header, result.stdout).toBeDefined();
    for (const column of ['stream', 'staged', 'oldest staged', 'durable/min', 'dups/min', 'partitions', 'rejects/h', 'rejects']) {
      expect(header).toContain(column);
    }
    expect(lines.some((l) => /^events\s/.test(l))).toBe(true);
    const workerHeader = lines.find((l) => l.startsWith('worker'));
    expect(workerHeader).toBeDefined();
    for (const column of ['worker', 'host', 'pid', 'budget', 'plan', 'connections', 'heartbeat']) expect(workerHeader).toContain(column);
    expect(result.stdout).toMatch(/^test-[0-9a-f]{6}\s/m);
  });
});

describe('sluice migrate', () => {
  it('applies every migration once, then says the schema is up to date (exit 0 both times)', async () => {
    const url = await createEmptyDatabase();
    const files = await migrationFiles();
    expect(files.length).toBeGreaterThan(0);

    const first = await runCli(['migrate'], { env: { DATABASE_URL: url } });
    expect(first.code).toBe(0);
    expect(first.stderr).toContain(`applied ${files.length} migration(s): ${files.join(', ')}`);

    const second = await runCli(['migrate'], { env: { DATABASE_URL: url } });
    expect(second.code).toBe(0);
    expect(second.stderr).toContain('schema is up to date');
    expect(second.stderr).not.toContain('applied');

    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      const streams = await client.query<{ name: string }>('SELECT name FROM sluice.streams');
      expect(streams.rows.map((r) => r.name)).toEqual(['events']);
      const addJob = await client.query(`SELECT to_regproc('graphile_worker.add_job') IS NOT NULL AS ok`);
      expect(addJob.rows[0]?.ok).toBe(true);
    } finally {
      await client.end();
    }
  });

  it('migrateDatabase twice: the ledger holds exactly the migration files plus the bootstrap row', async () => {
    const url = await createEmptyDatabase();
    const files = await migrationFiles();
    const log = createLogger('silent');
    expect((await migrateDatabase(url, log)).applied).toEqual(files);
    expect((await migrateDatabase(url, log)).applied).toEqual([]);

    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      const { rows } = await client.query<{ id: number; name: string }>('SELECT id, name FROM sluice.migrations ORDER BY id');
      expect(rows).toHaveLength(files.length + 1);
      const [bootstrap, ...applied] = rows;
      expect(bootstrap?.id).toBe(0);
      expect(bootstrap?.name).toMatch(/create-migrations-table/);
      // postgres-migrations records NNNNN_name.sql as id NNNNN, name "name".
      expect(applied.map((r) => [r.id, r.name])).toEqual(
        files.map((f) => [Number.parseInt(f, 10), f.replace(/^\d+_/, '').replace(/\.sql$/, '')]),
      );
      // The ledger lives in schema sluice, not in public.
      const stray = await client.query(`SELECT to_regclass('public.migrations') IS NULL AS absent`);
      expect(stray.rows[0]?.absent).toBe(true);
    } finally {
      await client.end();
    }
  });

  it('migrateDatabase on an already migrated database applies nothing', async () => {
    expect((await migrateDatabase(db.url, createLogger('silent'))).applied).toEqual([]);
  });
});
