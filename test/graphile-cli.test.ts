/**
 * sluice inside the `graphile-worker` command line (issue 18), set up exactly
 * as the README says: a graphile.config.mjs extending SluicePreset, and one
 * file per sluice task in the task directory re-exporting sluiceTasks. The
 * CLI's `--once` runs the ingest jobs and the drain jobs they kick, then exits;
 * the events are durable exactly once and sluice's dedicated connections are
 * closed and deregistered when graphile-worker shuts down.
 */
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { createTestDatabase } from './helpers/database.js';
import { distinctIds, durableIds, makeEvents, stagedCount } from './helpers/events.js';
import { waitFor } from './helpers/wait.js';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
// What `import … from 'sluice'` resolves to in an installed package (package.json "exports").
const SLUICE = pathToFileURL(path.join(REPO_ROOT, 'dist/src/index.js')).href;
const GRAPHILE_WORKER_CLI = path.join(REPO_ROOT, 'node_modules/graphile-worker/dist/cli.js');

const db = await createTestDatabase('graphile_cli');
const dirs: string[] = [];
afterAll(async () => Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true }))));

function runGraphileWorker(cwd: string, args: string[]): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [GRAPHILE_WORKER_CLI, ...args], {
      cwd,
      env: { ...process.env, DATABASE_URL: db.url, SLUICE_LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 90_000);
    child.on('error', reject);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    });
  });
}

/** A project folder as the README sets it up: graphile.config.mjs extending SluicePreset, one file per task. */
async function projectWithTasks(tasks: readonly string[]): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'sluice-gw-cli-'));
  dirs.push(dir);
  await mkdir(path.join(dir, 'tasks'));
  await writeFile(
    path.join(dir, 'graphile.config.mjs'),
    `import { SluicePreset } from ${JSON.stringify(SLUICE)};\n` +
      `export default { extends: [SluicePreset], worker: { concurrency: 2, taskDirectory: ${JSON.stringify(path.join(dir, 'tasks'))} } };\n`,
  );
  for (const task of tasks) {
    await writeFile(path.join(dir, 'tasks', `${task}.mjs`), `import { sluiceTasks } from ${JSON.stringify(SLUICE)};\nexport default sluiceTasks.${task};\n`);
  }
  return dir;
}

describe('the graphile-worker CLI with SluicePreset and sluice task files', () => {
  it('runs sluice_ingest and the drains it kicks with --once: every event durable once, sluice connections closed and deregistered', { timeout: 120_000 }, async () => {
    const dir = await projectWithTasks(['sluice_ingest', 'sluice_drain']);
    await db.query(`SELECT sluice.create_stream('gw_cli')`);
    const { events } = makeEvents(300, 41);
    for (let i = 0; i < events.length; i += 100) {
      await db.query(`SELECT graphile_worker.add_job('sluice_ingest', $1::json)`, [JSON.stringify({ stream: 'gw_cli', events: events.slice(i, i + 100) })]);
    }

    const run = await runGraphileWorker(dir, ['--once']);
    expect(run.code, run.out.slice(-3000)).toBe(0);

    expect(await stagedCount(db, 'gw_cli')).toBe(0);
    const durable = await durableIds(db, 'gw_cli');
    expect(durable.ids).toEqual(distinctIds(events));
    expect(durable.rows).toBe(durable.ids.size);
    // Every ingest job done, none failed. (A drain kick made while --once was winding down may wait for the
    // next run: the rows are already durable, so it finds nothing.)
    const left = await db.query<{ ingest_jobs: number; failed: number; workers: number }>(
      `SELECT (SELECT count(*)::int FROM graphile_worker.jobs WHERE task_identifier = 'sluice_ingest') AS ingest_jobs,
              (SELECT count(*)::int FROM graphile_worker.jobs WHERE last_error IS NOT NULL) AS failed,
              (SELECT count(*)::int FROM sluice.workers) AS workers`,
    );
    expect(left.rows[0]).toEqual({ ingest_jobs: 0, failed: 0, workers: 0 });
    // The process has exited, so its sockets are closed; a backend leaves pg_stat_activity a moment
    // later (it exits asynchronously). None may still be there after 10 s.
    const sessions = await waitFor(
      async () =>
        (
          await db.query<{ n: number }>(
            `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name LIKE 'sluice/%'`,
          )
        ).rows[0]!.n,
      (n) => n === 0,
      { timeoutMs: 10_000, what: 'no sluice/… session left in this database' },
    );
    expect(sessions).toBe(0);
  });

  it('a graceful stop drains what it staged: --once with no drain job run still leaves every event durable', { timeout: 120_000 }, async () => {
    // No sluice_drain task here: the drain jobs the flushes kick are never run by this
    // process, as when --once ends before the kick for its last flush is enqueued.
    const dir = await projectWithTasks(['sluice_ingest']);
    await db.query(`SELECT sluice.create_stream('gw_cli_stop')`);
    const { events } = makeEvents(500, 42);
    for (let i = 0; i < events.length; i += 100) {
      await db.query(`SELECT graphile_worker.add_job('sluice_ingest', $1::json)`, [JSON.stringify({ stream: 'gw_cli_stop', events: events.slice(i, i + 100) })]);
    }

    const run = await runGraphileWorker(dir, ['--once']);
    expect(run.code, run.out.slice(-3000)).toBe(0);

    const drainJobs = await db.query(`SELECT 1 FROM graphile_worker.jobs WHERE task_identifier = 'sluice_drain' AND key LIKE 'sluice_drain:gw_cli_stop:%'`);
    expect(drainJobs.rowCount, 'the kicked drain jobs are still queued: none ran').toBeGreaterThan(0);
    expect(await stagedCount(db, 'gw_cli_stop')).toBe(0);
    const durable = await durableIds(db, 'gw_cli_stop');
    expect(durable.ids).toEqual(distinctIds(events));
    expect(durable.rows).toBe(durable.ids.size);
  });

  it('the drain at stop keeps to its 3 s when another session blocks the durable table; the rows stay staged, not lost', { timeout: 120_000 }, async () => {
    const dir = await projectWithTasks(['sluice_ingest']);
    await db.query(`SELECT sluice.create_stream('gw_cli_blocked')`);
    const { events } = makeEvents(300, 43);
    for (let i = 0; i < events.length; i += 100) {
      await db.query(`SELECT graphile_worker.add_job('sluice_ingest', $1::json)`, [JSON.stringify({ stream: 'gw_cli_blocked', events: events.slice(i, i + 100) })]);
    }
    // SHARE blocks every INSERT into the durable table (and its partitions) until this transaction ends.
    const blocker = new pg.Client({ connectionString: db.url });
    await blocker.connect();
    try {
      await blocker.query('BEGIN');
      await blocker.query('LOCK TABLE sluice_data.gw_cli_blocked IN SHARE MODE');
      const started = Date.now();
      const run = await runGraphileWorker(dir, ['--once']);
      const tookMs = Date.now() - started;
      expect(run.code, run.out.slice(-3000)).toBe(0);
      // The drain's statement timeout is 60 s: only cancelling at the deadline keeps the stop this short.
      expect(tookMs).toBeLessThan(20_000);
      expect(await stagedCount(db, 'gw_cli_blocked')).toBe(events.length);
      // Its cancelled drain left no session waiting on the lock.
      const waiting = await waitFor(
        async () =>
          (await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name LIKE 'sluice/%'`)).rows[0]!.n,
        (n) => n === 0,
        { timeoutMs: 10_000, what: 'no sluice session left' },
      );
      expect(waiting).toBe(0);
    } finally {
      await blocker.query('ROLLBACK').catch(() => undefined);
      await blocker.end();
    }
    // Unblocked, the drain jobs the flushes kicked (still queued) move them, exactly once.
    const again = await runGraphileWorker(await projectWithTasks(['sluice_ingest', 'sluice_drain']), ['--once']);
    expect(again.code, again.out.slice(-3000)).toBe(0);
    expect(await stagedCount(db, 'gw_cli_blocked')).toBe(0);
    const durable = await durableIds(db, 'gw_cli_blocked');
    expect(durable.ids).toEqual(distinctIds(events));
    expect(durable.rows).toBe(durable.ids.size);
  });
});
