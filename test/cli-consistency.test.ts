/**
 * CLI behaviour for scripts and operators: shell completion, an unmigrated
 * database named as such, and `sluice status --check` failing when rows wait
 * with nobody to drain them, and the README's list of commands taking `--json`
 * matching what their --help offers.
 */
import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { createTestDatabase, urlForDatabase } from './helpers/database.js';
import { runCli } from './helpers/cli.js';
import { startWorker } from './helpers/worker.js';

const db = await createTestDatabase('cli_consistency');

describe('sluice CLI consistency', () => {
  it('prints a completion script (sluice completion)', async () => {
    const result = await runCli(['completion']);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/sluice/);
    expect(result.stdout).toMatch(/complete -o/);
  });

  it('says to run `sluice migrate` on an unmigrated database', async () => {
    const bare = `${db.name}_bare`;
    await db.query(`CREATE DATABASE ${bare}`);
    try {
      const result = await runCli(['status', '-c', urlForDatabase(db.url, bare)]);
      expect(result.code).toBe(1);
      expect(result.stderr).toMatch(/run `sluice migrate`/);
    } finally {
      await db.query(`DROP DATABASE ${bare} WITH (FORCE)`);
    }
  });

  it('status --check exits 1 when rows are staged and no worker is live, 0 when all is well', async () => {
    const calm = await runCli(['status', '-c', db.url, '--check']);
    expect(calm.stderr).toBe('');
    expect(calm.code).toBe(0);

    await db.query(`SELECT sluice.create_stream('waiting')`);
    const event = JSON.stringify({ event_id: '5d2d3c1e-2f7a-4b8e-9c1d-0a1b2c3d4e5f', occurred_at: new Date().toISOString(), payload: {} });
    const ingest = await runCli(['ingest', '-c', db.url, '--stream', 'waiting', '-'], { input: `${event}\n` });
    expect(ingest.code, ingest.stderr).toBe(0);

    const plain = await runCli(['status', '-c', db.url]);
    expect(plain.code).toBe(0);
    const checked = await runCli(['status', '-c', db.url, '--check', '--json']);
    expect(checked.code).toBe(1);
    expect(checked.stderr).toMatch(/no live worker, and rows are staged in waiting \(1\)/);
    expect(JSON.parse(checked.stdout).streams.length).toBeGreaterThan(0);
  });

  it('shows process ids without thousands separators, and refuses a --interval below its floor', async () => {
    const worker = await startWorker(db, { maxConnections: 6 });
    try {
      // A pid with thousands (this process's own may be small on a fresh machine); heartbeats leave pid alone.
      await db.query(`UPDATE sluice.workers SET pid = 1234567 WHERE id = $1`, [worker.id]);
      const result = await runCli(['status', '-c', db.url]);
      expect(result.code, result.stderr).toBe(0);
      const row = result.stdout.split('\n').find((l) => l.startsWith(worker.id));
      expect(row).toBeDefined();
      expect(row!.split(/\s+/)).toContain('1234567');
    } finally {
      await worker.stop('test done');
    }
    const tooFast = await runCli(['status', '-c', db.url, '--watch', '--interval', '0.01']);
    expect(tooFast.code).toBe(1);
    expect(tooFast.stderr).toMatch(/--interval must be at least 0\.2 seconds/);
    // health --watch has the same floor (it runs every check family each refresh).
    const healthTooFast = await runCli(['health', '-c', db.url, '--watch', '--interval', '0']);
    expect(healthTooFast.code).toBe(1);
    expect(healthTooFast.stderr).toMatch(/--interval must be at least 0\.2 seconds/);
  });

  it('README and --help agree: the commands that take --json are the ones the README lists; bench documents --out, --check, --target', async () => {
    /** Every leaf command, from the command lists of `sluice --help` and of each group's --help. */
    const commandsIn = (help: string, prefix: string) =>
      [...help.matchAll(/^ {2}sluice ([a-z][a-z ]*?)(?= <| \[| {2,}|$)/gm)].map((m) => m[1]!.trim()).filter((c) => c !== prefix && c !== 'completion');
    const top = await runCli(['--help']);
    expect(top.code).toBe(0);
    const helps = new Map<string, string>();
    const helpOf = async (command: string) => {
      if (!helps.has(command)) {
        const help = await runCli([...command.split(' '), '--help']);
        expect(help.code, command).toBe(0);
        helps.set(command, help.stdout);
      }
      return helps.get(command)!;
    };
    // Every --help at once (they are independent): the group pages, then the leaves.
    await Promise.all(commandsIn(top.stdout, '').map(helpOf));
    const leaves: string[] = [];
    for (const command of commandsIn(top.stdout, '')) {
      const sub = commandsIn(await helpOf(command), command).filter((c) => c.startsWith(`${command} `));
      if (sub.length === 0) leaves.push(command);
      else for (const s of sub) leaves.push(s);
    }
    expect(leaves).toEqual(expect.arrayContaining(['status', 'bench', 'stream list', 'stream show', 'partitions list', 'matview list', 'migrate']));
    await Promise.all(leaves.map(helpOf));
    const withJson: string[] = [];
    for (const command of leaves) {
      const help = await helpOf(command);
      if (/^\s+--json\b/m.test(help)) withJson.push(command);
      if (command === 'bench') for (const flag of ['--json', '--out', '--check', '--target']) expect(help, flag).toMatch(new RegExp(`^\\s+${flag}\\b`, 'm'));
    }
    const readme = await readFile(new URL('../README.md', import.meta.url), 'utf8');
    const listed = /`--json` is accepted by:([^.]*)\./.exec(readme)?.[1];
    expect(listed, 'README: "`--json` is accepted by: …" in CLI conventions').toBeDefined();
    const documented = [...listed!.matchAll(/`([a-z ]+)`/g)].map((m) => m[1]!);
    expect([...documented].sort()).toEqual([...withJson].sort());
    for (const flag of ['--out', '--check', '--target']) expect(readme).toMatch(new RegExp(`sluice bench [^\\n]*${flag}\\b`));
  }, 120_000);
});
