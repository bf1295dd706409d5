/**
 * `sluice worker` as a service and as a graphile-worker host (child processes via bin/sluice.js):
 * without a database URL and without a terminal it refuses to start a private embedded Postgres,
 * and with --tasks DIR it runs the user's own task files beside sluice's.
 */
import { existsSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createTestDatabase } from './helpers/database.js';
import { runCli, spawnCli, type SpawnedCli } from './helpers/cli.js';
import { waitFor } from './helpers/wait.js';
import { tempFolders } from './helpers/temp.js';

const db = await createTestDatabase('worker_ecosystem_cli');
const tempFolder = tempFolders();
const children: SpawnedCli[] = [];
afterAll(async () => {
  for (const c of children) if (c.child.exitCode === null) c.child.kill('SIGTERM');
  await Promise.all(children.map((c) => c.exited));
});

describe('sluice worker without DATABASE_URL, not on a terminal', () => {
  for (const [label, env] of [
    ['no TTY', {}],
    ['under systemd (INVOCATION_ID)', { INVOCATION_ID: 'abc123' }],
  ] as const) {
    it(`refuses to start an embedded Postgres (${label}), naming DATABASE_URL and --embedded`, async () => {
      const cwd = tempFolder('sluice-noenv');
      const result = await runCli(['worker', '--worker-id', 'no-env'], { env, cwd, timeoutMs: 30_000 });
      expect(result.code).toBe(2);
      expect(result.stderr).toMatch(/DATABASE_URL/);
      expect(result.stderr).toMatch(/--embedded/);
      expect(existsSync(path.join(cwd, '.sluice'))).toBe(false);
    });
  }

  it('the packaged systemd unit cannot opt into the embedded server', () => {
    const unit = readFileSync(new URL('../ops/sluice-worker.service', import.meta.url), 'utf8');
    expect(unit).not.toMatch(/--embedded|SLUICE_EMBEDDED/);
    expect(unit).toMatch(/ExecStart=.* worker/);
  });
});

describe('sluice worker --tasks DIR', () => {
  it("runs the user's task files (.mjs and .cjs) and crontab beside sluice's tasks", async () => {
    await db.query(`CREATE TABLE user_task_log (task text, n int)`);
    const dir = tempFolder('sluice-user-tasks');
    const tasks = path.join(dir, 'tasks');
    mkdirSync(tasks);
    writeFileSync(
      path.join(tasks, 'send_welcome.mjs'),
      `export default async (payload, helpers) => { await helpers.withPgClient((c) => c.query('INSERT INTO user_task_log VALUES ($1, $2)', ['send_welcome', payload.n])); };\n`,
    );
    writeFileSync(
      path.join(tasks, 'resize_image.cjs'),
      `module.exports = async (payload, helpers) => { await helpers.query('INSERT INTO user_task_log VALUES ($1, $2)', ['resize_image', payload.n]); };\n`,
    );
    writeFileSync(path.join(tasks, 'README.md'), 'not a task\n');
    writeFileSync(path.join(dir, 'crontab'), '0 4 * * * send_welcome ?id=nightly_welcome {"n":0}\n');

    const worker = spawnCli(
      ['worker', '-c', db.url, '--tasks', tasks, '--user-crontab', path.join(dir, 'crontab'), '--worker-id', 'user-tasks', '--max-connections', '6', '--no-migrate'],
      {},
    );
    children.push(worker);
    await worker.waitForOutput(/running \(\d+ connections of a 6 budget\)/);
    for (let n = 1; n <= 5; n++) {
      await db.query(`SELECT graphile_worker.add_job('send_welcome', json_build_object('n', $1::int))`, [n]);
      await db.query(`SELECT graphile_worker.add_job('resize_image', json_build_object('n', $1::int))`, [n]);
    }
    await db.query(`SELECT sluice.create_stream('beside_user_tasks')`);
    await db.query(`SELECT graphile_worker.add_job('sluice_ingest', $1::json)`, [
      JSON.stringify({ stream: 'beside_user_tasks', events: [{ event_id: '0b7e3f52-8d5c-4c1e-9a57-3f2f7d1c9e01', occurred_at: new Date().toISOString(), payload: { k: 1 } }], ack: 'durable' }),
    ]);
    await waitFor(
      async () => (await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM user_task_log`)).rows[0]!.n,
      (n) => n === 10,
      { what: 'user tasks ran' },
    );
    const byTask = await db.query<{ task: string; ns: number[] }>(`SELECT task, array_agg(n ORDER BY n) AS ns FROM user_task_log GROUP BY task ORDER BY task`);
    expect(byTask.rows).toEqual([
      { task: 'resize_image', ns: [1, 2, 3, 4, 5] },
      { task: 'send_welcome', ns: [1, 2, 3, 4, 5] },
    ]);
    await waitFor(
      async () => (await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM sluice_data.beside_user_tasks`)).rows[0]!.n,
      (n) => n === 1,
      { what: 'sluice ingest beside the user tasks' },
    );
    // The user's schedule is known to graphile-worker (its crontab identifier is registered at start).
    const known = await db.query(`SELECT 1 FROM graphile_worker._private_known_crontabs WHERE identifier = 'nightly_welcome'`);
    expect(known.rowCount).toBe(1);
    worker.child.kill('SIGTERM');
    const exit = await worker.exited;
    expect(exit.code).toBe(0);
    // stderr is a pipe, not a terminal: every line is a JSON log line, the worker's own announcements included.
    const lines = exit.stderr.split('\n').filter((l) => l.trim() !== '');
    expect(lines.some((l) => l.includes('worker user-tasks stopped'))).toBe(true);
    const plain = lines.filter((l) => {
      try {
        return typeof (JSON.parse(l) as { msg?: unknown }).msg !== 'string';
      } catch {
        return true;
      }
    });
    expect(plain).toEqual([]);
  });

  it('refuses a task file that would replace one of sluice\'s tasks', async () => {
    const dir = tempFolder('sluice-user-tasks');
    writeFileSync(path.join(dir, 'sluice_drain.js'), 'export default async () => {};\n');
    const result = await runCli(['worker', '-c', db.url, '--tasks', dir, '--no-migrate', '--worker-id', 'clash'], { timeoutMs: 30_000 });
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/sluice_drain\.js would replace sluice's own task sluice_drain/);
  });
});
