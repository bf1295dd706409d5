/**
 * Chaos: an immediate Postgres restart (pg_ctl restart -m immediate: crash
 * recovery) under load, on this file's own embedded server, with a real
 * `sluice worker` process and producers through the Ingestor (ack durable and
 * ack staged) and SQL add_job. Afterwards: every durable-acked event durable
 * exactly once; staged-acked events durable except those crash recovery took
 * with UNLOGGED staging — and then the loss is reported (sluice.staging_losses);
 * no duplicates; no job left locked; staging drains to zero without help.
 */
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEmbeddedServer, type EmbeddedServer } from '../../src/db/embedded-server.js';
import { migrateDatabase } from '../../src/db/migrate.js';
import { createIngestor, type ClientIngestor } from '../../src/ingest/create-ingestor.js';
import { createLogger } from '../../src/logger.js';
import { spawnCli, type SpawnedCli } from '../helpers/cli.js';
import { immediateRestart } from '../helpers/crash.js';
import { embeddedHomes } from '../helpers/embedded.js';
import { makeEvents } from '../helpers/events.js';
import { waitFor } from '../helpers/wait.js';

const STREAM = 'chaos_restart';
const homes = embeddedHomes();
const log = createLogger('silent');
let server: EmbeddedServer;
let admin: pg.Pool;
const workers: SpawnedCli[] = [];

beforeAll(async () => {
  const home = path.join(await homes.tempDir('chaos-restart'), 'home');
  homes.track(home);
  server = await startEmbeddedServer({ homeDir: home, log, database: 'sluice_chaos' });
  await migrateDatabase(server.url, log);
  admin = new pg.Pool({ connectionString: server.url, max: 2 });
  admin.on('error', () => undefined);
}, 180_000);

afterAll(async () => {
  for (const w of workers) if (w.child.exitCode === null && w.child.signalCode === null) w.child.kill('SIGKILL');
  await admin?.end().catch(() => undefined);
  await server?.stop().catch(() => undefined);
  await homes.cleanUp();
});

const count = async (sql: string) => {
  for (;;) {
    try {
      return (await admin.query<{ n: number }>(sql)).rows[0]?.n ?? 0;
    } catch {
      await new Promise((r) => setTimeout(r, 200)); // Postgres restarting
    }
  }
};

/** Pushes batches until stopped; a batch whose flush failed (Postgres away) is not acknowledged, and a fresh Ingestor takes over. */
function producer(ack: 'durable' | 'staged', seed: number) {
  const acked: string[] = [];
  let stopped = false;
  let round = 0;
  const done = (async () => {
    let ingestor: ClientIngestor | undefined;
    while (!stopped) {
      const { events } = makeEvents(100, seed * 100_000 + round++, {}, 0);
      try {
        ingestor ??= await createIngestor({ connectionString: server.url, stream: STREAM, ack, flushRows: 100, flushAgeMs: 50 });
        for (const e of events) await ingestor.push(e);
        await ingestor.flush();
        acked.push(...events.map((e) => e.event_id));
      } catch {
        await ingestor?.close().catch(() => undefined);
        ingestor = undefined;
        await new Promise((r) => setTimeout(r, 200));
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    await ingestor?.close().catch(() => undefined);
  })();
  return { acked, stop: async () => ((stopped = true), await done) };
}

describe('chaos: immediate Postgres restart under load', () => {
  it('loses no durable-acked event, reports the staged-acked ones crash recovery took, leaves no job locked', async () => {
    await admin.query(`SELECT sluice.create_stream($1)`, [STREAM]);
    const worker = spawnCli(['worker', '--worker-id', 'chaos-r', '--no-migrate', '--concurrency', '4', '--drainers', '1'], {
      DATABASE_URL: server.url,
      SLUICE_LOG_LEVEL: 'info',
    });
    workers.push(worker);
    await worker.waitForOutput(/worker: started/, 60_000);
    const durable = producer('durable', 11);
    const staged = producer('staged', 12);
    await new Promise((r) => setTimeout(r, 4000));
    const crashedAt = Date.now();
    await immediateRestart(server, log);
    const backAt = Date.now();
    await new Promise((r) => setTimeout(r, 4000));
    await Promise.all([durable.stop(), staged.stop()]);
    await waitFor(() => count(`SELECT count(*)::int AS n FROM sluice_staging.${STREAM}`), (n) => n === 0, { what: 'staging drained', timeoutMs: 120_000 });
    const drainedMs = Date.now() - backAt;
    await waitFor(() => count(`SELECT count(*)::int AS n FROM graphile_worker.jobs WHERE task_identifier = 'sluice_ingest'`), (n) => n === 0, {
      what: 'ingest jobs done',
      timeoutMs: 60_000,
    });
    worker.child.kill('SIGTERM');
    await worker.exited;
    const locked = await count(`SELECT count(*)::int AS n FROM graphile_worker._private_jobs WHERE locked_by IS NOT NULL`);
    const losses = await count(`SELECT count(*)::int AS n FROM sluice.staging_losses`);
    // The loss as sluice estimated it (rows staged at the last look before the crash), beside the producers' count.
    const estimated = await count(`SELECT coalesce(sum(staged_estimate), -1)::int AS n FROM sluice.staging_losses`);
    const estimate = estimated < 0 ? 'unknown (no look before the crash)' : `about ${estimated}`;
    const { rows } = await admin.query<{ event_id: string; n: number }>(`SELECT event_id::text, count(*)::int AS n FROM sluice_data.${STREAM} GROUP BY 1`);
    const found = new Map(rows.map((r) => [r.event_id, r.n]));
    const missingDurable = durable.acked.filter((id) => !found.has(id)).length;
    const missingStaged = staged.acked.filter((id) => !found.has(id)).length;
    const duplicates = rows.filter((r) => r.n > 1).length;
    process.stderr.write(
      `[chaos] postgres immediate restarts 1 (down ${backAt - crashedAt} ms); events acknowledged ${durable.acked.length + staged.acked.length} ` +
        `(durable ${durable.acked.length}, staged ${staged.acked.length}); missing durable-acked ${missingDurable}; ` +
        `staged-acked lost in the crash ${missingStaged} (staging_losses recorded ${losses}, estimating ${estimate} staged rows); duplicates ${duplicates}; jobs left locked ${locked}; ` +
        `staging drained ${drainedMs} ms after Postgres was back\n`,
    );
    expect(missingDurable).toBe(0);
    expect(duplicates).toBe(0);
    expect(locked).toBe(0);
    // A crash that took staged-acked events must have been reported.
    if (missingStaged > 0) expect(losses).toBeGreaterThan(0);
    expect(losses).toBeLessThanOrEqual(1);
  });
});
