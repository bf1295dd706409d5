/**
 * Staged-acked events lost in a real Postgres crash leave a trace (issue 17,
 * defect 6): `pg_ctl restart -m immediate` on this file's own embedded server
 * makes crash recovery empty UNLOGGED staging; the next worker finds the
 * sentinel gone, records one sluice.staging_losses row (not one per worker),
 * with about how many rows staging held at the last look before the crash
 * (kept in a logged table), and `sluice status` and `sluice health` show it.
 * A clean restart records none.
 */
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.js';
import { startEmbeddedServer, type EmbeddedServer } from '../src/db/embedded-server.js';
import { migrateDatabase } from '../src/db/migrate.js';
import { createIngestor } from '../src/ingest/create-ingestor.js';
import { createLogger } from '../src/logger.js';
import { runWorker, type WorkerHandle } from '../src/worker/run-worker.js';
import { sluiceTaskList } from '../tasks/index.js';
import { runCli } from './helpers/cli.js';
import { immediateRestart } from './helpers/crash.js';
import { embeddedHomes } from './helpers/embedded.js';
import { makeEvents } from './helpers/events.js';
import { waitFor } from './helpers/wait.js';

const homes = embeddedHomes();
const log = createLogger(process.env.CRASH_LOG ? 'info' : 'silent');
let server: EmbeddedServer;
let home: string;

beforeAll(async () => {
  home = path.join(await homes.tempDir('crash'), 'home');
  homes.track(home);
  server = await startEmbeddedServer({ homeDir: home, log, database: 'sluice_crash' });
  await migrateDatabase(server.url, log);
}, 180_000);

afterAll(async () => {
  await server?.stop().catch(() => undefined);
  await homes.cleanUp();
});

async function query<R extends pg.QueryResultRow>(text: string, values?: unknown[]): Promise<R[]> {
  const c = new pg.Client({ connectionString: server.url });
  await c.connect();
  try {
    return (await c.query<R>(text, values)).rows;
  } finally {
    await c.end();
  }
}

async function worker(id: string): Promise<WorkerHandle> {
  const config = loadConfig({ workerId: id, migrate: false, drainers: 0, concurrency: 2, flushers: 1 }, {}, { logLevel: 'silent' });
  return runWorker({ config, connectionString: server.url, log, tasks: sluiceTaskList });
}

const lossCount = async () => (await query<{ n: number }>(`SELECT count(*)::int AS n FROM sluice.staging_losses`))[0]!.n;
const stagedCount = async () => (await query<{ n: number }>(`SELECT count(*)::int AS n FROM sluice_staging.crashy`))[0]!.n;

describe('staging emptied by a Postgres crash', () => {
  it('is detected, recorded once, and shown by sluice status and sluice health; a clean restart records nothing', { timeout: 180_000 }, async () => {
    await query(`SELECT sluice.create_stream('crashy')`);
    // A worker arms the sentinel (no drainers: the rows stay staged).
    const first = await worker('crash-arm');
    await first.stop();
    const ingestor = await createIngestor({ connectionString: server.url, stream: 'crashy', ack: 'staged', flushRows: 100, flushAgeMs: 20 });
    for (const e of makeEvents(250, 5, {}, 0).events) await ingestor.push(e);
    await ingestor.close();
    expect(await stagedCount()).toBe(250);

    // A clean restart keeps unlogged tables: nothing lost, nothing recorded.
    await server.stop();
    server = await startEmbeddedServer({ homeDir: home, log, database: 'sluice_crash' });
    const clean = await worker('crash-clean');
    // Its sentinel checks (at start, then every heartbeat) also note what staging holds, in a logged table that
    // outlives a crash (at most one write per 2 s: the arming worker's look, before the ingest, may be that recent).
    const watched = await waitFor(
      () => query<{ stream: string; staged_rows: number }>(`SELECT stream, staged_rows::int AS staged_rows FROM sluice.staging_watch ORDER BY stream`),
      (rows) => rows.find((r) => r.stream === 'crashy')?.staged_rows === 250,
      { what: 'staging_watch to see the 250 staged rows', timeoutMs: 30_000, intervalMs: 200 },
    );
    await clean.stop();
    expect(watched).toEqual([
      { stream: 'crashy', staged_rows: 250 },
      { stream: 'events', staged_rows: 0 }, // the default stream, empty
    ]);
    expect(await stagedCount()).toBe(250);
    expect(await lossCount()).toBe(0);

    await immediateRestart(server, log);
    expect(await stagedCount()).toBe(0);
    // Two workers start after the crash: one record between them.
    const [a, b] = await Promise.all([worker('crash-a'), worker('crash-b')]);
    await Promise.all([a.stop(), b.stop()]);
    expect(await lossCount()).toBe(1);
    // Counted where it can be: what staging held at the last look before the crash, per stream.
    const [loss] = await query<{ staged_estimate: string; estimate_by_stream: Record<string, number>; before_crash: boolean }>(
      `SELECT staged_estimate, estimate_by_stream, estimate_observed_at < server_started_at AS before_crash FROM sluice.staging_losses`,
    );
    expect(loss).toEqual({ staged_estimate: '250', estimate_by_stream: { crashy: 250, events: 0 }, before_crash: true });

    const status = await runCli(['status', '--json'], { env: { DATABASE_URL: server.url }, timeoutMs: 60_000 });
    expect(status.code, status.stderr).toBe(0);
    expect((JSON.parse(status.stdout) as { staging_losses: { count: number; last_staged_estimate: number } }).staging_losses).toMatchObject({
      count: 1,
      last_staged_estimate: 250,
    });
    const text = await runCli(['status'], { env: { DATABASE_URL: server.url }, timeoutMs: 60_000 });
    expect(text.stdout).toMatch(/STAGING LOST IN A CRASH: 1 time/);
    expect(text.stdout).toContain('about 250 staged row(s) by the last look before it');
    const health = await runCli(['health', '--json'], { env: { DATABASE_URL: server.url }, timeoutMs: 60_000 });
    const findings = (JSON.parse(health.stdout) as { findings: Array<{ check: string; severity: string; message: string }> }).findings;
    const lossFinding = findings.find((f) => f.check === 'pipeline.staging_losses');
    expect(lossFinding?.severity).toBe('critical');
    expect(lossFinding?.message).toContain('about 250 staged row(s)');
  });
});
