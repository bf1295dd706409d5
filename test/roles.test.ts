/**
 * `sluice roles create` (issue 17): each role, through a LOGIN role that is a
 * member of it, can do its job and is refused (SQLSTATE 42501) the rest.
 *
 * Roles are cluster-wide: every run uses its own prefix and drops its roles
 * afterwards. The embedded server uses scram-sha-256, so the login roles get
 * a password (a trusting pg_hba ignores it).
 */
import { randomBytes, randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SQLSTATE } from '../src/errors.js';
import { createIngestor } from '../src/ingest/create-ingestor.js';
import type { HealthReport } from '../src/health/report.js';
import type { StatusReport } from '../src/status/stream-status.js';
import type { JsonOf } from '../src/json-keys.js';
import { runCli } from './helpers/cli.js';
import { createTestDatabase } from './helpers/database.js';
import { makeEvents } from './helpers/events.js';
import { waitFor } from './helpers/wait.js';
import { startWorker, stopAllWorkers } from './helpers/worker.js';

const db = await createTestDatabase('roles');
const prefix = `t${randomBytes(4).toString('hex')}_`;
const password = randomBytes(16).toString('hex');
const group = { producer: `${prefix}producer`, reader: `${prefix}reader`, worker: `${prefix}worker` } as const;
type Kind = keyof typeof group;
const login: Record<Kind, string> = { producer: `${prefix}app`, reader: `${prefix}dash`, worker: `${prefix}svc` };
const clients: pg.Client[] = [];

function urlAs(role: string): string {
  const u = new URL(db.url);
  u.username = role;
  u.password = password;
  return u.toString();
}

async function connectAs(kind: Kind): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: urlAs(login[kind]), application_name: `sluice-test-${kind}` });
  client.on('error', () => undefined);
  await client.connect();
  clients.push(client);
  return client;
}

/** The statement fails with insufficient_privilege (and not with anything else). */
async function refused(client: pg.Client, sql: string, values: unknown[] = []): Promise<void> {
  const outcome = await client.query(sql, values).then(
    () => 'succeeded',
    (err: { code?: string; message?: string }) => `${err.code}: ${err.message}`,
  );
  expect(outcome.slice(0, 5), `${sql} → ${outcome}`).toBe(SQLSTATE.INSUFFICIENT_PRIVILEGE);
}

async function rolesCreate(extra: string[] = []) {
  return runCli(['roles', 'create', '--prefix', prefix, ...extra], { env: { DATABASE_URL: db.url } });
}

function monthsAgo(n: number): string {
  const d = new Date();
  return new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth() - n, 15, 12)).toISOString();
}

function partitionName(stream: string, iso: string): string {
  return `${stream}_p${iso.slice(0, 4)}${iso.slice(5, 7)}`;
}

async function ownerOf(relation: string): Promise<string | undefined> {
  const { rows } = await db.query<{ owner: string }>(`SELECT pg_get_userbyid(relowner) AS owner FROM pg_class WHERE oid = to_regclass($1)`, [relation]);
  return rows[0]?.owner;
}

async function count(sql: string, values: unknown[] = []): Promise<number> {
  const { rows } = await db.query<{ n: number }>(sql, values);
  return Number(rows[0]?.n ?? 0);
}

beforeAll(async () => {
  const first = await rolesCreate(['--json']);
  expect(first.code, first.stderr).toBe(0);
  for (const kind of Object.keys(group) as Kind[]) {
    const made = await db.query<{ sql: string }>(`SELECT format('CREATE ROLE %I LOGIN PASSWORD %L IN ROLE %I', $1::text, $2::text, $3::text) AS sql`, [
      login[kind],
      password,
      group[kind],
    ]);
    await db.query(made.rows[0]!.sql);
  }
  // Made after the roles: handed to the worker role at commit, granted to the producer and reader.
  await db.query(`SELECT sluice.create_stream('late', '[{"name": "type", "type": "text"}]')`);
});

afterAll(async () => {
  await stopAllWorkers();
  await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
  for (const role of [...Object.values(login), ...Object.values(group)]) {
    const exists = await count(`SELECT count(*)::int AS n FROM pg_roles WHERE rolname = $1`, [role]);
    if (!exists) continue;
    const ident = (await db.query<{ i: string }>(`SELECT quote_ident($1) AS i`, [role])).rows[0]!.i;
    await db.query(`REASSIGN OWNED BY ${ident} TO CURRENT_USER`);
    await db.query(`DROP OWNED BY ${ident}`);
    await db.query(`DROP ROLE ${ident}`);
  }
});

describe('sluice roles create', () => {
  it('makes three NOLOGIN, non-superuser roles, reports what it granted, and runs again without harm', async () => {
    const again = await rolesCreate(['--json']);
    expect(again.code, again.stderr).toBe(0);
    const out = JSON.parse(again.stdout) as { roles: Array<{ kind: string; role: string; created: boolean; statements: string[] }>; stream_statements: string[] };
    expect(out.roles.map((r) => [r.kind, r.role, r.created])).toEqual([
      ['producer', group.producer, false],
      ['reader', group.reader, false],
      ['worker', group.worker, false],
    ]);
    expect(out.roles.find((r) => r.kind === 'reader')!.statements).toContain(`GRANT SELECT ON sluice.workers TO ${group.reader}`);
    expect(out.stream_statements).toContain(`ALTER TABLE sluice_data.events OWNER TO ${group.worker}`);

    const { rows } = await db.query<{ rolname: string; rolcanlogin: boolean; rolsuper: boolean; rolcreaterole: boolean; rolcreatedb: boolean }>(
      `SELECT rolname, rolcanlogin, rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = ANY($1) ORDER BY rolname`,
      [Object.values(group)],
    );
    expect(rows).toHaveLength(3);
    for (const r of rows) expect([r.rolname, r.rolcanlogin, r.rolsuper, r.rolcreaterole, r.rolcreatedb]).toEqual([r.rolname, false, false, false, false]);

    // Existing and later streams belong to the worker role.
    for (const rel of ['sluice_staging.events', 'sluice_data.events', 'sluice_staging.late', 'sluice_data.late', 'sluice_data.late_all', `sluice_data.${partitionName('late', monthsAgo(0))}`]) {
      expect(await ownerOf(rel), rel).toBe(group.worker);
    }

    const bad = await runCli(['roles', 'create', '--prefix', 'Bad"; DROP ROLE x; --'], { env: { DATABASE_URL: db.url } });
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/invalid --prefix/);
    expect(await count(`SELECT count(*)::int AS n FROM pg_roles WHERE rolname LIKE 'Bad%'`)).toBe(0);
  });

  it('producer: sluice.ingest, sluice.add_ingest_job and the Ingestor COPY work; events, rejects, the queue and DDL are refused', async () => {
    const producer = await connectAs('producer');
    const stagedBefore = await count(`SELECT count(*)::int AS n FROM sluice_staging.late`);

    const good = (n: number) => Array.from({ length: n }, () => ({ event_id: randomUUID(), occurred_at: new Date().toISOString(), type: 'sql' }));
    const { rows } = await producer.query<{ accepted: number; rejected: number }>(`SELECT * FROM sluice.ingest('late', $1::jsonb)`, [
      JSON.stringify([...good(3), { event_id: 'not-a-uuid', occurred_at: new Date().toISOString() }]),
    ]);
    expect(rows[0]).toEqual({ accepted: 3, rejected: 1 });

    const job = await producer.query<{ id: string }>(`SELECT sluice.add_ingest_job($1::json) AS id`, [JSON.stringify({ stream: 'late', events: good(2) })]);
    expect(await count(`SELECT count(*)::int AS n FROM graphile_worker.jobs WHERE id = $1 AND task_identifier = 'sluice_ingest'`, [job.rows[0]!.id])).toBe(1);

    const ingestor = await createIngestor({ connectionString: urlAs(login.producer), stream: 'late', drainSlots: 1 });
    const { events } = makeEvents(500, 71, {}, 0); // no re-sends: every row stays a row
    for (const e of events) await ingestor.push({ ...e, type: 'client' });
    await ingestor.push({ event_id: randomUUID() }); // no occurred_at: a client reject
    await ingestor.flush();
    const stats = ingestor.stats();
    await ingestor.close();
    expect([stats.accepted, stats.rejected]).toEqual([events.length, 1]);
    expect(await count(`SELECT count(*)::int AS n FROM sluice_staging.late`)).toBe(stagedBefore + 3 + events.length);
    expect(await count(`SELECT count(*)::int AS n FROM sluice.rejects WHERE stream = 'late' AND source IN ('sql', 'client')`)).toBe(2);
    // The flush kicked the drain through sluice.kick_drains.
    expect(await count(`SELECT count(*)::int AS n FROM graphile_worker.jobs WHERE key = 'sluice_drain:late:0'`)).toBe(1);

    // sluice ingest as the producer: ingests and records its rejects; its summary counts them itself (it may not read them back).
    const lines = `${JSON.stringify(good(1)[0])}\n{"event_id": "nope"}\n`;
    const file = await runCli(['ingest', '--stream', 'late', '--json', '-'], { env: { DATABASE_URL: urlAs(login.producer) }, input: lines });
    expect(file.code, file.stderr).toBe(0);
    expect(JSON.parse(file.stdout)).toMatchObject({ accepted: 1, rejected: 1, rejects_by_reason: { invalid_event_id: 1 } });
    expect(await count(`SELECT count(*)::int AS n FROM sluice.rejects WHERE stream = 'late' AND source = 'file'`)).toBe(1);

    // Stored events, staged events, rejects.
    await refused(producer, `SELECT * FROM sluice_data.late`);
    await refused(producer, `SELECT event_id FROM sluice_data.${partitionName('late', monthsAgo(0))}`);
    await refused(producer, `SELECT * FROM sluice_data.late_all`);
    await refused(producer, `UPDATE sluice_data.late SET payload = '{}'`);
    await refused(producer, `DELETE FROM sluice_data.events`);
    await refused(producer, `INSERT INTO sluice_data.late (event_id, occurred_at, received_at) VALUES (gen_random_uuid(), now(), now())`);
    await refused(producer, `SELECT payload FROM sluice_staging.late`);
    await refused(producer, `DELETE FROM sluice_staging.late`);
    await refused(producer, `TRUNCATE sluice_staging.late`);
    await refused(producer, `SELECT raw FROM sluice.rejects`);
    await refused(producer, `DELETE FROM sluice.rejects`);
    // Control tables beyond what ingest needs.
    await refused(producer, `UPDATE sluice.streams SET max_event_bytes = 64`);
    await refused(producer, `SELECT * FROM sluice.workers`);
    await refused(producer, `SELECT * FROM sluice.health_reports`);
    // The queue: no other task, no reading pending jobs (their payloads are events).
    await refused(producer, `SELECT graphile_worker.add_job('sluice_ingest', '{}'::json)`);
    await refused(producer, `SELECT graphile_worker.add_job('sluice_rotate_partitions')`);
    await refused(producer, `SELECT payload FROM graphile_worker.jobs`);
    await refused(producer, `SELECT payload FROM graphile_worker._private_jobs`);
    // DDL and role management.
    await refused(producer, `SELECT sluice.create_stream('mine')`);
    await refused(producer, `SELECT sluice.drop_stream('late')`);
    await refused(producer, `DROP TABLE sluice_staging.late`);
    await refused(producer, `SELECT sluice.create_roles('x_')`);
    const tooMany = await producer.query(`SELECT sluice.kick_drains('late', 100000)`).catch((err: { code?: string }) => err.code);
    expect(tooMany).toBe('22023');
  });

  it('reader: sluice status and sluice health run completely; writes and event contents are refused', async () => {
    const reader = await connectAs('reader');
    const env = { DATABASE_URL: urlAs(login.reader) };

    const status = await runCli(['status', '--json'], { env });
    expect(status.stderr).toBe('');
    expect(status.code).toBe(0);
    const report = JSON.parse(status.stdout) as JsonOf<StatusReport>;
    const late = report.streams.find((s) => s.stream === 'late');
    expect(late?.staged).toBe(await count(`SELECT count(*)::int AS n FROM sluice_staging.late`));
    expect(late?.staged).toBeGreaterThan(0);
    expect(report.rejects.total).toBe(await count(`SELECT count(*)::int AS n FROM sluice.rejects`));

    const health = await runCli(['health', '--json'], { env });
    expect([0, 1, 2], health.stderr).toContain(health.code);
    const findings = (JSON.parse(health.stdout) as JsonOf<HealthReport>).findings;
    // A check the reader may not run becomes a "check failed" finding: none may.
    expect(findings.filter((f) => /check failed/.test(f.message)).map((f) => f.message)).toEqual([]);
    expect(findings.some((f) => f.check.startsWith('pipeline'))).toBe(true);
    expect((await reader.query<{ m: boolean }>(`SELECT pg_has_role('pg_monitor', 'MEMBER') AS m`)).rows[0]!.m).toBe(true);

    await refused(reader, `INSERT INTO sluice_staging.late (event_id, occurred_at) VALUES (gen_random_uuid(), now())`);
    await refused(reader, `INSERT INTO sluice_data.late (event_id, occurred_at, received_at) VALUES (gen_random_uuid(), now(), now())`);
    await refused(reader, `SELECT * FROM sluice.ingest('late', $1::jsonb)`, [JSON.stringify({ event_id: randomUUID(), occurred_at: new Date().toISOString() })]);
    await refused(reader, `SELECT sluice.add_ingest_job('{}'::json)`);
    await refused(reader, `SELECT payload FROM sluice_staging.late`);
    await refused(reader, `SELECT * FROM sluice_data.events`);
    await refused(reader, `SELECT raw FROM sluice.rejects`);
    await refused(reader, `DELETE FROM sluice.health_reports`);
    await refused(reader, `UPDATE sluice.workers SET budget = 1`);
    await refused(reader, `SELECT graphile_worker.add_job('sluice_drain')`);
  });

  it('worker: a real worker ingests, drains into a new month partition, rotates, archives, refreshes and reports; it cannot drop schemas or escalate', async () => {
    const worker = await connectAs('worker');
    // Registered before the worker starts: handed to the worker role at commit.
    const add = await runCli(['matview', 'add', 'events_top_types', '--example'], { env: { DATABASE_URL: db.url } });
    expect(add.code, add.stderr).toBe(0);
    expect(await ownerOf('sluice_views.events_top_types')).toBe(group.worker);
    // Rotation at start with the clock two months ahead: archives this stream's old months.
    await db.query(`SELECT sluice.create_stream('shortlived', '[]', '{"retention_months": 1, "retention_mode": "archive"}')`);

    const old = monthsAgo(5);
    const oldPartition = partitionName('late', old);
    expect(await ownerOf(`sluice_data.${oldPartition}`)).toBeUndefined();
    const producer = await connectAs('producer');
    const oldEvents = Array.from({ length: 40 }, () => ({ event_id: randomUUID(), occurred_at: old, type: 'old' }));
    await producer.query(`SELECT sluice.add_ingest_job($1::json)`, [JSON.stringify({ stream: 'late', events: oldEvents })]);
    const expected = (await count(`SELECT count(*)::int AS n FROM sluice_staging.late`)) + 2 + oldEvents.length; // + the queued add_ingest_job of the producer test

    await startWorker({ ...db, url: urlAs(login.worker) }, { drainers: 1, concurrency: 2, clockOffsetMs: 62 * 86_400_000 });
    await waitFor(
      async () => ({
        durable: await count(`SELECT count(*)::int AS n FROM sluice_data.late`),
        staged: await count(`SELECT count(*)::int AS n FROM sluice_staging.late`),
        jobs: await count(`SELECT count(*)::int AS n FROM graphile_worker.jobs WHERE task_identifier = 'sluice_ingest'`),
      }),
      (s) => s.durable === expected && s.staged === 0 && s.jobs === 0,
      { what: 'every staged and queued event durable', timeoutMs: 60_000 },
    );
    // The drain made the missing month as the worker's login; it belongs to the worker role.
    expect(await ownerOf(`sluice_data.${oldPartition}`)).toBe(group.worker);
    expect(await count(`SELECT count(*)::int AS n FROM sluice_data.${oldPartition}`)).toBe(oldEvents.length);
    expect(await count(`SELECT count(*)::int AS n FROM sluice.rejects WHERE stream = 'late' AND source = 'drain'`)).toBe(0);

    // The start-up rotation (clock + 62 days): premade ahead, archived what fell out of retention.
    const run = await waitFor(
      async () => (await db.query<{ archived: string[]; created: string[]; error: string | null }>(
        `SELECT archived, created, error FROM sluice.partition_runs WHERE stream = 'shortlived' AND finished_at IS NOT NULL ORDER BY id DESC LIMIT 1`,
      )).rows[0],
      (r) => r !== undefined,
      { what: 'rotation of shortlived', timeoutMs: 30_000 },
    );
    expect(run!.error).toBeNull();
    expect(run!.archived.length).toBeGreaterThan(0);
    expect(run!.created.length).toBeGreaterThan(0);
    for (const name of run!.archived) expect(await ownerOf(`sluice_archive.${name}`)).toBe(group.worker);

    // Matview refresh and a stored health report, as the worker role.
    await db.query(`SELECT graphile_worker.add_job('sluice_refresh_matview')`);
    await db.query(`SELECT graphile_worker.add_job('sluice_health_check')`);
    await waitFor(
      async () => (await db.query<{ last_status: string | null }>(`SELECT last_status FROM sluice.matviews WHERE name = 'events_top_types'`)).rows[0]?.last_status,
      (s) => s === 'refreshed',
      { what: 'matview refreshed by the worker' },
    );
    const findings = await waitFor(
      async () => (await db.query<{ findings: Array<{ message: string }> }>(`SELECT findings FROM sluice.health_reports ORDER BY id DESC LIMIT 1`)).rows[0]?.findings,
      (f) => f !== undefined,
      { what: 'a stored health report' },
    );
    expect(findings!.filter((f) => /check failed/.test(f.message)).map((f) => f.message)).toEqual([]);
    expect(await count(`SELECT count(*)::int AS n FROM graphile_worker.jobs WHERE last_error IS NOT NULL`)).toBe(0);

    // Not an owner of sluice's schemas or control tables, no role or database powers.
    const me = (await worker.query<{ rolsuper: boolean; rolcreaterole: boolean; rolcreatedb: boolean }>(
      `SELECT rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = current_user`,
    )).rows[0];
    expect(me).toEqual({ rolsuper: false, rolcreaterole: false, rolcreatedb: false });
    await refused(worker, `DROP SCHEMA sluice CASCADE`);
    await refused(worker, `DROP SCHEMA sluice_data CASCADE`);
    await refused(worker, `DROP SCHEMA graphile_worker CASCADE`);
    await refused(worker, `DROP TABLE sluice.streams`);
    await refused(worker, `DROP TABLE graphile_worker._private_jobs`);
    await refused(worker, `CREATE SCHEMA sneaky`);
    await refused(worker, `UPDATE sluice.streams SET max_event_bytes = 64`);
    await refused(worker, `SELECT sluice.create_stream('mine')`);
    await refused(worker, `DELETE FROM sluice.migrations`);
    await refused(worker, `SELECT sluice.create_roles('x_')`);
    await refused(worker, `SET ROLE ${(await db.query<{ u: string }>(`SELECT quote_ident(current_user) AS u`)).rows[0]!.u}`);
  }, 120_000);
});

describe('roles created while a stream is being created', () => {
  it('the stream, committed during sluice.create_roles, waits for the roles and is handed over to them', async () => {
    const second = `u${randomBytes(4).toString('hex')}_`;
    const streamTx = new pg.Client({ connectionString: db.url });
    const rolesTx = new pg.Client({ connectionString: db.url });
    await Promise.all([streamTx.connect(), rolesTx.connect()]);
    try {
      await streamTx.query('BEGIN');
      await streamTx.query(`SELECT sluice.create_stream('raced')`);
      await rolesTx.query('BEGIN');
      await rolesTx.query(`SELECT * FROM sluice.create_roles($1)`, [second]);
      // The stream's commit runs its hand-over now, while the roles are not committed yet.
      const committed = streamTx.query('COMMIT');
      await new Promise((r) => setTimeout(r, 500));
      await rolesTx.query('COMMIT');
      await committed;
      expect(await ownerOf('sluice_data.raced')).toBe(`${second}worker`);
      expect(await ownerOf('sluice_staging.raced')).toBe(`${second}worker`);
    } finally {
      await Promise.all([streamTx.end(), rolesTx.end()]);
      await db.query(`SELECT sluice.drop_stream('raced')`).catch(() => undefined);
      // Back to this file's roles as the last run, then drop the second set.
      expect((await rolesCreate()).code).toBe(0);
      for (const kind of ['producer', 'reader', 'worker']) {
        const ident = (await db.query<{ i: string }>(`SELECT quote_ident($1) AS i`, [`${second}${kind}`])).rows[0]!.i;
        await db.query(`REASSIGN OWNED BY ${ident} TO CURRENT_USER`).catch(() => undefined);
        await db.query(`DROP OWNED BY ${ident}`).catch(() => undefined);
        await db.query(`DROP ROLE IF EXISTS ${ident}`).catch(() => undefined);
      }
    }
  });
});
