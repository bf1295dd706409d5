/**
 * Scheduled matview refresh (issue 15): readers never wait on a scheduled
 * refresh, unchanged sources are skipped and recorded, a broken view fails
 * alone (recorded, backed off) while the others refresh, and a running worker
 * rotates partitions and refreshes views on its schedule.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { createLogger } from '../src/logger.js';
import { refreshDueMatviews, refreshMatview } from '../src/matviews/refresh.js';
import { addMatview, getMatview } from '../src/matviews/matview-registry.js';
import { runCli } from './helpers/cli.js';
import { createTestDatabase } from './helpers/database.js';
import { waitFor } from './helpers/wait.js';
import { startWorker } from './helpers/worker.js';
import { tempFolders } from './helpers/temp.js';

const db = await createTestDatabase('matviews');
const tempFolder = tempFolders();
const log = createLogger('silent');
const clients: pg.Client[] = [];
afterAll(async () => {
  await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
});
async function connect(applicationName = 'sluice-test-matview'): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: db.url, application_name: applicationName });
  client.on('error', () => undefined);
  await client.connect();
  clients.push(client);
  return client;
}
const runs = async (name: string) =>
  (await db.query<{ status: string; mode: string | null }>(`SELECT status, mode FROM sluice.matview_runs WHERE name = $1 ORDER BY id`, [name])).rows;

await db.query(`CREATE TABLE public.src (id int PRIMARY KEY, v int NOT NULL)`);
await db.query(`INSERT INTO public.src SELECT i, i * 10 FROM generate_series(1, 5) i`);
// 0.2 s per row: a refresh of 5 rows takes about a second, long enough to read during it.
await db.query(`CREATE FUNCTION public.slow(x int) RETURNS int LANGUAGE plpgsql VOLATILE AS $$ BEGIN PERFORM pg_sleep(0.2); RETURN x; END $$`);

describe('scheduled refresh', () => {
  it('a reader running during a scheduled refresh sees no lock wait (CONCURRENTLY); a blocking refresh would make it wait', async () => {
    const client = await connect();
    await addMatview(client, { name: 'slow_view', sql: 'SELECT id, public.slow(v) AS v FROM public.src', uniqueColumns: ['id'], everyS: 60 });
    // First refresh: unpopulated, so plain.
    expect(await refreshMatview(client, 'slow_view', log)).toMatchObject({ status: 'refreshed', mode: 'plain', rows: 5 });
    await db.query(`UPDATE public.src SET v = v + 1`);
    await db.query(`UPDATE sluice.matviews SET next_attempt_at = now() WHERE name = 'slow_view'`);
    // The sources changed: once the counters show it, the sweep refreshes (CONCURRENTLY, a populated view).
    await waitFor(
      async () => (await db.query(`SELECT sluice.matview_watermark('sluice_views.slow_view')::text = m.watermark::text AS same FROM sluice.matviews m WHERE name = 'slow_view'`)).rows[0]?.same,
      (same) => same === false,
      { what: 'the update to show in pg_stat' },
    );
    const reader = await connect('reader');
    await reader.query(`SET lock_timeout = '100ms'`);
    const assertReadsDuringRefresh = async (refreshing: Promise<unknown>) => {
      await waitFor(async () => (await db.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE query LIKE 'REFRESH MATERIALIZED VIEW%slow_view%' AND state = 'active'`)).rows[0]?.n, (n) => n > 0, {
        what: 'the refresh to be running',
      });
      const read = await reader.query(`SELECT count(*)::int AS n FROM sluice_views.slow_view`).then(
        (r) => r.rows[0].n as number,
        (err: { code?: string }) => err.code,
      );
      await refreshing;
      return read;
    };
    const sweep = refreshDueMatviews(client, log);
    expect(await assertReadsDuringRefresh(sweep)).toBe(5);
    expect((await sweep).find((r) => r.name === 'slow_view')).toMatchObject({ status: 'refreshed', mode: 'concurrently' });

    // The control: with --allow-blocking the same reader waits and hits its lock_timeout (55P03).
    await db.query(`UPDATE sluice.matviews SET allow_blocking = true WHERE name = 'slow_view'`);
    expect(await assertReadsDuringRefresh(refreshMatview(client, 'slow_view', log, { force: true }))).toBe('55P03');
    await db.query(`UPDATE sluice.matviews SET allow_blocking = false WHERE name = 'slow_view'`);
  });

  it("a blocking refresh holds the view's lock only for the REFRESH: its rows are counted after the commit", async () => {
    const client = await connect();
    await db.query(`CREATE TABLE public.held (id int PRIMARY KEY)`);
    await db.query(`INSERT INTO public.held SELECT generate_series(1, 100)`);
    await addMatview(client, { name: 'held_view', sql: 'SELECT id FROM public.held', uniqueColumns: ['id'], everyS: 60 });
    // What the refreshing session holds on the view at the moment sluice sends its count, seen from another session.
    const observer = await connect('observer');
    let heldAtCount: string[] | undefined;
    const send = client.query.bind(client) as (...args: unknown[]) => Promise<unknown>;
    (client as unknown as { query: (...args: unknown[]) => Promise<unknown> }).query = async (...args: unknown[]) => {
      if (typeof args[0] === 'string' && /count\(\*\)[\s\S]*held_view/.test(args[0])) {
        const { rows } = await observer.query<{ mode: string }>(
          `SELECT mode FROM pg_locks WHERE relation = 'sluice_views.held_view'::regclass AND pid = $1 AND granted`,
          [(client as unknown as { processID: number }).processID],
        );
        heldAtCount = rows.map((r) => r.mode);
      }
      return send(...args);
    };
    // The first refresh of an unpopulated view is plain: ACCESS EXCLUSIVE, readers wait while it is held.
    expect(await refreshMatview(client, 'held_view', log)).toMatchObject({ status: 'refreshed', mode: 'plain', rows: 100 });
    expect(heldAtCount).toEqual([]);
    expect((await getMatview(db.pool, 'held_view')).last_rows).toBe('100');
  });

  it('unchanged sources: skipped and recorded as skipped; a change: refreshed', async () => {
    const client = await connect();
    await db.query(`CREATE TABLE public.counts (k int PRIMARY KEY, n int NOT NULL)`);
    await addMatview(client, { name: 'count_view', sql: 'SELECT k, n FROM public.counts', uniqueColumns: ['k'], everyS: 60 });
    expect(await refreshMatview(client, 'count_view', log)).toMatchObject({ status: 'refreshed', rows: 0 });
    expect(await refreshMatview(client, 'count_view', log)).toMatchObject({ status: 'skipped' });
    expect((await getMatview(db.pool, 'count_view')).last_status).toBe('skipped');
    await db.query(`INSERT INTO public.counts VALUES (1, 1), (2, 2)`);
    // pg_stat counters arrive within about a second: until then the view is (correctly, by its watermark) skipped.
    const result = await waitFor(() => refreshMatview(client, 'count_view', log), (r) => r.status === 'refreshed', { intervalMs: 200 });
    expect(result.rows).toBe(2);
    expect((await runs('count_view')).map((r) => r.status)).toEqual(expect.arrayContaining(['refreshed', 'skipped']));
    expect((await runs('count_view'))[1]).toEqual({ status: 'skipped', mode: null });
  });

  it('broken SQL: the failure is recorded and backed off, the other views still refresh', async () => {
    const client = await connect();
    await db.query(`CREATE TABLE public.divs (id int PRIMARY KEY, d int NOT NULL)`);
    await db.query(`INSERT INTO public.divs VALUES (1, 1)`);
    await addMatview(client, { name: 'a_broken', sql: 'SELECT id, 10 / d AS q FROM public.divs', uniqueColumns: ['id'], everyS: 60 });
    await addMatview(client, { name: 'b_fine', sql: 'SELECT id, d FROM public.divs', uniqueColumns: ['id'], everyS: 60 });
    await db.query(`INSERT INTO public.divs VALUES (2, 0)`); // 10 / 0 at refresh time
    await db.query(`UPDATE sluice.matviews SET enabled = (name IN ('a_broken', 'b_fine'))`);
    const results = await refreshDueMatviews(client, log);
    expect(results.map((r) => [r.name, r.status])).toEqual([
      ['a_broken', 'failed'],
      ['b_fine', 'refreshed'],
    ]);
    const broken = await getMatview(db.pool, 'a_broken');
    expect(broken).toMatchObject({ last_status: 'failed', failures: 1 });
    expect(broken.last_error).toMatch(/division by zero|22012/);
    expect(broken.next_attempt_at.getTime()).toBeGreaterThan(Date.now());
    expect((await runs('a_broken')).map((r) => r.status)).toEqual(['failed']);
    // Not due again until its backoff ends.
    expect((await refreshDueMatviews(client, log)).map((r) => r.name)).not.toContain('a_broken');
    const listed = await runCli(['matview', 'list', '--json'], { env: { DATABASE_URL: db.url } });
    expect(listed.code, listed.stderr).toBe(0);
    const row = (JSON.parse(listed.stdout) as Array<{ name: string; last_error: string; failures: number }>).find((v) => v.name === 'a_broken');
    expect(row).toMatchObject({ failures: 1 });
    expect(row!.last_error).toMatch(/division by zero/);
  });
});

describe('a running worker', () => {
  it('rotates partitions and refreshes matviews on its schedule', { timeout: 150_000 }, async () => {
    await db.query(`UPDATE sluice.matviews SET enabled = false`);
    const added = await runCli(['matview', 'add', 'events_top_types', '--example'], { env: { DATABASE_URL: db.url } });
    expect(added.code, added.stderr).toBe(0);
    await db.query(`INSERT INTO sluice_data.events (event_id, occurred_at, payload, received_at) VALUES (gen_random_uuid(), now(), '{"type": "click"}', now())`);
    // A stream whose premake is not satisfied yet, so the rotation has work to do.
    await db.query(`SELECT sluice.create_stream('sched', '[]', '{"premake_months": 6}')`);
    const dir = tempFolder('sluice-crontab');
    const crontab = path.join(dir, 'crontab');
    // The production crontab rotates hourly; this one every minute (the shortest cron step).
    writeFileSync(crontab, '* * * * * sluice_refresh_matview ?id=sluice_refresh_matview&max=1\n* * * * * sluice_rotate_partitions ?id=sluice_rotate_partitions&max=1\n');
    await startWorker(db, { crontab });
    await waitFor(async () => (await db.query(`SELECT count(*)::int AS n FROM sluice.partition_runs WHERE stream = 'sched' AND finished_at IS NOT NULL`)).rows[0]?.n, (n) => n > 0, {
      timeoutMs: 130_000,
      intervalMs: 500,
      what: 'a scheduled rotation',
    });
    const run = (await db.query(`SELECT created, error FROM sluice.partition_runs WHERE stream = 'sched' ORDER BY id LIMIT 1`)).rows[0];
    expect(run?.error).toBeNull();
    expect(run?.created.length).toBe(5); // months +2 … +6
    const view = await waitFor(() => getMatview(db.pool, 'events_top_types'), (v) => v.last_status === 'refreshed', { timeoutMs: 130_000, intervalMs: 500 });
    expect(view.last_rows).toBe('1');
    const rows = (await db.query(`SELECT type, events::int FROM sluice_views.events_top_types`)).rows;
    expect(rows).toEqual([{ type: 'click', events: 1 }]);
  });
});
