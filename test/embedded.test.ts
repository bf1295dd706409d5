/**
 * The embedded default: with no DATABASE_URL, a command starts its own
 * Postgres in <home>/pgdata (or ./.sluice), says where it is without the
 * password, and stops it when done; the next command reuses the data
 * directory (no initdb) and finds the data again. While a worker runs, other
 * commands join its server and leave it running; SIGTERM stops the worker
 * cleanly and, as the last user, the server. (Concurrency, crashes and root:
 * embedded-lifecycle.test.ts.)
 *
 * No test database here: this is the path without DATABASE_URL.
 */
import { existsSync, statSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { MIGRATIONS_DIR } from '../src/paths.js';
import type { JsonOf } from '../src/json-keys.js';
import type { StatusReport } from '../src/status/stream-status.js';
import type { StreamDefinition } from '../src/streams/registry.js';
import { runCli, spawnCli, type CliResult } from './helpers/cli.js';
import { embeddedHomes, isAlive, postmasterPid } from './helpers/embedded.js';
import { waitFor } from './helpers/wait.js';

const homes = embeddedHomes();
const tempDir = (label: string) => homes.tempDir(label);

// A failed test may leave a server running: stop it, then remove the folders (and, as root, the cluster).
afterAll(() => homes.cleanUp());

async function migrationFiles(): Promise<string[]> {
  return (await readdir(MIGRATIONS_DIR)).filter((f) => f.endsWith('.sql')).sort();
}

/** The URL the command printed for the embedded server. */
function announcedUrl(stderr: string, how: 'started' | 'using running'): URL {
  const m = new RegExp(`${how} embedded Postgres at (postgres://\\S+)`).exec(stderr);
  expect(m, stderr).not.toBeNull();
  return new URL(m?.[1] as string);
}

function expectStoppedServer(result: CliResult, dataDir: string): void {
  expect(result.stderr).toContain('embedded Postgres stopped');
  expect(existsSync(path.join(dataDir, 'postmaster.pid'))).toBe(false);
}

describe('embedded Postgres (no DATABASE_URL)', () => {
  let home: string;
  let dataDir: string;
  let password: string;

  it('sluice migrate --home: starts the server, prints its URL without the password, migrates, stops it', async () => {
    home = await tempDir('home');
    dataDir = path.join(home, 'pgdata');
    const result = await runCli(['migrate', '--home', home, '--log-level', 'info'], { timeoutMs: 60_000 });
    expect(result.code, result.stderr).toBe(0);

    const url = announcedUrl(result.stderr, 'started');
    expect(url.password).toBe('');
    expect(url.username).toBe('postgres');
    expect(url.hostname).toBe('127.0.0.1');
    expect(Number(url.port)).toBeGreaterThan(0);
    password = (await readFile(path.join(home, 'password'), 'utf8')).trim();
    expect(password.length).toBeGreaterThan(8);
    expect(result.stderr).not.toContain(password);
    expect(result.stdout).not.toContain(password);

    expect(result.stderr).toContain('initialising a new Postgres data directory');
    const files = await migrationFiles();
    expect(result.stderr).toContain(`applied ${files.length} migration(s): ${files.join(', ')}`);
    expect(existsSync(path.join(dataDir, 'PG_VERSION'))).toBe(true);
    expectStoppedServer(result, dataDir);

    const created = await runCli(['stream', 'create', 'persisted_one', '--column', 'n:int', '--home', home]);
    expect(created.code, created.stderr).toBe(0);
    expect(created.stderr).toContain('created stream persisted_one');
    expectStoppedServer(created, dataDir);
  });

  it('a second sluice migrate reuses the data directory: no initdb, up to date, data still there', async () => {
    const versionFile = path.join(dataDir, 'PG_VERSION');
    const before = statSync(versionFile);
    const result = await runCli(['migrate', '--home', home, '--log-level', 'info'], { timeoutMs: 60_000 });
    expect(result.code, result.stderr).toBe(0);
    announcedUrl(result.stderr, 'started');
    expect(result.stderr).not.toContain('initialising');
    expect(result.stderr).toContain('schema is up to date');
    const after = statSync(versionFile);
    expect([after.ino, after.mtimeMs]).toEqual([before.ino, before.mtimeMs]);
    expect((await readFile(path.join(home, 'password'), 'utf8')).trim()).toBe(password);
    expectStoppedServer(result, dataDir);

    const list = await runCli(['stream', 'list', '--json', '--home', home]);
    expect(list.code, list.stderr).toBe(0);
    const streams = JSON.parse(list.stdout) as Array<JsonOf<StreamDefinition>>;
    expect(streams.map((s) => s.name).sort()).toEqual(['events', 'persisted_one']);
    expect(streams.find((s) => s.name === 'persisted_one')?.columns).toEqual([{ name: 'n', type: 'integer' }]);
    expectStoppedServer(list, dataDir);
  });

  it('while a worker runs, sluice status joins its server; SIGTERM stops the worker (exit 0) and the server', async () => {
    const worker = spawnCli(['worker', '--embedded', '--home', home, '--worker-id', 'embedded-w1', '--concurrency', '2', '--drainers', '1']);
    try {
      await worker.waitForOutput(/worker embedded-w1 running/, 45_000);
      announcedUrl(worker.stderr(), 'started');
      const serverPid = await postmasterPid(dataDir);
      expect(serverPid).toBeDefined();
      expect(isAlive(serverPid as number)).toBe(true);

      const status = await runCli(['status', '--json', '--home', home]);
      expect(status.code, status.stderr).toBe(0);
      announcedUrl(status.stderr, 'using running');
      expect(status.stderr).not.toContain('embedded Postgres stopped');
      const report = JSON.parse(status.stdout) as JsonOf<StatusReport>;
      expect(report.streams.map((s) => s.stream)).toContain('persisted_one');
      const w = report.workers.find((x) => x.id === 'embedded-w1');
      expect(w?.live).toBe(true);
      expect(w?.connections).toBeGreaterThan(0);
      // The joining command left the worker's server running.
      expect(await postmasterPid(dataDir)).toBe(serverPid);
      expect(isAlive(serverPid as number)).toBe(true);

      worker.child.kill('SIGTERM');
      const result = await worker.exited;
      expect(result.signal).toBeNull();
      expect(result.code, result.stderr.slice(-3000)).toBe(0);
      expect(result.stderr).toContain('worker embedded-w1 stopped');
      expectStoppedServer(result, dataDir);
      await waitFor(async () => isAlive(serverPid as number), (alive) => !alive, { what: 'the postmaster to exit', timeoutMs: 10_000 });
    } finally {
      if (worker.child.exitCode === null && worker.child.signalCode === null) worker.child.kill('SIGKILL');
    }
  });

  it('without --home, the data directory is ./.sluice in the working directory', async () => {
    const cwd = await tempDir('cwd');
    const dotSluice = path.join(cwd, '.sluice', 'pgdata');
    const first = await runCli(['migrate'], { cwd, timeoutMs: 60_000 });
    expect(first.code, first.stderr).toBe(0);
    expect(announcedUrl(first.stderr, 'started').password).toBe('');
    // As root the cluster lives where the postgres user can reach it, and the home links to it: `(data: .sluice/pgdata -> …)`.
    expect(first.stderr).toMatch(/\(data: \.sluice\/pgdata(\)| -> \/)/);
    expect(first.stderr).toMatch(/applied \d+ migration\(s\)/);
    expect(existsSync(path.join(dotSluice, 'PG_VERSION'))).toBe(true);
    expectStoppedServer(first, dotSluice);

    const second = await runCli(['migrate'], { cwd, timeoutMs: 60_000 });
    expect(second.code, second.stderr).toBe(0);
    expect(second.stderr).toContain('schema is up to date');
    expectStoppedServer(second, dotSluice);
  });
});
