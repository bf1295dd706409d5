/**
 * Partition lifecycle (issue 15): one planner and an injected clock, retention
 * by DETACH … CONCURRENTLY then drop / keep / archive, staged rows never lost,
 * DDL under lock_timeout that names its blockers, interrupted detaches
 * finalized, one rotation per stream at a time. Postgres is the oracle.
 */
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { drainUntilEmpty } from '../src/drain/drain-loop.js';
import { createLogger } from '../src/logger.js';
import { readPartitions } from '../src/partitions/catalog.js';
import { monthOf, monthStartDate, partitionName } from '../src/partitions/months.js';
import { streamWindow } from '../src/partitions/plan.js';
import { rotateStreams, type RotateAllOptions, type RotationReport } from '../src/partitions/rotate.js';
import { getStream, listStreams } from '../src/streams/registry.js';
import { createTestDatabase } from './helpers/database.js';
import { waitFor } from './helpers/wait.js';

const db = await createTestDatabase('partition_lifecycle');
const log = createLogger('silent');
const clients: pg.Client[] = [];
afterAll(async () => {
  await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
});

async function connect(applicationName = 'sluice-test-rotation'): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: db.url, application_name: applicationName });
  client.on('error', () => undefined);
  await client.connect();
  clients.push(client);
  return client;
}

const R = monthOf(Date.now());
/** Mid-month of R + k, as a Date (the injected clock). */
const clockAt = (k: number) => new Date(`${monthStartDate(R + k)}T12:00:00Z`.replace(/-01T/, '-15T'));
const at = (month: number) => `${monthStartDate(month)}T10:00:00Z`;

async function rotate(client: pg.Client, names: string[], now: Date, extra: Partial<RotateAllOptions> = {}): Promise<RotationReport[]> {
  return rotateStreams(client, db.pool, await listStreams(client), { now, runner: 'test', log, streams: names, ...extra });
}

async function stage(stream: string, month: number, rows: number): Promise<void> {
  await db.query(
    `INSERT INTO sluice_staging.${stream} (event_id, occurred_at, payload) SELECT gen_random_uuid(), $1::timestamptz + make_interval(secs => i), '{}' FROM generate_series(1, $2::int) i`,
    [at(month), rows],
  );
}

async function states(stream: string): Promise<Record<string, string[]>> {
  const out: Record<string, string[]> = {};
  for (const p of await readPartitions(db.pool, stream)) (out[p.state] ??= []).push(p.name);
  return out;
}

const names = (stream: string, from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => partitionName(stream, from + i));

describe('the planner', () => {
  it('has the window sluice.stream_window_at has, at any clock, for any settings', async () => {
    await db.query(`SELECT sluice.create_stream('win', '[]', '{"retention_months": 5, "premake_months": 2, "max_past_months": 12}')`);
    await db.query(`SELECT sluice.create_stream('win2', '[]', '{"premake_months": 7, "max_past_months": 3}')`);
    for (const name of ['win', 'win2']) {
      const stream = (await getStream(db.pool, name))!;
      for (let k = -30; k <= 30; k += 7) {
        const now = clockAt(k);
        const { rows } = await db.query<{ lo: string; hi: string }>(`SELECT lo::text, hi::text FROM sluice.stream_window_at($1, $2)`, [name, now]);
        const w = streamWindow({ ...stream, retentionMode: 'detach' }, now);
        expect({ lo: monthStartDate(w.lo), hi: monthStartDate(w.hi) }).toEqual(rows[0]);
      }
    }
    // And stream_window (ingest, drain) is stream_window_at(now()).
    const { rows } = await db.query(`SELECT (SELECT row(lo, hi) FROM sluice.stream_window('win')) = (SELECT row(lo, hi) FROM sluice.stream_window_at('win', now())) AS same`);
    expect(rows[0]?.same).toBe(true);
  });
});

describe('rotation across 14 months with retention 12', () => {
  it('leaves exactly the expected partitions attached, detached, dropped, archived; premake always satisfied; staged rows durable or rejected', async () => {
    const modes = { r_detach: 'detach', r_drop: 'drop', r_archive: 'archive' } as const;
    for (const [name, mode] of Object.entries(modes)) {
      await db.query(`SELECT sluice.create_stream($1, '[]', $2::jsonb)`, [name, JSON.stringify({ retention_months: 12, retention_mode: mode, premake_months: 3 })]);
      await stage(name, R - 1, 7);
      await stage(name, R, 11);
    }
    const client = await connect();
    const drainer = await connect('sluice-test-drainer');
    const drainStream: RotateAllOptions['drainStream'] = async (stream) => {
      await drainUntilEmpty(async () => drainer, { stream, batchRows: 1000, drainer: 'test', maxMs: 10_000, log });
    };
    for (let k = 0; k <= 14; k++) {
      if (k === 12) for (const name of Object.keys(modes)) await stage(name, R, 5); // late rows of a month about to go
      const reports = await rotate(client, Object.keys(modes), clockAt(k), { drainStream });
      for (const r of reports) expect(r.error, `${r.stream} at +${k}`).toBeUndefined();
      for (const name of Object.keys(modes)) {
        const attached = (await states(name)).attached ?? [];
        // Premake satisfied: last month (within retention) to 3 months ahead.
        for (const want of names(name, R + k - 1, R + k + 3)) expect(attached, `${name} at +${k}`).toContain(want);
        // Nothing past retention stays attached.
        expect(attached.filter((p) => p < partitionName(name, R + k - 11)), `${name} at +${k}`).toEqual([]);
      }
    }
    const T = R + 14;
    for (const name of Object.keys(modes)) expect((await states(name)).attached).toEqual(names(name, T - 11, T + 3));
    expect(await states('r_detach')).toEqual({ attached: names('r_detach', T - 11, T + 3), detached: names('r_detach', R - 1, R + 2) });
    expect(await states('r_drop')).toEqual({ attached: names('r_drop', T - 11, T + 3) });
    expect(await states('r_archive')).toEqual({ attached: names('r_archive', T - 11, T + 3), archived: names('r_archive', R - 1, R + 2) });
    // Staged rows: drained first (kept in the detached / archived tables) or rejected with a reason (drop).
    const count = async (sql: string) => Number((await db.query<{ n: string }>(sql)).rows[0]!.n);
    expect(await count(`SELECT count(*) AS n FROM sluice_data.${partitionName('r_detach', R - 1)}`)).toBe(7);
    expect(await count(`SELECT count(*) AS n FROM sluice_data.${partitionName('r_detach', R)}`)).toBe(16);
    expect(await count(`SELECT count(*) AS n FROM sluice_archive.${partitionName('r_archive', R)}`)).toBe(16);
    expect(await count(`SELECT count(*) AS n FROM sluice.rejects WHERE stream = 'r_drop' AND reason = 'past_retention'`)).toBe(23);
    for (const name of Object.keys(modes)) expect(await count(`SELECT count(*) AS n FROM sluice_staging.${name}`)).toBe(0);
    // Every run is recorded.
    const runs = await db.query(`SELECT stream, count(*)::int AS n, sum(cardinality(dropped))::int AS dropped, sum(cardinality(archived))::int AS archived,
                                        sum(cardinality(detached))::int AS detached, sum(rejected)::int AS rejected
                                   FROM sluice.partition_runs WHERE stream LIKE 'r\\_%' GROUP BY stream ORDER BY stream`);
    expect(runs.rows).toEqual([
      { stream: 'r_archive', n: 15, dropped: 0, archived: 4, detached: 4, rejected: 0 },
      { stream: 'r_detach', n: 15, dropped: 0, archived: 0, detached: 4, rejected: 0 },
      { stream: 'r_drop', n: 15, dropped: 4, archived: 0, detached: 4, rejected: 23 },
    ]);
    // Idempotent: another run at the same clock does nothing.
    const again = await rotate(client, Object.keys(modes), clockAt(14));
    for (const r of again) expect([r.created, r.detached, r.dropped, r.archived, r.finalized, r.skipped]).toEqual([[], [], [], [], [], []]);
  });
});

describe('safety', () => {
  it('a long transaction on the parent: inserts are never blocked beyond lock_timeout, the blocker is reported, a later run succeeds', async () => {
    await db.query(`SELECT sluice.create_stream('blk', '[]', '{"retention_months": 12}')`);
    const blocker = await connect('long-report');
    await blocker.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
    await blocker.query('SELECT count(*) FROM sluice_data.blk');
    const blockerPid = (await blocker.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;

    const rotation = await connect();
    const lockTimeoutMs = 300;
    const writer = await connect('writer');
    await writer.query(`SET lock_timeout = '${lockTimeoutMs}ms'`);
    let done = false;
    let inserts = 0;
    const writing = (async () => {
      // Any wait beyond lock_timeout would fail an INSERT with 55P03 and fail the test.
      while (!done) {
        await writer.query(`INSERT INTO sluice_data.blk (event_id, occurred_at, received_at) VALUES (gen_random_uuid(), $1, now())`, [at(R)]);
        inserts++;
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    const [first] = await rotate(rotation, ['blk'], clockAt(12), { lockTimeoutMs, attempts: 2 });
    done = true;
    await writing;
    expect(inserts).toBeGreaterThan(0);
    expect(first!.detached).toEqual([]);
    expect(first!.skipped.map((s) => s.step)).toContain('detach');
    expect(first!.blockers.map((b) => b.pid)).toContain(blockerPid);
    expect(first!.blockers.find((b) => b.pid === blockerPid)).toMatchObject({ application_name: 'long-report', state: 'idle in transaction' });
    const recorded = await db.query(`SELECT blockers, skipped FROM sluice.partition_runs WHERE id = $1`, [first!.runId]);
    expect(recorded.rows[0]?.blockers.map((b: { pid: number }) => b.pid)).toContain(blockerPid);
    expect(JSON.stringify(recorded.rows[0]?.skipped)).toMatch(new RegExp(`pid ${blockerPid} \\(long-report`));

    await blocker.query('COMMIT');
    const [second] = await rotate(rotation, ['blk'], clockAt(12), { lockTimeoutMs });
    expect(second!.error).toBeUndefined();
    // The first run's timed-out DETACH CONCURRENTLY may have left its partition pending: finalized now.
    expect([...second!.finalized, ...second!.detached].sort()).toEqual(names('blk', R - 1, R));
    expect((await states('blk')).detached).toEqual(names('blk', R - 1, R));
    expect((await states('blk')).detach_pending).toBeUndefined();
  });

  it('a DETACH … CONCURRENTLY cancelled after its first phase is finalized by the next run', async () => {
    await db.query(`SELECT sluice.create_stream('intr')`);
    const part = partitionName('intr', R - 1);
    const holder = await connect('old-snapshot');
    await holder.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
    await holder.query('SELECT count(*) FROM sluice_data.intr');
    const detacher = await connect('manual-detach');
    const detacherPid = (await detacher.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
    const detaching = detacher.query(`ALTER TABLE sluice_data.intr DETACH PARTITION sluice_data.${part} CONCURRENTLY`).then(
      () => 'finished',
      (err: { code?: string }) => err.code,
    );
    const pending = `SELECT i.inhdetachpending AS pending FROM pg_inherits i WHERE i.inhrelid = to_regclass('sluice_data.${part}')`;
    // Phase one committed: the partition is marked; phase two waits for the old snapshot.
    await waitFor(async () => (await db.query(pending)).rows[0]?.pending, (p) => p === true, { what: 'detach pending' });
    await waitFor(async () => (await db.query(`SELECT wait_event_type FROM pg_stat_activity WHERE pid = $1`, [detacherPid])).rows[0]?.wait_event_type, (w) => w === 'Lock');
    await db.query('SELECT pg_cancel_backend($1)', [detacherPid]);
    expect(await detaching).toBe('57014');
    await holder.query('COMMIT');
    expect((await db.query(pending)).rows[0]?.pending).toBe(true);
    expect((await states('intr')).detach_pending).toEqual([part]);

    const [report] = await rotate(await connect(), ['intr'], new Date());
    expect(report!.error).toBeUndefined();
    expect(report!.finalized).toEqual([part]);
    expect((await db.query(pending)).rowCount).toBe(0);
    expect((await states('intr')).detached).toEqual([part]);
  });

  it('two rotations at once: no error, no duplicate work', async () => {
    await db.query(`SELECT sluice.create_stream('twin', '[]', '{"retention_months": 6, "retention_mode": "drop", "premake_months": 12}')`);
    const [a, b] = await Promise.all([connect(), connect()]);
    const now = clockAt(9);
    const results = await Promise.all([rotate(a!, ['twin'], now), rotate(b!, ['twin'], now)]);
    const reports = results.flat();
    for (const r of reports) expect(r.error).toBeUndefined();
    const created = reports.flatMap((r) => r.created);
    const dropped = reports.flatMap((r) => r.dropped);
    expect(new Set(created).size).toBe(created.length);
    expect(new Set(dropped).size).toBe(dropped.length);
    // R-1..R+1 existed; at R+9 with retention 6 the months before R+4 go, R+8..R+21 are premade.
    expect(dropped.sort()).toEqual(names('twin', R - 1, R + 1));
    expect(created.sort()).toEqual(names('twin', R + 8, R + 21));
    expect(await states('twin')).toEqual({ attached: names('twin', R + 8, R + 21) });
    const runs = await db.query(`SELECT skipped FROM sluice.partition_runs WHERE stream = 'twin'`);
    expect(runs.rowCount).toBe(2);
  });
});
