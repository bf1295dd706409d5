/**
 * sluice inside a plain graphile-worker: a shop's own run() with its own task
 * beside sluice's exported task list and crontab. sluice builds its context on
 * the first sluice job (control queries on the host's pool, its own flush and
 * drain connections), registers those as its budget, and SluicePreset closes
 * them when the host worker stops.
 */
import { run } from 'graphile-worker';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { createSluicePreset, createSluiceTasks, sluiceCrontab, sluicePgTypes } from '../src/index.js';
import { createTestDatabase } from './helpers/database.js';
import { distinctIds, durableIds, makeEvents } from './helpers/events.js';
import { waitFor } from './helpers/wait.js';

const db = await createTestDatabase('graphile_interop');

async function pendingJobs(): Promise<number> {
  const { rows } = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM graphile_worker.jobs`);
  return rows[0]?.n ?? 0;
}

describe('sluice tasks in a plain graphile-worker run()', () => {
  it('ingests and drains beside a user task, counts only its own connections, and closes them on stop', async () => {
    await db.query(`SELECT sluice.create_stream('interop')`);
    const workerId = 'interop-host';
    const sluice = createSluiceTasks({ connectionString: db.url, flags: { workerId, flushers: 1, drainers: 1, migrate: false, budgetScope: 'database', heartbeatMs: 200 }, env: {} }); // scope: see cliEnv in helpers/cli.ts
    const seen: unknown[] = [];
    const pgPool = new pg.Pool({ connectionString: db.url, max: 4, types: sluicePgTypes });
    const runner = await run({
      pgPool,
      concurrency: 3,
      noHandleSignals: true,
      preset: createSluicePreset(sluice),
      taskList: {
        send_welcome_email: async (payload) => {
          seen.push(payload);
        },
        ...sluice.taskList,
      },
      crontab: sluiceCrontab,
    });
    try {
      const { events, unique } = makeEvents(300, 7);
      for (let i = 0; i < events.length; i += 50) {
        await db.query(`SELECT graphile_worker.add_job('sluice_ingest', $1::json)`, [JSON.stringify({ stream: 'interop', events: events.slice(i, i + 50) })]);
      }
      await db.query(`SELECT graphile_worker.add_job('send_welcome_email', '{"to":"a@example.com"}')`);

      await waitFor(async () => (await durableIds(db, 'interop')).rows, (n) => n === unique, { what: 'events durable via the host worker' });
      expect((await durableIds(db, 'interop')).ids).toEqual(distinctIds(events));
      await waitFor(() => Promise.resolve(seen.length), (n) => n === 1, { what: 'user task ran' });
      expect(seen).toEqual([{ to: 'a@example.com' }]);

      // Registered with its dedicated connections as its budget (the host pool is the host's).
      const reg = await db.query<{ budget: number; plan: { flushers: number; drainers: number; pool: number } }>(
        `SELECT budget, plan FROM sluice.workers WHERE id = $1`,
        [workerId],
      );
      expect(reg.rows).toEqual([{ budget: 2, plan: expect.objectContaining({ flushers: 1, drainers: 1, pool: 0 }) }]);
      // Maintenance runs on the host too: a health report stored, a rotation done, both jobs gone.
      await db.query(`SELECT graphile_worker.add_job('sluice_health_check', '{}', max_attempts => 1)`);
      await db.query(`SELECT graphile_worker.add_job('sluice_rotate_partitions', '{}', max_attempts => 1)`);
      await waitFor(pendingJobs, (n) => n === 0, { what: 'queue empty' });
      expect((await db.query(`SELECT 1 FROM sluice.health_reports`)).rowCount).toBeGreaterThan(0);

      // The same heartbeat loop as `sluice worker`: staging emptied behind its back (as crash
      // recovery empties UNLOGGED tables; here the unlogged sentinel alone) is recorded as a loss.
      expect((await db.query(`SELECT 1 FROM sluice.staging_losses`)).rowCount).toBe(0);
      await db.query(`TRUNCATE sluice.crash_sentinel`);
      await waitFor(async () => (await db.query(`SELECT 1 FROM sluice.staging_losses`)).rowCount, (n) => n === 1, {
        what: 'the emptied sentinel recorded by the hosted tasks',
        timeoutMs: 10_000,
      });
    } finally {
      await runner.stop();
      await pgPool.end();
    }
    // The preset closed sluice's own connections and deregistered.
    await waitFor(
      async () => (await db.query(`SELECT 1 FROM pg_stat_activity WHERE application_name LIKE $1`, [`sluice/${workerId}/%`])).rowCount,
      (n) => n === 0,
      { what: "sluice's dedicated connections closed" },
    );
    expect((await db.query(`SELECT 1 FROM sluice.workers WHERE id = $1`, [workerId])).rowCount).toBe(0);
  });

  it('without a database for its own connections, a sluice job fails naming DATABASE_URL', async () => {
    const sluice = createSluiceTasks({ env: {}, flags: { migrate: false } });
    const errors: string[] = [];
    const pgPool = new pg.Pool({ connectionString: db.url, max: 3 });
    pgPool.on('error', () => undefined);
    await db.query(`SELECT graphile_worker.add_job('sluice_health_check', '{}', max_attempts => 1)`);
    const runner = await run({
      pgPool,
      concurrency: 1,
      noHandleSignals: true,
      taskList: sluice.taskList,
    });
    try {
      await waitFor(
        async () => (await db.query<{ last_error: string | null }>(`SELECT last_error FROM graphile_worker.jobs WHERE task_identifier = 'sluice_health_check'`)).rows[0]?.last_error ?? null,
        (e) => e !== null,
        { what: 'job failed' },
      ).then((e) => errors.push(e!));
    } finally {
      await runner.stop();
      await pgPool.end();
      await sluice.close();
    }
    expect(errors[0]).toMatch(/DATABASE_URL/);
  });
});
