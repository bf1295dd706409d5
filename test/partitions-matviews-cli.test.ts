/**
 * Issue 15's promises no other test reached, through the real CLI where the
 * issue names a command. Postgres is the oracle:
 * - `sluice partitions list` shows every partition of a stream with its schema,
 *   range, state (attached / detach pending / detached / archived), estimated
 *   rows and size exactly as pg_class / pg_inherits / pg_total_relation_size say;
 * - `sluice partitions rotate --now …` (not a dry run) drops the months past
 *   retention, premakes for the new clock and records the run;
 * - `sluice matview add --existing` refuses a view without a unique index
 *   (REFRESH … CONCURRENTLY needs one) and registers nothing, accepts one with it;
 * - `sluice matview disable / enable / drop`: a disabled view is not refreshed by
 *   the due sweep, enabled again it is; drop unregisters it, and drops the view
 *   only when sluice created it;
 * - one refresh at a time per view (the advisory lock held elsewhere: `busy`,
 *   nothing recorded);
 * - a view's own statement_timeout cancels a refresh that runs longer (recorded
 *   as failed, backed off); a larger timeout lets the next refresh through.
 */
import { describe, expect, it } from 'vitest';
import { createLogger } from '../src/logger.js';
import { refreshDueMatviews, refreshMatview } from '../src/matviews/refresh.js';
import { getMatview } from '../src/matviews/matview-registry.js';
import { monthLabel, monthOf, monthStartDate, partitionName } from '../src/partitions/months.js';
import { runCli, stderrRecords } from './helpers/cli.js';
import { createTestDatabase, sessionClients } from './helpers/database.js';

const db = await createTestDatabase('partitions_matviews_cli');
const log = createLogger('silent');
const env = { DATABASE_URL: db.url };
const connect = sessionClients(db, 'sluice-test-p15');
const sluice = (args: string[]) => runCli(args, { env });
const count = async (sql: string, values: unknown[] = []) => Number((await db.query<{ n: string }>(sql, values)).rows[0]!.n);
const runCount = (name: string) => count(`SELECT count(*) AS n FROM sluice.matview_runs WHERE name = $1`, [name]);
const exists = async (relation: string) => (await db.query(`SELECT to_regclass($1) IS NOT NULL AS e`, [relation])).rows[0]?.e as boolean;

const R = monthOf(Date.now());
/** Mid-month of R + k (an ISO string: the CLI's --now). */
const midMonth = (k: number) => `${monthStartDate(R + k).slice(0, 8)}15T12:00:00.000Z`;

interface ListedPartition {
  name: string;
  schema: string;
  from: string;
  to: string;
  state: string;
  estimated_rows: number | null;
  bytes: number;
}

describe('sluice partitions', () => {
  it('list shows each partition with schema, range, state (attached, detach pending, detached, archived), estimated rows and size as Postgres has them', async () => {
    // premake 3: R-1 … R+3 (create_stream makes R-1 … R+1, premake_partitions the rest).
    await db.query(`SELECT sluice.create_stream('lst', '[]', '{"premake_months": 3}')`);
    await db.query(`SELECT sluice.premake_partitions('lst')`);
    const p = (k: number) => partitionName('lst', R + k);
    expect((await db.query(`SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'sluice_data.lst'::regclass ORDER BY 1`)).rows.map((r) => r.relname)).toEqual(
      [-1, 0, 1, 2, 3].map(p),
    );
    const insert = (k: number, rows: number) =>
      db.query(`INSERT INTO sluice_data.lst (event_id, occurred_at, payload, received_at) SELECT gen_random_uuid(), $1::timestamptz + make_interval(secs => i), '{}', now() FROM generate_series(1, $2::int) i`, [
        `${monthStartDate(R + k)}T10:00:00Z`,
        rows,
      ]);
    await insert(0, 37);
    await insert(1, 4);
    await insert(-1, 2);
    await db.query(`ANALYZE sluice_data.${p(0)}`); // this month: 37 rows, analysed
    // detached and moved to sluice_archive; R+1: detached (4 rows, never analysed); R+2: detach pending.
    await db.query(`ALTER TABLE sluice_data.lst DETACH PARTITION sluice_data.${p(-1)}`);
    await db.query(`ALTER TABLE sluice_data.${p(-1)} SET SCHEMA sluice_archive`);
    await db.query(`ALTER TABLE sluice_data.lst DETACH PARTITION sluice_data.${p(1)}`);
    const holder = await connect('old-snapshot');
    await holder.query('BEGIN');
    await holder.query('SELECT count(*) FROM sluice_data.lst');
    const detacher = await connect('manual-detach');
    // Phase one commits (the partition is marked pending); phase two waits for the holder until the timeout cancels it.
    await detacher.query(`SET statement_timeout = '500ms'`);
    const code = await detacher.query(`ALTER TABLE sluice_data.lst DETACH PARTITION sluice_data.${p(2)} CONCURRENTLY`).then(
      () => 'finished',
      (err: { code?: string }) => err.code,
    );
    expect(code).toBe('57014');
    await holder.query('COMMIT');

    // What Postgres says, per table.
    const truth = (
      await db.query<{ schema: string; name: string; reltuples: number; heap: string; bytes: string; attached: boolean; pending: boolean | null; bound: string | null }>(
        `SELECT n.nspname AS schema, c.relname AS name, c.reltuples::float8 AS reltuples, pg_relation_size(c.oid)::text AS heap,
                pg_total_relation_size(c.oid)::text AS bytes, i.inhrelid IS NOT NULL AS attached, i.inhdetachpending AS pending,
                pg_get_expr(c.relpartbound, c.oid) AS bound
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           LEFT JOIN pg_inherits i ON i.inhrelid = c.oid AND i.inhparent = 'sluice_data.lst'::regclass
          WHERE c.relkind = 'r' AND n.nspname IN ('sluice_data', 'sluice_archive') AND c.relname LIKE 'lst\\_p%' ORDER BY c.relname`,
      )
    ).rows;
    expect(truth.map((t) => [t.schema, t.name, t.attached, t.pending])).toEqual([
      ['sluice_archive', p(-1), false, null],
      ['sluice_data', p(0), true, false],
      ['sluice_data', p(1), false, null],
      ['sluice_data', p(2), true, true],
      ['sluice_data', p(3), true, false],
    ]);
    expect(truth.find((t) => t.name === p(0))!.reltuples).toBe(37);
    expect(truth.find((t) => t.name === p(1))!.reltuples).toBe(-1); // never analysed, has pages
    expect(Number(truth.find((t) => t.name === p(1))!.heap)).toBeGreaterThan(0);
    expect(truth.find((t) => t.name === p(3))!).toMatchObject({ reltuples: -1, heap: '0' }); // premade, empty, never analysed

    const listed = await sluice(['partitions', 'list', '--stream', 'lst', '--json']);
    expect(listed.code, listed.stderr).toBe(0);
    const out = JSON.parse(listed.stdout) as Array<{ stream: string; partitions: ListedPartition[] }>;
    expect(out.map((s) => s.stream)).toEqual(['lst']);
    const partitions = out[0]!.partitions;
    const state = { [p(-1)]: 'archived', [p(0)]: 'attached', [p(1)]: 'detached', [p(2)]: 'detach_pending', [p(3)]: 'attached' };
    const rows = { [p(-1)]: null, [p(0)]: 37, [p(1)]: null, [p(2)]: 0, [p(3)]: 0 };
    expect(partitions).toEqual(
      [-1, 0, 1, 2, 3].map((k) => {
        const t = truth.find((x) => x.name === p(k))!;
        return { name: p(k), schema: t.schema, from: monthLabel(R + k), to: monthLabel(R + k + 1), state: state[p(k)], estimated_rows: rows[p(k)], bytes: Number(t.bytes) };
      }),
    );
    // R-1 held 2 rows, never analysed: "not analysed", like R+1; sizes are real sizes.
    expect(truth.find((t) => t.name === p(-1))!.reltuples).toBe(-1);
    for (const x of partitions) expect(x.bytes).toBeGreaterThan(0);
    // The ranges are the partition bounds Postgres holds for the attached ones.
    for (const k of [0, 2, 3]) {
      expect(truth.find((t) => t.name === p(k))!.bound).toBe(`FOR VALUES FROM ('${monthStartDate(R + k)} 00:00:00+00') TO ('${monthStartDate(R + k + 1)} 00:00:00+00')`);
    }

    const human = await sluice(['partitions', 'list', '--stream', 'lst']);
    expect(human.code, human.stderr).toBe(0);
    expect(human.stdout).toMatch(/^lst: no retention; premake 3, /);
    expect(human.stdout).toMatch(/partition\s+from\s+to\s+state\s+rows≈\s+size/);
    for (const k of [-1, 0, 1, 2, 3]) expect(human.stdout).toContain(`${truth.find((t) => t.name === p(k))!.schema}.${p(k)}`);
    expect(human.stdout).toMatch(new RegExp(`sluice_data\\.${p(2)}\\s+${monthLabel(R + 2)}\\s+${monthLabel(R + 3)}\\s+detach pending`));
    expect(human.stdout).toMatch(new RegExp(`sluice_data\\.${p(0)}\\s+${monthLabel(R)}\\s+${monthLabel(R + 1)}\\s+attached\\s+37\\s`));
    expect(human.stdout).toMatch(new RegExp(`sluice_data\\.${p(1)}\\s+\\S+\\s+\\S+\\s+detached\\s+not analysed`));
  });

  it('rotate (not a dry run) with a clock past retention: exits 0, the old months are dropped, the new clock is premade, the run is recorded', async () => {
    await db.query(`SELECT sluice.create_stream('rot', '[]', '{"retention_months": 2, "retention_mode": "drop", "premake_months": 1}')`);
    await db.query(`SELECT sluice.premake_partitions('rot')`);
    const p = (k: number) => partitionName('rot', R + k);
    const attached = async () =>
      (await db.query(`SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'sluice_data.rot'::regclass ORDER BY 1`)).rows.map((r) => r.relname as string);
    expect(await attached()).toEqual([p(-1), p(0), p(1)]);
    await db.query(`INSERT INTO sluice_data.rot (event_id, occurred_at, payload, received_at) VALUES (gen_random_uuid(), $1, '{}', now())`, [`${monthStartDate(R)}T10:00:00Z`]);

    // At mid R+3, retention 2 keeps R+2 and R+3: R-1, R, R+1 go; premake 1 wants R+2 … R+4.
    const now = midMonth(3);
    const rotated = await sluice(['partitions', 'rotate', '--stream', 'rot', '--now', now, '--json']);
    expect(rotated.code, rotated.stderr).toBe(0);
    const [report] = JSON.parse(rotated.stdout) as Array<Record<string, unknown>>;
    expect(report).toMatchObject({
      stream: 'rot',
      clock_at: now,
      dry_run: false,
      created: [p(2), p(3), p(4)],
      detached: [p(-1), p(0), p(1)],
      dropped: [p(-1), p(0), p(1)],
      archived: [],
      finalized: [],
      skipped: [],
      rejected: 0,
    });
    expect(report!.error ?? null).toBeNull();

    expect(await attached()).toEqual([p(2), p(3), p(4)]);
    for (const k of [-1, 0, 1]) {
      expect(await exists(`sluice_data.${p(k)}`), p(k)).toBe(false);
      expect(await exists(`sluice_archive.${p(k)}`), p(k)).toBe(false);
    }
    const runs = (await db.query(`SELECT id::text, runner, clock_at, finished_at, created, detached, dropped, archived, finalized, rejected::int, skipped, error FROM sluice.partition_runs WHERE stream = 'rot'`)).rows;
    expect(runs).toHaveLength(1);
    expect(runs[0]).toMatchObject({
      id: report!.run_id,
      clock_at: new Date(now),
      created: [p(2), p(3), p(4)],
      detached: [p(-1), p(0), p(1)],
      dropped: [p(-1), p(0), p(1)],
      archived: [],
      finalized: [],
      rejected: 0,
      skipped: [],
      error: null,
    });
    expect(runs[0]!.runner).toMatch(/^cli\//);
    expect(runs[0]!.finished_at).toBeInstanceOf(Date);

    // Human output of the same command at the same clock: the plan, then nothing left to do.
    const again = await sluice(['partitions', 'rotate', '--stream', 'rot', '--now', now]);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toContain(`rot at ${now} (window ${monthLabel(R + 2)} … ${monthLabel(R + 4)}, keep from ${monthLabel(R + 2)}):`);
    expect(again.stdout).toMatch(/premake: {2}—\n {2}expire: {3}— \(drop\)/);
    expect(stderrRecords(again.stderr).map((r) => r.msg)).toContain('rot: created 0, finalized 0, detached 0, dropped 0, archived 0, rejected 0 staged rows');
    expect(await count(`SELECT count(*) AS n FROM sluice.partition_runs WHERE stream = 'rot'`)).toBe(2);
  });
});

describe('sluice matview', () => {
  it('add --existing refuses a view without a unique index (REFRESH … CONCURRENTLY needs one) and registers nothing; with one it is registered and refreshable', async () => {
    await db.query(`CREATE TABLE public.scores (id int PRIMARY KEY, points int NOT NULL)`);
    await db.query(`INSERT INTO public.scores VALUES (1, 10), (2, 20)`);
    await db.query(`CREATE MATERIALIZED VIEW sluice_views.ex_scores AS SELECT id, points FROM public.scores`);

    const refused = await sluice(['matview', 'add', 'ex_scores', '--existing', '--unique', 'id']);
    expect(refused.code).toBe(1);
    const error = stderrRecords(refused.stderr).find((r) => r.level === 50)!;
    expect(error).toMatchObject({ code: 'no_unique_index' });
    expect(error.msg).toBe('sluice_views."ex_scores" has no unique index on (id) without WHERE or expressions: REFRESH … CONCURRENTLY needs one (found: none)');
    expect(await count(`SELECT count(*) AS n FROM sluice.matviews WHERE name = 'ex_scores'`)).toBe(0);
    expect(await exists('sluice_views.ex_scores')).toBe(true); // the user's view is left alone

    // A plain (non-unique) index and a partial unique index are no better.
    await db.query(`CREATE INDEX ex_scores_id ON sluice_views.ex_scores (id)`);
    await db.query(`CREATE UNIQUE INDEX ex_scores_id_partial ON sluice_views.ex_scores (id) WHERE points > 0`);
    const stillRefused = await sluice(['matview', 'add', 'ex_scores', '--existing', '--unique', 'id']);
    expect(stillRefused.code).toBe(1);
    expect(stderrRecords(stillRefused.stderr).find((r) => r.level === 50)).toMatchObject({ code: 'no_unique_index' });
    expect(await count(`SELECT count(*) AS n FROM sluice.matviews WHERE name = 'ex_scores'`)).toBe(0);

    await db.query(`CREATE UNIQUE INDEX ex_scores_id_unique ON sluice_views.ex_scores (id)`);
    const added = await sluice(['matview', 'add', 'ex_scores', '--existing', '--unique', 'id', '--every', '5m']);
    expect(added.code, added.stderr).toBe(0);
    const view = await getMatview(db.pool, 'ex_scores');
    expect(view).toMatchObject({ unique_columns: ['id'], every_s: 300, enabled: true, created_by_sluice: false, last_status: null });

    await db.query(`UPDATE public.scores SET points = points + 1`);
    const refreshed = await sluice(['matview', 'refresh', 'ex_scores', '--json']);
    expect(refreshed.code, refreshed.stderr).toBe(0);
    // Populated by its CREATE, so CONCURRENTLY (the unique index makes that possible).
    expect(JSON.parse(refreshed.stdout)).toMatchObject({ name: 'ex_scores', status: 'refreshed', mode: 'concurrently', rows: 2 });
    expect((await db.query(`SELECT id, points FROM sluice_views.ex_scores ORDER BY id`)).rows).toEqual([
      { id: 1, points: 11 },
      { id: 2, points: 21 },
    ]);
    expect((await db.query(`SELECT status, mode, rows::int FROM sluice.matview_runs WHERE name = 'ex_scores'`)).rows).toEqual([{ status: 'refreshed', mode: 'concurrently', rows: 2 }]);
  });

  it('add says plainly what is wrong: a second add of a name, a timeout out of range, --existing without --unique; nothing changes', async () => {
    const before = await count(`SELECT count(*) AS n FROM sluice.matviews`);
    const errorOf = (r: { stderr: string }) => stderrRecords(r.stderr).find((l) => l.level === 50);

    const first = await sluice(['matview', 'add', 'twice', '--sql', 'SELECT 1 AS k', '--unique', 'k']);
    expect(first.code, first.stderr).toBe(0);
    const again = await sluice(['matview', 'add', 'twice', '--sql', 'SELECT 2 AS k', '--unique', 'k']);
    expect(again.code).toBe(1);
    expect(errorOf(again)).toMatchObject({ code: 'matview_exists' });
    expect(errorOf(again)?.msg).toContain('already registered');
    expect((await db.query(`SELECT sql FROM sluice.matviews WHERE name = 'twice'`)).rows).toEqual([{ sql: 'SELECT 1 AS k' }]);

    for (const bad of ['50', '1.5', '86400001']) {
      const r = await sluice(['matview', 'add', 'timed', '--sql', 'SELECT 1 AS k', '--unique', 'k', '--statement-timeout-ms', bad]);
      expect(r.code, bad).toBe(1);
      expect(errorOf(r), bad).toMatchObject({ code: 'invalid_argument' });
      expect(errorOf(r)?.msg).toContain('whole milliseconds from 100 to 86400000');
    }
    expect(await exists('sluice_views.timed')).toBe(false);

    const noUnique = await sluice(['matview', 'add', 'ex_scores_2', '--existing']);
    expect(noUnique.code).toBe(1);
    expect(errorOf(noUnique)).toMatchObject({ code: 'invalid_unique_columns' });
    expect(errorOf(noUnique)?.msg).toContain('--existing needs --unique');
    expect(await count(`SELECT count(*) AS n FROM sluice.matviews`)).toBe(before + 1);
  });

  it('disable: the due sweep leaves the view alone; enable: the sweep refreshes it; drop: unregistered, and the view dropped only when sluice made it', async () => {
    await db.query(`CREATE TABLE public.hits (page text PRIMARY KEY, n int NOT NULL)`);
    await db.query(`INSERT INTO public.hits VALUES ('a', 1), ('b', 2), ('c', 3)`);
    const added = await sluice(['matview', 'add', 'hits_view', '--sql', 'SELECT page, n FROM public.hits', '--unique', 'page', '--every', '1m']);
    expect(added.code, added.stderr).toBe(0);
    // Only this view is due in this test.
    await db.query(`UPDATE sluice.matviews SET next_attempt_at = now() + interval '1 day' WHERE name <> 'hits_view'`);

    const disabled = await sluice(['matview', 'disable', 'hits_view']);
    expect(disabled.code, disabled.stderr).toBe(0);
    await db.query(`UPDATE sluice.matviews SET next_attempt_at = now() - interval '1 hour' WHERE name = 'hits_view'`); // long due
    expect((await getMatview(db.pool, 'hits_view')).enabled).toBe(false);
    const client = await connect();
    expect(await refreshDueMatviews(client, log)).toEqual([]);
    expect(await runCount('hits_view')).toBe(0);
    expect((await db.query(`SELECT relispopulated FROM pg_class WHERE oid = 'sluice_views.hits_view'::regclass`)).rows[0]?.relispopulated).toBe(false);
    const listed = await sluice(['matview', 'list', '--json']);
    expect((JSON.parse(listed.stdout) as Array<{ name: string; enabled: boolean }>).find((v) => v.name === 'hits_view')).toMatchObject({ enabled: false });

    // Enabling makes it due at once, even when its next attempt was far off.
    await db.query(`UPDATE sluice.matviews SET next_attempt_at = now() + interval '1 day' WHERE name = 'hits_view'`);
    const enabled = await sluice(['matview', 'enable', 'hits_view']);
    expect(enabled.code, enabled.stderr).toBe(0);
    const results = await refreshDueMatviews(client, log);
    expect(results.map((r) => [r.name, r.status, r.mode, r.rows])).toEqual([['hits_view', 'refreshed', 'plain', 3]]);
    expect(await count(`SELECT count(*) AS n FROM sluice_views.hits_view`)).toBe(3);
    expect(await runCount('hits_view')).toBe(1);

    // Made by sluice (add --sql): drop removes the registration, its runs and the view.
    const dropped = await sluice(['matview', 'drop', 'hits_view']);
    expect(dropped.code, dropped.stderr).toBe(0);
    expect(stderrRecords(dropped.stderr).map((r) => r.msg)).toContain('dropped sluice_views.hits_view');
    expect(await count(`SELECT count(*) AS n FROM sluice.matviews WHERE name = 'hits_view'`)).toBe(0);
    expect(await runCount('hits_view')).toBe(0);
    expect(await exists('sluice_views.hits_view')).toBe(false);

    // Made by the user (add --existing): unregistered, the view is kept with its data.
    await db.query(`CREATE MATERIALIZED VIEW sluice_views.own_hits AS SELECT page, n FROM public.hits`);
    await db.query(`CREATE UNIQUE INDEX own_hits_page ON sluice_views.own_hits (page)`);
    const registered = await sluice(['matview', 'add', 'own_hits', '--existing', '--unique', 'page']);
    expect(registered.code, registered.stderr).toBe(0);
    const unregistered = await sluice(['matview', 'drop', 'own_hits']);
    expect(unregistered.code, unregistered.stderr).toBe(0);
    expect(stderrRecords(unregistered.stderr).map((r) => r.msg)).toContain('unregistered own_hits (the view you made is kept)');
    expect(await count(`SELECT count(*) AS n FROM sluice.matviews WHERE name = 'own_hits'`)).toBe(0);
    expect(await count(`SELECT count(*) AS n FROM sluice_views.own_hits`)).toBe(3);
    // Unregistered views are no longer refreshed or listed.
    await db.query(`UPDATE sluice.matviews SET next_attempt_at = now()`);
    const swept = (await refreshDueMatviews(client, log)).map((r) => r.name);
    expect(swept).not.toContain('hits_view');
    expect(swept).not.toContain('own_hits');
    const after = await sluice(['matview', 'list', '--json']);
    const names = (JSON.parse(after.stdout) as Array<{ name: string }>).map((v) => v.name);
    expect(names).not.toContain('hits_view');
    expect(names).not.toContain('own_hits');
  });

  it("one refresh at a time per view: while another session holds the view's advisory lock a refresh is busy and records nothing", async () => {
    await db.query(`CREATE TABLE public.laps (id int PRIMARY KEY, t int NOT NULL)`);
    await db.query(`INSERT INTO public.laps SELECT i, i FROM generate_series(1, 4) i`);
    // 0.25 s per row: a refresh of 4 rows takes about a second.
    await db.query(`CREATE FUNCTION public.slow_lap(x int) RETURNS int LANGUAGE plpgsql VOLATILE AS $$ BEGIN PERFORM pg_sleep(0.25); RETURN x; END $$`);
    const added = await sluice(['matview', 'add', 'laps_view', '--sql', 'SELECT id, public.slow_lap(t) AS t FROM public.laps', '--unique', 'id']);
    expect(added.code, added.stderr).toBe(0);
    const client = await connect();
    expect(await refreshMatview(client, 'laps_view', log)).toMatchObject({ status: 'refreshed', mode: 'plain', rows: 4 });
    const before = await getMatview(db.pool, 'laps_view');
    expect(await runCount('laps_view')).toBe(1);

    const holder = await connect('lock-holder');
    await holder.query('BEGIN');
    expect((await holder.query(`SELECT pg_try_advisory_xact_lock(hashtext('sluice.matview:' || 'laps_view')) AS locked`)).rows[0]?.locked).toBe(true);
    const busy = await refreshMatview(client, 'laps_view', log, { force: true });
    expect(busy).toMatchObject({ name: 'laps_view', status: 'busy' });
    expect(busy.mode).toBeUndefined();
    // The CLI says so and exits 0.
    const cli = await sluice(['matview', 'refresh', 'laps_view']);
    expect(cli.code, cli.stderr).toBe(0);
    expect(stderrRecords(cli.stderr).map((r) => r.msg)).toContain('laps_view is being refreshed by another session right now');
    expect(await runCount('laps_view')).toBe(1);
    const during = await getMatview(db.pool, 'laps_view');
    expect([during.last_started_at, during.last_status, during.failures]).toEqual([before.last_started_at, 'refreshed', 0]);
    await holder.query('COMMIT');
    expect(await refreshMatview(client, 'laps_view', log, { force: true })).toMatchObject({ status: 'refreshed', mode: 'concurrently' });
    expect(await runCount('laps_view')).toBe(2);

    // Two refreshes started together: one runs, the other is busy (not queued behind it, not run twice).
    const other = await connect();
    const both = await Promise.all([refreshMatview(client, 'laps_view', log, { force: true }), refreshMatview(other, 'laps_view', log, { force: true })]);
    expect(both.map((r) => r.status).sort()).toEqual(['busy', 'refreshed']);
    expect(await runCount('laps_view')).toBe(3);
  });

  it("a refresh longer than the view's statement_timeout is cancelled, recorded as failed and backed off; with a larger timeout the next refresh succeeds", async () => {
    await db.query(`CREATE TABLE public.slow_src (id int PRIMARY KEY, v int NOT NULL)`);
    await db.query(`INSERT INTO public.slow_src SELECT i, i FROM generate_series(1, 8) i`);
    // 0.2 s per row: 1.6 s for 8 rows, well past a 300 ms timeout.
    await db.query(`CREATE FUNCTION public.slow_v(x int) RETURNS int LANGUAGE plpgsql VOLATILE AS $$ BEGIN PERFORM pg_sleep(0.2); RETURN x; END $$`);
    const added = await sluice(['matview', 'add', 'timed_view', '--sql', 'SELECT id, public.slow_v(v) AS v FROM public.slow_src', '--unique', 'id', '--every', '1m', '--statement-timeout-ms', '300']);
    expect(added.code, added.stderr).toBe(0);
    expect((await getMatview(db.pool, 'timed_view')).statement_timeout_ms).toBe(300);
    await db.query(`UPDATE sluice.matviews SET next_attempt_at = now() + interval '1 day' WHERE name <> 'timed_view'`);

    const client = await connect();
    const [failed] = await refreshDueMatviews(client, log);
    expect(failed).toMatchObject({ name: 'timed_view', status: 'failed', error: 'canceling statement due to statement timeout' });
    expect(failed!.durationMs).toBeGreaterThanOrEqual(300);
    expect(failed!.durationMs).toBeLessThan(1500); // cancelled, not run to its end (1.6 s)
    // The timeout was the refresh's own: the session is back to no timeout.
    expect((await client.query(`SHOW statement_timeout`)).rows[0]?.statement_timeout).toBe('0');
    const view = await getMatview(db.pool, 'timed_view');
    expect(view).toMatchObject({ last_status: 'failed', last_error: 'canceling statement due to statement timeout', failures: 1, last_refreshed_at: null });
    // Backoff: every (60 s) × 2^0 from the failure.
    const backoff = (view.next_attempt_at.getTime() - view.last_started_at!.getTime()) / 1000;
    expect(backoff).toBeGreaterThanOrEqual(60);
    expect(backoff).toBeLessThan(65);
    expect((await db.query(`SELECT status, error FROM sluice.matview_runs WHERE name = 'timed_view'`)).rows).toEqual([{ status: 'failed', error: 'canceling statement due to statement timeout' }]);
    expect((await db.query(`SELECT relispopulated FROM pg_class WHERE oid = 'sluice_views.timed_view'::regclass`)).rows[0]?.relispopulated).toBe(false);
    // Not due while backing off.
    expect(await refreshDueMatviews(client, log)).toEqual([]);
    const listed = await sluice(['matview', 'list', '--json']);
    expect((JSON.parse(listed.stdout) as Array<{ name: string }>).find((v) => v.name === 'timed_view')).toMatchObject({ failures: 1, last_status: 'failed', last_error: 'canceling statement due to statement timeout' });
    // The CLI's refresh fails the same way (exit 1, the timeout named); a second failure doubles the backoff.
    const cli = await sluice(['matview', 'refresh', 'timed_view']);
    expect(cli.code).toBe(1);
    expect(stderrRecords(cli.stderr).find((r) => r.level === 50)).toMatchObject({ code: 'refresh_failed', msg: 'refresh of timed_view failed: canceling statement due to statement timeout' });
    const twice = await getMatview(db.pool, 'timed_view');
    expect(twice.failures).toBe(2);
    const backoff2 = (twice.next_attempt_at.getTime() - twice.last_started_at!.getTime()) / 1000;
    expect(backoff2).toBeGreaterThanOrEqual(120);
    expect(backoff2).toBeLessThan(125);

    // Raise the view's timeout: the next refresh completes.
    await db.query(`UPDATE sluice.matviews SET statement_timeout_ms = 10000 WHERE name = 'timed_view'`);
    const ok = await refreshMatview(client, 'timed_view', log);
    expect(ok).toMatchObject({ status: 'refreshed', mode: 'plain', rows: 8 });
    expect(ok.durationMs).toBeGreaterThanOrEqual(1600);
    expect(await getMatview(db.pool, 'timed_view')).toMatchObject({ last_status: 'refreshed', last_error: null, failures: 0, last_rows: '8' });
    expect((await db.query(`SELECT status FROM sluice.matview_runs WHERE name = 'timed_view' ORDER BY id`)).rows.map((r) => r.status)).toEqual(['failed', 'failed', 'refreshed']);
    expect(await count(`SELECT count(*) AS n FROM sluice_views.timed_view`)).toBe(8);
  });
});
