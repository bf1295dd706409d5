/**
 * The CLI conventions (docs/design.md "CLI conventions"), checked on the real
 * binary for every command that reports something:
 *  - `--json`: exactly one JSON document on stdout (one line), nothing else there,
 *    and no camelCase key anywhere in it (walked recursively);
 *  - stderr off a terminal (these are pipes): every line is a pino-shaped JSON line
 *    (level, time, msg), also for errors, which keep their exit codes (2 usage and
 *    configuration, 1 otherwise) and carry a code.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli, spawnCli, stderrRecords, type CliResult } from './helpers/cli.js';
import { createTestDatabase } from './helpers/database.js';
import { makeEvents } from './helpers/events.js';
import { startWorker } from './helpers/worker.js';

const db = await createTestDatabase('cli_conventions');
const env = { DATABASE_URL: db.url };
const dir = await mkdtemp(path.join(os.tmpdir(), 'sluice-cli-conventions-'));
afterAll(() => rm(dir, { recursive: true, force: true }));

/** Every object key in a JSON value, with its path, however deep. */
function keysOf(value: unknown, at = '$'): Array<{ key: string; path: string }> {
  if (Array.isArray(value)) return value.flatMap((v, i) => keysOf(v, `${at}[${i}]`));
  if (value === null || typeof value !== 'object') return [];
  return Object.entries(value).flatMap(([k, v]) => [{ key: k, path: `${at}.${k}` }, ...keysOf(v, `${at}.${k}`)]);
}

const CAMEL = /[a-z0-9][A-Z]/;

/** stdout is one JSON line; every key is snake_case; stderr (logs at debug included) is all JSON lines. */
function expectJsonOutput(what: string, result: CliResult): unknown {
  const lines = result.stdout.split('\n');
  expect(lines.length, `${what}: one line and its newline on stdout:\n${result.stdout.slice(0, 2000)}`).toBe(2);
  expect(lines[1], what).toBe('');
  const doc = JSON.parse(lines[0]!) as unknown;
  const camel = keysOf(doc).filter((k) => CAMEL.test(k.key));
  expect(camel.map((k) => k.path), `${what}: camelCase keys`).toEqual([]);
  expectJsonStderr(what, result);
  return doc;
}

function expectJsonStderr(what: string, result: Pick<CliResult, 'stderr'>): ReturnType<typeof stderrRecords> {
  const records = stderrRecords(result.stderr);
  for (const r of records) {
    expect(typeof r.level, `${what}: ${JSON.stringify(r)}`).toBe('number');
    expect(typeof r.msg, `${what}: ${JSON.stringify(r)}`).toBe('string');
    expect(Number.isNaN(Date.parse(String(r.time))), `${what}: ${JSON.stringify(r)}`).toBe(false);
    expect(keysOf(r).filter((k) => CAMEL.test(k.key)).map((k) => k.path), `${what}: camelCase log fields`).toEqual([]);
  }
  return records;
}

describe('CLI conventions', () => {
  const events = makeEvents(300, 7).events;
  const ndjson = path.join(dir, 'events.ndjson');
  beforeAll(() => writeFile(ndjson, `${events.map((e) => JSON.stringify(e)).join('\n')}\nnot json\n{"occurred_at":"2026-01-01T00:00:00Z"}\n`));

  it('--json on every reporting command: one snake_case JSON document on stdout; stderr all JSON, logs included', async () => {
    const worker = await startWorker(db, { maxConnections: 6 });
    let running = true;
    const stopWorker = async () => {
      if (running) await worker.stop('test: worker no longer needed');
      running = false;
    };
    try {
      const debug = ['--log-level', 'debug'];
      // status and budget while a worker is live (its plan is in them); the rest without it, so that
      // demo and bench, which verify their own counts, run with no other worker draining their streams.
      const commands: Array<{ args: string[]; codes?: number[]; timeoutMs?: number; stopWorkerFirst?: boolean }> = [
        { args: ['migrate', '--json', ...debug] },
        { args: ['ingest', ndjson, '--json', ...debug] },
        { args: ['status', '--json', ...debug] },
        { args: ['budget', '--json', ...debug] },
        { args: ['health', '--json', ...debug], codes: [0, 1, 2], stopWorkerFirst: true },
        { args: ['rejects', 'list', '--json', ...debug] },
        { args: ['rejects', 'replay', '--all', '--dry-run', '--json', ...debug] },
        { args: ['stream', 'list', '--json', ...debug] },
        { args: ['stream', 'show', 'events', '--json', ...debug] },
        { args: ['partitions', 'list', '--json', ...debug] },
        { args: ['partitions', 'rotate', '--dry-run', '--json', ...debug] },
        { args: ['matview', 'list', '--json', ...debug] },
        { args: ['matview', 'refresh', 'conv_view', '--json', ...debug] },
        { args: ['stream', 'create', 'conv_created', '--column', 'user_id:bigint', '--index', 'user_id', '--json', ...debug] },
        { args: ['demo', '--events', '500', '--json', ...debug], timeoutMs: 120_000 },
        { args: ['bench', '--events', '400', '--rounds', '1', '--scenarios', 'limit_raw_copy', 'sluice_ingestor', '--no-progress', '--json', ...debug] },
      ];
      await runCli(['matview', 'add', 'conv_view', '--example'], { env });
      const docs: Record<string, unknown> = {};
      for (const c of commands) {
        if (c.stopWorkerFirst) await stopWorker();
        const result = await runCli(c.args, { env, timeoutMs: c.timeoutMs ?? 60_000 });
        const what = c.args[0] === 'ingest' ? 'ingest' : c.args.slice(0, 2).join(' ');
        expect(c.codes ?? [0], `${what}: exit ${result.code}\n${result.stderr.slice(-2000)}`).toContain(result.code);
        docs[what] = expectJsonOutput(what, result);
      }
      // The documents are the reports, in snake_case (spot checks of keys that were camelCase before).
      expect(docs['migrate --json']).toEqual({ applied: [], up_to_date: true });
      expect(docs.ingest).toMatchObject({ accepted: events.length, rejected: 2, rejects_by_reason: { invalid_json: 1, missing_event_id: 1 } });
      const status = docs['status --json'] as { streams: Array<Record<string, unknown>>; workers: Array<Record<string, unknown>> };
      expect(status.streams[0]).toHaveProperty('oldest_staged_age_s');
      expect(status.workers.find((w) => w.id === worker.id)).toHaveProperty('heartbeat_age_s');
      expect(docs['budget --json']).toHaveProperty('capacity.max_connections');
      expect(docs['matview refresh']).toMatchObject({ name: 'conv_view', duration_ms: expect.any(Number) });
      expect(docs['stream create']).toMatchObject({ name: 'conv_created', columns: [{ name: 'user_id', type: 'bigint' }], max_event_bytes: expect.any(Number) });
      expect((docs['rejects list'] as Array<Record<string, unknown>>).length).toBeGreaterThanOrEqual(2);
      expect(docs['rejects replay']).toMatchObject({ dry_run: true });
      expect(docs['stream show']).toMatchObject({ name: 'events', premake_months: expect.any(Number), require_event_id: true });
      expect(docs['demo --events']).toHaveProperty('durable_rows');
      expect(docs['bench --events']).toHaveProperty('scenarios.0.rows_per_second');
    } finally {
      await stopWorker();
    }
  }, 300_000);

  it('stderr off a terminal: every line is JSON for migrate, status, ingest, budget, a worker start and stop, and for errors (exit 2 / 1 kept)', async () => {
    const ok: Array<[string, CliResult]> = [
      ['migrate', await runCli(['migrate'], { env })],
      ['status', await runCli(['status', '--log-level', 'debug'], { env })],
      ['ingest', await runCli(['ingest', ndjson, '--log-level', 'info'], { env })],
      ['budget', await runCli(['budget'], { env })],
    ];
    for (const [what, result] of ok) {
      expect(result.code, `${what}: ${result.stderr}`).toBe(0);
      expectJsonStderr(what, result);
    }
    expect(stderrRecords(ok[0]![1].stderr).map((r) => r.msg)).toContain('schema is up to date');

    // Node's own warnings (a library's deprecation) too: a preloaded module emits one as the command ends.
    const preload = path.join(dir, 'warn.mjs');
    await writeFile(preload, "process.once('beforeExit', () => process.emitWarning('a warning from a library', { type: 'DeprecationWarning', code: 'DEP_TEST' }));\n");
    const warned = await runCli(['migrate'], { env: { ...env, NODE_OPTIONS: `--import=${preload}` } });
    expect(warned.code, warned.stderr).toBe(0);
    expect(expectJsonStderr('migrate with a warning', warned)).toContainEqual(
      expect.objectContaining({ level: 40, msg: 'a warning from a library', warning: 'DeprecationWarning', warning_code: 'DEP_TEST' }),
    );

    // A worker's whole life: its own lines, pino's, graphile-worker's, the signal and the stop.
    const worker = spawnCli(['worker', '--worker-id', 'conv-w1', '--max-connections', '6', '--log-level', 'debug'], env);
    await worker.waitForOutput(/worker conv-w1 running/, 45_000);
    worker.child.kill('SIGTERM');
    const stopped = await worker.exited;
    expect(stopped.code, stopped.stderr.slice(-2000)).toBe(0);
    const lines = expectJsonStderr('worker', stopped);
    const msgs = lines.map((r) => r.msg);
    expect(msgs.some((m) => /^SIGTERM received/.test(m))).toBe(true);
    expect(msgs).toContain('worker conv-w1 stopped');
    expect(lines.length).toBeGreaterThan(3);

    // Errors: a SluiceError (exit 1), a configuration error and a usage error (exit 2), a failed check (exit 1): JSON lines with a code.
    const failures: Array<{ args: string[]; code: number; errorCode: string; msg: RegExp; input?: string }> = [
      { args: ['ingest', '-', '--stream', 'nope'], code: 1, errorCode: 'unknown_stream', msg: /unknown stream "nope"/, input: '' },
      { args: ['stream', 'drop', 'events'], code: 1, errorCode: 'confirmation_required', msg: /--yes/ },
      { args: ['worker', '--max-connections', '2'], code: 2, errorCode: 'configuration_error', msg: /configuration error: .*max-connections/ },
      { args: ['status', '--bogus-flag'], code: 2, errorCode: 'usage_error', msg: /^Unknown argument: bogus-flag$/ },
      { args: ['bench', '--target', 'nope=1'], code: 2, errorCode: 'configuration_error', msg: /--target nope/ },
    ];
    for (const f of failures) {
      const result = await runCli(f.args, { env, ...(f.input !== undefined ? { input: f.input } : {}) });
      const what = f.args.join(' ');
      expect(result.code, `${what}: ${result.stderr}`).toBe(f.code);
      expect(result.stdout, what).toBe('');
      const records = expectJsonStderr(what, result);
      const error = records.find((r) => r.level === 50);
      expect(error, `${what}: ${result.stderr}`).toBeDefined();
      expect(error).toMatchObject({ code: f.errorCode, exit_code: f.code });
      expect(error?.msg).toMatch(f.msg);
    }

    // status --check failing: the problems are warn lines, exit 1.
    await db.query(`SELECT sluice.create_stream('conv_waiting')`);
    await runCli(['ingest', '-', '--stream', 'conv_waiting'], { env, input: `${JSON.stringify(events[0])}\n` });
    const check = await runCli(['status', '--check'], { env });
    expect(check.code).toBe(1);
    const problems = expectJsonStderr('status --check', check).filter((r) => r.level === 40);
    expect(problems.map((r) => r.msg).join('\n')).toMatch(/status check: no live worker, and rows are staged in conv_waiting \(1\)/);
  }, 180_000);
});
