/**
 * What a worker logs (a real `sluice worker` child process, its stderr read as pino JSON lines):
 * - a job sluice fails for good (unknown stream, malformed payload, a batch of those, an unknown
 *   matview) is one
 *   warning saying it will not be retried, with no error line, no stack and none of
 *   graphile-worker's "attempt 1 of 25"; the job keeps attempts = max_attempts (no retry);
 * - an unexpected error is still graphile-worker's error line, with its stack, and is retried;
 * - a pool below the job slots (--pool-size) is said once by sluice, at info, instead of
 *   graphile-worker's "smaller than concurrency" warning; with --tasks it stays a warning.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createTestDatabase } from './helpers/database.js';
import { spawnCli, type SpawnedCli } from './helpers/cli.js';
import { waitFor } from './helpers/wait.js';
import { tempFolders } from './helpers/temp.js';

const db = await createTestDatabase('worker_logs');
const tempFolder = tempFolders();
const children: SpawnedCli[] = [];
afterAll(async () => {
  for (const c of children) if (c.child.exitCode === null) c.child.kill('SIGTERM');
  await Promise.all(children.map((c) => c.exited));
});

/** graphile-worker's own wording, from node_modules/graphile-worker/dist (lib.js, worker.js). */
const GRAPHILE_POOL_WARNING = /smaller than concurrency/;
const GRAPHILE_FAILED_TASK = /Failed task/;

interface LogLine {
  level: number;
  msg: string;
  [key: string]: unknown;
}

/** stderr as pino JSON lines (not a terminal: no pino-pretty); any other line fails the test. */
function logLines(stderr: string): LogLine[] {
  return stderr
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => {
      try {
        return JSON.parse(l) as LogLine;
      } catch {
        throw new Error(`not a JSON log line: ${l}`);
      }
    });
}

const WARN = 40;
const ERROR = 50;

async function startWorker(args: string[]): Promise<SpawnedCli> {
  const worker = spawnCli(['worker', '-c', db.url, '--no-migrate', ...args], { SLUICE_LOG_LEVEL: 'info' });
  children.push(worker);
  await worker.waitForOutput(/worker: started/);
  return worker;
}

async function stop(worker: SpawnedCli): Promise<LogLine[]> {
  worker.child.kill('SIGTERM');
  const result = await worker.exited;
  expect(result.code).toBe(0);
  return logLines(result.stderr);
}

async function addJob(task: string, payload: unknown, maxAttempts = 25): Promise<string> {
  const { rows } = await db.query<{ id: string }>(`SELECT (graphile_worker.add_job($1, $2::json, max_attempts => $3)).id::text AS id`, [
    task,
    JSON.stringify(payload),
    maxAttempts,
  ]);
  return rows[0]!.id;
}

interface JobRow {
  id: string;
  attempts: number;
  max_attempts: number;
  last_error: string | null;
  locked_at: Date | null;
}

async function failedJobs(ids: string[]): Promise<JobRow[]> {
  return waitFor(
    async () =>
      (
        await db.query<JobRow>(
          `SELECT id::text, attempts, max_attempts, last_error, locked_at FROM graphile_worker.jobs WHERE id = ANY ($1::bigint[]) ORDER BY id`,
          [ids],
        )
      ).rows,
    (rows) => rows.length === ids.length && rows.every((r) => r.last_error !== null && r.locked_at === null),
    { what: `jobs ${ids.join(', ')} failed` },
  );
}

const event = () => ({ event_id: crypto.randomUUID(), occurred_at: new Date().toISOString() });

describe('sluice worker logs', () => {
  it('a planned small pool: sluice says so at info; graphile-worker\'s pool warning never appears', async () => {
    const worker = await startWorker(['--worker-id', 'logs-pool', '--pool-size', '2', '--concurrency', '8', '--max-connections', '8']);
    const lines = await stop(worker);
    expect(lines.filter((l) => GRAPHILE_POOL_WARNING.test(l.msg))).toEqual([]);
    const notice = lines.filter((l) => /pool of 2 connections for 8 job slots/.test(l.msg));
    expect(notice).toHaveLength(1);
    expect(notice[0]).toMatchObject({ level: 30, pool: 2, concurrency: 8, budget: 8 });
    expect(notice[0]!.msg).toMatch(/as planned \(--pool-size\)/);
    // Nothing about the pool at warn or above.
    expect(lines.filter((l) => l.level >= WARN && /pool/i.test(l.msg))).toEqual([]);
  });

  it('permanent failures: one warning each, "will not be retried", no error line, no stack; attempts = max_attempts', async () => {
    await db.query(`SELECT sluice.create_stream('logs_stream')`);
    const worker = await startWorker(['--worker-id', 'logs-permanent', '--max-connections', '8']);
    const unknownStream = await addJob('sluice_ingest', { stream: 'no_such_stream', events: [event()] });
    const badPayload = await addJob('sluice_ingest', { stream: 'logs_stream', events: 5 });
    const badBatch = await addJob('sluice_ingest', [
      { stream: 'no_such_stream', events: [event()] },
      { stream: 'logs_stream', events: [event()] },
      { events: [] },
    ]);
    const unknownView = await addJob('sluice_refresh_matview', { name: 'no_such_view' });
    const ids = [unknownStream, badPayload, badBatch, unknownView];
    const jobs = await failedJobs(ids);
    // The worker logs the failure right after failing the job: give the line a moment to be written.
    await worker.waitForOutput(new RegExp(`job ${badBatch} failed and will not be retried`));
    await worker.waitForOutput(new RegExp(`job ${unknownStream} failed and will not be retried`));
    await worker.waitForOutput(new RegExp(`job ${badPayload} failed and will not be retried`));
    await worker.waitForOutput(new RegExp(`job ${unknownView} failed and will not be retried`));
    const lines = await stop(worker);

    for (const job of jobs) {
      expect(job.attempts, `job ${job.id}`).toBe(1);
      expect(job.max_attempts, `job ${job.id}: no retry scheduled`).toBe(job.attempts);
    }
    expect(jobs.find((j) => j.id === unknownStream)?.last_error).toMatch(/unknown stream "no_such_stream"/);
    expect(jobs.find((j) => j.id === badPayload)?.last_error).toMatch(/"events" must be an array/);

    for (const id of ids) {
      const about = lines.filter((l) => l.job_id === id || new RegExp(`\\b(task|job) ${id}\\b`).test(l.msg));
      expect(about, `job ${id}: exactly one line`).toHaveLength(1);
      const line = about[0]!;
      expect(line.level, `job ${id}`).toBe(WARN);
      expect(line.msg).toMatch(/will not be retried/);
      expect(line).toMatchObject({ task: id === unknownView ? 'sluice_refresh_matview' : 'sluice_ingest', job_id: id, attempts: 1 });
      expect(JSON.stringify(line), `job ${id}: no stack`).not.toMatch(/\n\s+at |\.js:\d+:\d+/);
    }
    expect(lines.find((l) => l.job_id === unknownStream)).toMatchObject({ code: 'unknown_stream', reason: expect.stringMatching(/unknown stream "no_such_stream"/) });
    expect(lines.find((l) => l.job_id === badPayload)).toMatchObject({ code: 'invalid_payload' });
    expect(lines.find((l) => l.job_id === unknownView)).toMatchObject({ code: 'unknown_matview' });
    expect(lines.find((l) => l.job_id === badBatch)?.reason).toMatch(/entry 0: unknown stream .*entry 2: .*"stream" must be a string/);
    expect(lines.filter((l) => GRAPHILE_FAILED_TASK.test(l.msg) || /attempt \d+ of \d+/.test(l.msg))).toEqual([]);
    // No error line about a job (other schedules of the worker may log what they log).
    expect(lines.filter((l) => l.level >= ERROR && (l.job_id !== undefined || /\btask\b/.test(l.msg)))).toEqual([]);
    // The good entry of the batch still landed.
    expect((await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM sluice_staging.logs_stream`)).rows[0]!.n
      + (await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM sluice_data.logs_stream`)).rows[0]!.n).toBe(1);
  });

  it("an unexpected error stays graphile-worker's error line with its stack and is retried; with --tasks a small pool is a warning", async () => {
    const dir = tempFolder('sluice-logs-tasks');
    const tasks = path.join(dir, 'tasks');
    mkdirSync(tasks);
    writeFileSync(path.join(tasks, 'explode.mjs'), `export default async () => { throw new Error('kaboom from a user task'); };\n`);
    const worker = await startWorker(['--worker-id', 'logs-unexpected', '--tasks', tasks, '--pool-size', '3', '--concurrency', '6', '--max-connections', '8']);
    const id = await addJob('explode', {}, 3);
    const [job] = await failedJobs([id]);
    await worker.waitForOutput(/kaboom from a user task/);
    const lines = await stop(worker);

    expect(job!.attempts).toBe(1);
    expect(job!.max_attempts, 'a retry is scheduled').toBe(3);
    const failed = lines.filter((l) => GRAPHILE_FAILED_TASK.test(l.msg) && l.msg.includes(`task ${id} `));
    expect(failed).toHaveLength(1);
    expect(failed[0]!.level).toBe(ERROR);
    expect(failed[0]!.msg).toMatch(/attempt 1 of 3/);
    expect(failed[0]!.msg, 'the stack is kept').toMatch(/\n\s+at .*explode\.mjs/);
    expect(lines.filter((l) => /will not be retried/.test(l.msg))).toEqual([]);

    // Pool 3 < 6 slots with user tasks: sluice's own warning, once; graphile-worker's never.
    expect(lines.filter((l) => GRAPHILE_POOL_WARNING.test(l.msg))).toEqual([]);
    const notice = lines.filter((l) => /pool of 3 connections for 6 job slots/.test(l.msg));
    expect(notice).toHaveLength(1);
    expect(notice[0]!.level).toBe(WARN);
    expect(notice[0]!.msg).toMatch(/--tasks/);
  });
});
