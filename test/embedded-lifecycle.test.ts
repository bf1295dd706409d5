/**
 * The embedded server's lifecycle when several sluice commands share a home,
 * on real processes (no DATABASE_URL, no test database):
 * - concurrent first starts: one initdb, everyone succeeds, whatever the order;
 * - a command that joined keeps its server when the one that started it exits;
 *   a kill -9'd last user neither strands the server nor counts as a user;
 * - a command whose server is stopped under it says so and exits non-zero;
 * - as root, no folder sluice does not own changes mode; a stale
 *   postmaster.pid naming a live, unrelated process does not block a start.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readdir, realpath, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { JsonOf } from '../src/json-keys.js';
import type { StatusReport } from '../src/status/stream-status.js';
import { runCli, spawnCli, type SpawnedCli } from './helpers/cli.js';
import { embeddedHomes, isAlive, postmasterPid, waitForExit } from './helpers/embedded.js';

const homes = embeddedHomes();
const strays: ChildProcess[] = [];
const workers: SpawnedCli[] = [];

afterAll(async () => {
  for (const w of workers) if (w.child.exitCode === null && w.child.signalCode === null) w.child.kill('SIGKILL');
  for (const c of strays) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await homes.cleanUp();
});

const INITDB_LINE = 'initialising a new Postgres data directory';

function spawnWorker(home: string, id: string): SpawnedCli {
  const w = spawnCli(['worker', '--embedded', '--home', home, '--worker-id', id, '--concurrency', '1', '--drainers', '1']);
  workers.push(w);
  return w;
}

async function leaseFiles(home: string): Promise<string[]> {
  return (await readdir(path.join(home, 'users')).catch(() => [] as string[])).filter((f) => f.endsWith('.json'));
}

async function mode(dir: string): Promise<string> {
  return ((await stat(dir)).mode & 0o7777).toString(8);
}

describe('embedded server lifecycle', () => {
  it('concurrent first starts on one fresh home: all succeed, exactly one initdb, no server left behind (3 rounds of 4)', async () => {
    for (let round = 1; round <= 3; round++) {
      const home = path.join(await homes.tempDir(`race${round}`), 'home');
      const results = await Promise.all(
        Array.from({ length: 4 }, () => runCli(['migrate', '--home', home, '--log-level', 'info'], { timeoutMs: 150_000 })),
      );
      const all = results.map((r) => r.stderr).join('\n----\n');
      for (const r of results) expect(r.code, `round ${round}:\n${all.slice(-6000)}`).toBe(0);
      expect(results.filter((r) => r.stderr.includes(INITDB_LINE)).length, all.slice(-6000)).toBe(1);
      expect(results.filter((r) => /started embedded Postgres at/.test(r.stderr)).length, all.slice(-6000)).toBe(1);
      // The last one out stopped the server; nobody is registered any more.
      expect(results.filter((r) => r.stderr.includes('embedded Postgres stopped')).length, all.slice(-6000)).toBe(1);
      expect(existsSync(path.join(home, 'pgdata', 'postmaster.pid'))).toBe(false);
      expect(await leaseFiles(home)).toEqual([]);
      expect(existsSync(path.join(home, 'pgdata', 'PG_VERSION'))).toBe(true);
    }
  }, 600_000);

  let sharedHome: string;

  it('a joined worker survives the exit of the worker that started the server; a kill -9\'d last user does not strand it', async () => {
    sharedHome = path.join(await homes.tempDir('join'), 'home');
    const dataDir = path.join(sharedHome, 'pgdata');
    const first = spawnWorker(sharedHome, 'lc-first');
    await first.waitForOutput(/worker lc-first running/, 90_000);
    expect(first.stderr()).toContain('started embedded Postgres at');
    const serverPid = (await postmasterPid(dataDir)) as number;
    expect(isAlive(serverPid)).toBe(true);

    const second = spawnWorker(sharedHome, 'lc-second');
    await second.waitForOutput(/worker lc-second running/, 45_000);
    expect(second.stderr()).toContain('using running embedded Postgres at');

    first.child.kill('SIGTERM');
    const firstDone = await first.exited;
    expect(firstDone.code, firstDone.stderr.slice(-3000)).toBe(0);
    expect(firstDone.stderr).not.toContain('embedded Postgres stopped');
    expect(firstDone.stderr).toMatch(/embedded Postgres left running for 1 other sluice command\(s\) \(pid \d+\)/);
    expect(await postmasterPid(dataDir)).toBe(serverPid);
    expect(isAlive(serverPid)).toBe(true);

    // The second worker still has its database: status (a third command) sees it live, and leaves the server running too.
    const status = await runCli(['status', '--json', '--home', sharedHome]);
    expect(status.code, status.stderr).toBe(0);
    const report = JSON.parse(status.stdout) as JsonOf<StatusReport>;
    expect(report.workers.find((w) => w.id === 'lc-second')?.live).toBe(true);
    expect(status.stderr).not.toContain('embedded Postgres stopped');
    expect(second.stderr()).not.toMatch(/ECONNREFUSED|stopped under this command/);
    expect(isAlive(serverPid)).toBe(true);

    // A crash: the last user dies without leaving. The server stays up, with no live user…
    second.child.kill('SIGKILL');
    await second.exited;
    expect(isAlive(serverPid)).toBe(true);
    // …and the next command adopts it, and as the last one out stops it.
    const adopt = await runCli(['migrate', '--home', sharedHome], { timeoutMs: 60_000 });
    expect(adopt.code, adopt.stderr).toBe(0);
    expect(adopt.stderr).toContain('using running embedded Postgres at');
    expect(adopt.stderr).toContain('embedded Postgres stopped');
    await waitForExit(serverPid, 'the postmaster to exit');
    expect(existsSync(path.join(dataDir, 'postmaster.pid'))).toBe(false);
    expect(await leaseFiles(sharedHome)).toEqual([]);
  }, 300_000);

  it('a command whose server is stopped under it says so and exits non-zero', async () => {
    const dataDir = path.join(sharedHome, 'pgdata');
    const worker = spawnWorker(sharedHome, 'lc-orphan');
    await worker.waitForOutput(/worker lc-orphan running/, 60_000);
    const serverPid = (await postmasterPid(dataDir)) as number;
    process.kill(serverPid, 'SIGINT'); // fast shutdown behind sluice's back
    await worker.waitForOutput(/embedded Postgres at \S+ stopped under this command \(its postmaster \(pid \d+\) is gone\); exiting/, 30_000);
    const done = await worker.exited;
    expect(done.signal).toBeNull();
    expect(done.code, done.stderr.slice(-3000)).toBe(1);
    expect(await leaseFiles(sharedHome)).toEqual([]);
  }, 120_000);

  let privateHome: string;

  it('in 0700 folders (as root: the server runs as "postgres"): starts, and no folder outside sluice\'s own changes mode', async () => {
    const base = await homes.tempDir('private'); // mkdtemp: 0700, like /root
    const privateDir = path.join(base, 'private');
    await mkdir(privateDir, { mode: 0o700 });
    privateHome = path.join(privateDir, 'home');
    const watched = [os.tmpdir(), base, privateDir];
    const before = await Promise.all(watched.map(mode));
    expect(before.slice(1)).toEqual(['700', '700']);

    const first = await runCli(['migrate', '--home', privateHome], { timeoutMs: 120_000 });
    expect(first.code, first.stderr).toBe(0);
    expect(first.stderr).toContain('started embedded Postgres at');
    expect(first.stderr).toContain('embedded Postgres stopped');
    expect(await Promise.all(watched.map(mode))).toEqual(before);
    expect(await mode(privateHome)).toBe('700');
  }, 180_000);

  it('a stale postmaster.pid naming a live non-postgres process does not block a start (and that process is left alone)', async () => {
    // A crash left postmaster.pid behind, and its pid now belongs to an unrelated live process.
    const stray = spawn('sleep', ['600'], { stdio: 'ignore' });
    strays.push(stray);
    const dataDir = path.join(privateHome, 'pgdata');
    const stale = [String(stray.pid), await realpath(dataDir), '1700000000', '54329', '', '127.0.0.1', '  1234  5678', 'ready   ', ''];
    await writeFile(path.join(dataDir, 'postmaster.pid'), stale.join('\n'));

    const result = await runCli(['migrate', '--home', privateHome], { timeoutMs: 120_000 });
    expect(result.code, result.stderr).toBe(0);
    expect(result.stderr).toContain('started embedded Postgres at');
    expect(result.stderr).toContain('schema is up to date');
    expect(result.stderr).toContain('embedded Postgres stopped');
    expect(isAlive(stray.pid as number)).toBe(true);
    expect(existsSync(path.join(dataDir, 'postmaster.pid'))).toBe(false);
  }, 180_000);
});
