/**
 * Health reports (issue 16), every condition created for real on the test
 * server: a table with autovacuum disabled and many updated rows (dead-tuple
 * warning with autovacuum's own numbers, ok after VACUUM), a worker holding
 * more connections than its budget (critical), staged rows with no drainer
 * (lag and drain-liveness findings; `sluice health` exits 2), a failed
 * CREATE INDEX CONCURRENTLY (invalid index), the report run as a
 * least-privilege pg_monitor role, and the task on schedule in a running
 * worker storing, logging and pruning reports.
 */
import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import pg from 'pg';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.js';
import type { Finding } from '../src/health/finding.js';
import type { HealthReport } from '../src/health/report.js';
import { createIngestor } from '../src/ingest/create-ingestor.js';
import type { JsonOf } from '../src/json-keys.js';
import { monthOf, partitionName } from '../src/partitions/months.js';
import { sleep } from '../src/timing.js';
import type { StatusReport } from '../src/status/stream-status.js';
import { runWorker } from '../src/worker/run-worker.js';
import { sluiceTaskList } from '../tasks/index.js';
import { runCli } from './helpers/cli.js';
import { healthReport, setHealthThreshold } from './helpers/health.js';
import { createTestDatabase, urlForDatabase } from './helpers/database.js';
import { makeEvents } from './helpers/events.js';
import { waitFor } from './helpers/wait.js';
import { startWorker } from './helpers/worker.js';

const db = await createTestDatabase('health');

const report = (url = db.url): Promise<HealthReport> => healthReport(url);
const setThreshold = (name: string, value: number): Promise<void> => setHealthThreshold(db, name, value);

function find(r: HealthReport, check: string, target: string): Finding | undefined {
  return r.findings.find((f) => f.check === check && f.target === target);
}

/** No check may have failed (a failed check is reported as a finding of its own). */
function expectNoFailedChecks(r: HealthReport): void {
  expect(r.findings.filter((f) => f.target === 'health check')).toEqual([]);
}

describe('sluice health', () => {
  it('reports dead tuples against the table’s own autovacuum trigger (reloptions honoured), and ok after VACUUM', async () => {
    await setThreshold('min_table_mb', 0); // the test table is small
    await db.query(`CREATE TABLE public.churn (id int PRIMARY KEY, v int) WITH (autovacuum_enabled = false, autovacuum_vacuum_threshold = 100)`);
    await db.query(`INSERT INTO public.churn SELECT g, 0 FROM generate_series(1, 1000) g`);
    await db.query(`ANALYZE public.churn`);
    await db.query(`UPDATE public.churn SET v = 1 WHERE id <= 400`);
    // Statistics reach the shared view when the writer flushes them (at most ~1 s later).
    await waitFor(
      async () => Number((await db.query(`SELECT n_dead_tup FROM pg_stat_user_tables WHERE relid = 'public.churn'::regclass`)).rows[0]?.n_dead_tup),
      (n) => n === 400,
      { what: 'n_dead_tup = 400', timeoutMs: 15_000 },
    );
    // Postgres as the oracle for autovacuum's trigger: the reloption threshold + the server's scale factor × reltuples.
    const oracle = await db.query<{ trigger: number }>(
      `SELECT 100 + current_setting('autovacuum_vacuum_scale_factor')::float8 * reltuples AS trigger FROM pg_class WHERE oid = 'public.churn'::regclass`,
    );
    const trigger = Math.round(Number(oracle.rows[0]?.trigger));
    expect(trigger).toBe(300);

    const before = await report();
    expectNoFailedChecks(before);
    const dead = find(before, 'dead_tuples', 'table public.churn');
    expect(dead).toMatchObject({ severity: 'warn', value: 400, threshold: trigger });
    expect(dead?.message).toContain('autovacuum is disabled');
    expect(dead?.advice).toContain('VACUUM');
    expect(find(before, 'vacuum_recency.autovacuum_disabled', 'table public.churn')?.severity).toBe('warn');
    expect(find(before, 'vacuum_recency.vacuum', 'table public.churn')).toMatchObject({ severity: 'warn', value: 'never' });

    await db.query(`VACUUM public.churn`);
    await waitFor(
      async () => Number((await db.query(`SELECT n_dead_tup FROM pg_stat_user_tables WHERE relid = 'public.churn'::regclass`)).rows[0]?.n_dead_tup),
      (n) => n === 0,
      { what: 'n_dead_tup = 0 after VACUUM', timeoutMs: 15_000 },
    );
    const after = await report();
    expect(find(after, 'dead_tuples', 'table public.churn')).toBeUndefined();
    expect(find(after, 'vacuum_recency.vacuum', 'table public.churn')).toBeUndefined();
    expect(after.findings.find((f) => f.check === 'dead_tuples' && f.target === 'database')?.severity).toBe('ok');
  });

  it('names an invalid index left by a failed CREATE INDEX CONCURRENTLY', async () => {
    await db.query(`CREATE TABLE public.dup (v int)`);
    await db.query(`INSERT INTO public.dup VALUES (1), (1)`);
    await expect(db.query(`CREATE UNIQUE INDEX CONCURRENTLY dup_v_idx ON public.dup (v)`)).rejects.toMatchObject({ code: '23505' });
    const r = await report();
    expect(find(r, 'pipeline.invalid_index', 'index public.dup_v_idx')).toMatchObject({ severity: 'warn' });
    expect(find(r, 'pipeline.invalid_index', 'index public.dup_v_idx')?.advice).toContain('DROP INDEX CONCURRENTLY public.dup_v_idx');
  });

  it('flags a worker holding more connections than its declared budget as critical', async () => {
    const worker = await startWorker(db, { maxConnections: 4, concurrency: 1, flushers: 1, drainers: 1 });
    const extra: pg.Client[] = [];
    try {
      const within = await report();
      const fine = find(within, 'connections.worker_budget', `worker ${worker.id}`);
      expect(fine?.severity).toBe('ok');
      expect(fine?.threshold).toBe(4);
      // Two more connections under the worker's name: whatever the pool holds right now, it is over 4.
      for (let i = 0; i < 2; i++) {
        const c = new pg.Client({ connectionString: db.url, application_name: `sluice/${worker.id}/extra-${i}` });
        await c.connect();
        extra.push(c);
      }
      const actual = Number(
        (await db.query(`SELECT count(*) AS n FROM pg_stat_activity WHERE split_part(application_name, '/', 2) = $1`, [worker.id])).rows[0]?.n,
      );
      expect(actual).toBeGreaterThan(4);
      const over = await report();
      const finding = find(over, 'connections.worker_budget', `worker ${worker.id}`);
      expect(finding).toMatchObject({ severity: 'critical', threshold: 4 });
      expect(finding?.value).toBeGreaterThan(4);
      expect(over.status).toBe('critical');
    } finally {
      await Promise.all(extra.map((c) => c.end()));
      await worker.stop('test done');
    }
  });

  it('reports staging lag and a stalled drain when rows wait with no drainer; sluice health exits 2', async () => {
    await setThreshold('staged_age_warn_s', 1);
    await setThreshold('staged_age_critical_s', 2);
    await setThreshold('drain_stall_s', 2);
    const ingestor = await createIngestor({ connectionString: db.url, stream: 'events', ack: 'staged' });
    await ingestor.ingest(makeEvents(50, 16, {}, 0).events);
    await ingestor.close();
    const r = await waitFor(
      () => report(),
      (x) => find(x, 'pipeline.staging_lag', 'stream events')?.severity === 'critical',
      { what: 'staging lag critical', timeoutMs: 20_000, intervalMs: 500 },
    );
    const lag = find(r, 'pipeline.staging_lag', 'stream events');
    expect(lag?.message).toContain('50 row(s) staged');
    expect(find(r, 'pipeline.drain_liveness', 'stream events')).toMatchObject({ severity: 'critical' });
    expect(find(r, 'pipeline.drain_liveness', 'stream events')?.advice).toContain('--drainers');

    const json = await runCli(['health', '--json'], { env: { DATABASE_URL: db.url } });
    expect(json.code).toBe(2);
    const printed = JSON.parse(json.stdout) as HealthReport;
    expect(printed.status).toBe('critical');
    expect(printed.findings[0]?.severity).toBe('critical');
    const text = await runCli(['health'], { env: { DATABASE_URL: db.url } });
    expect(text.code).toBe(2);
    expect(text.stdout).toMatch(/CRITICAL\s+pipeline\.staging_lag\s+stream events/);
    expect(text.stdout).toContain('advice:');
  });

  it('partition headroom has one definition: a gap ends it, in sluice health and sluice partitions list alike', async () => {
    await db.query(`SELECT sluice.create_stream('gappy', '[]', '{"premake_months": 3}')`);
    await db.query(`SELECT sluice.premake_partitions('gappy')`); // what sluice stream create and the rotation do
    const thisMonth = monthOf(Date.now());
    const detach = (month: number) => db.query(`ALTER TABLE sluice_data.gappy DETACH PARTITION sluice_data.${partitionName('gappy', month)}`);
    const listed = async () => {
      const r = await runCli(['partitions', 'list', '--stream', 'gappy', '--json'], { env: { DATABASE_URL: db.url } });
      expect(r.code, r.stderr).toBe(0);
      return (JSON.parse(r.stdout) as Array<{ headroom_months: number; has_current_month: boolean }>)[0];
    };
    try {
      expect(find(await report(), 'pipeline.partition_headroom', 'stream gappy')).toMatchObject({ severity: 'ok', value: 3 });
      expect(await listed()).toMatchObject({ headroom_months: 3, has_current_month: true });

      // Two months ahead is gone (the partition after it is still there): events for it would wait on on-demand creation.
      await detach(thisMonth + 2);
      const gap = find(await report(), 'pipeline.partition_headroom', 'stream gappy');
      expect(gap).toMatchObject({ severity: 'warn', value: 1, threshold: 3 });
      expect(gap?.advice).toContain("sluice.premake_partitions('gappy')");
      expect(await listed()).toMatchObject({ headroom_months: 1, has_current_month: true });

      await detach(thisMonth);
      const none = find(await report(), 'pipeline.partition_headroom', 'stream gappy');
      expect(none).toMatchObject({ severity: 'critical' });
      expect(none?.message).toContain('NO attached partition for this month');
      expect(await listed()).toMatchObject({ has_current_month: false });
    } finally {
      await db.query(`SELECT sluice.drop_stream('gappy')`);
      for (const month of [thisMonth, thisMonth + 2]) await db.query(`DROP TABLE IF EXISTS sluice_data.${partitionName('gappy', month)}`);
    }
  });

  it('judges a staging table as a queue: dead tuples after a recent vacuum are its normal state; a queue autovacuum stops visiting is flagged', async () => {
    await db.query(`SELECT sluice.create_stream('queue_q')`);
    const staging = 'sluice_staging.queue_q';
    const target = `table ${staging}`;
    try {
      // Tuned as a queue when the stream was created (migration 00016).
      const { rows } = await db.query<{ reloptions: string[] }>(`SELECT reloptions FROM pg_class WHERE oid = $1::regclass`, [staging]);
      expect(rows[0]?.reloptions).toEqual(
        expect.arrayContaining(['autovacuum_vacuum_scale_factor=0', 'autovacuum_vacuum_threshold=10000', 'autovacuum_vacuum_cost_delay=0']),
      );
      // Keep autovacuum away while the test looks; vacuum by hand, then 15,000 rows staged and drained (deleted).
      await db.query(`ALTER TABLE ${staging} SET (autovacuum_enabled = false)`);
      await db.query(`VACUUM ${staging}`);
      await db.query(`INSERT INTO ${staging} (event_id, occurred_at, payload) SELECT gen_random_uuid(), now(), jsonb_build_object('pad', repeat('x', 100)) FROM generate_series(1, 15000)`);
      await db.query(`DELETE FROM ${staging}`);
      await waitFor(
        async () => (await db.query<{ dead: string }>(`SELECT n_dead_tup AS dead FROM pg_stat_all_tables WHERE relid = $1::regclass`, [staging])).rows[0]?.dead,
        (dead) => Number(dead) >= 15_000,
        { what: 'the dead tuples to show in pg_stat', timeoutMs: 15_000, intervalMs: 200 },
      );
      // 15,000 dead of 15,000 rows, over the 10,000 trigger, vacuumed seconds ago: a queue between two visits.
      expect(find(await report(), 'dead_tuples', target)).toBeUndefined();

      // Not visited for longer than the (lowered) warn age, then than the critical age.
      await setThreshold('staging_vacuum_age_warn_s', 1);
      await sleep(1_200);
      const stale = find(await report(), 'dead_tuples', target);
      expect(stale).toMatchObject({ severity: 'warn', value: 15_000, threshold: 10_000 });
      expect(stale?.message).toMatch(/staging queue not vacuumed for \d+ s/);
      await setThreshold('staging_vacuum_age_critical_s', 1);
      expect(find(await report(), 'dead_tuples', target)).toMatchObject({ severity: 'critical' });
    } finally {
      await db.query(`DELETE FROM sluice.health_thresholds WHERE name LIKE 'staging_vacuum_age_%'`);
      await db.query(`SELECT sluice.drop_stream('queue_q')`);
    }
  });

  it('runs every check as a least-privilege role with pg_monitor and the documented grants', async () => {
    const role = `sluice_health_ro_${randomBytes(3).toString('hex')}`;
    const password = randomBytes(9).toString('hex');
    // The GRANTs docs/health.md lists, verbatim in spirit.
    await db.query(`CREATE ROLE ${role} LOGIN PASSWORD '${password}' IN ROLE pg_monitor`);
    try {
      await db.query(`GRANT CONNECT ON DATABASE ${pg.escapeIdentifier(db.name)} TO ${role}`);
      await db.query(`GRANT USAGE ON SCHEMA sluice, sluice_staging, sluice_data TO ${role}`);
      await db.query(`GRANT SELECT ON ALL TABLES IN SCHEMA sluice, sluice_staging, sluice_data TO ${role}`);
      const url = new URL(db.url);
      url.username = role;
      url.password = password;
      const r = await report(url.toString());
      expectNoFailedChecks(r);
      // It sees what the owner sees: the lag of the previous test and the server-wide connection count.
      expect(find(r, 'pipeline.staging_lag', 'stream events')?.severity).toBe('critical');
      expect(find(r, 'connections.total', 'server')?.value).toBeGreaterThan(0);
      // And the check itself can fail: without the grants it says which privilege is missing.
      await db.query(`REVOKE SELECT ON ALL TABLES IN SCHEMA sluice_staging FROM ${role}`);
      const denied = await report(url.toString());
      const failed = denied.findings.find((f) => f.check === 'pipeline' && f.target === 'health check');
      expect(failed).toMatchObject({ severity: 'warn', value: '42501' });
    } finally {
      await db.query(`DROP OWNED BY ${role}`);
      await db.query(`DROP ROLE ${role}`);
    }
  });

  it('the task runs on schedule in a running worker: stores the report, logs a summary, prunes old reports; sluice status shows it', { timeout: 150_000 }, async () => {
    await setThreshold('staged_age_warn_s', 60); // back to the default for this report
    // A report past the 30-day retention, to be pruned; one inside it, to be kept.
    await db.query(`INSERT INTO sluice.health_reports (taken_at, status, duration_ms, findings) VALUES (now() - interval '31 days', 'ok', 1, '[]'), (now() - interval '29 days', 'ok', 1, '[]')`);
    const lines: Array<Record<string, unknown>> = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        for (const line of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(line) as Record<string, unknown>);
        done();
      },
    });
    const config = loadConfig({ workerId: `test-health-${randomBytes(2).toString('hex')}`, migrate: false, concurrency: 2, budgetScope: 'database' }, {}, { logLevel: 'info' }); // scope: see cliEnv in helpers/cli.ts
    const started = new Date();
    // The packaged crontab runs the task every 5 minutes; the test schedules it every minute (cron's finest grain).
    const worker = await runWorker({
      config,
      connectionString: db.url,
      log: pino({ level: 'info' }, sink),
      tasks: sluiceTaskList,
      crontab: '* * * * * sluice_health_check ?id=sluice_health_check&max=1\n',
    });
    try {
      const stored = await waitFor(
        async () => (await db.query<{ id: string; status: string; findings: Finding[] }>(`SELECT id, status, findings FROM sluice.health_reports WHERE taken_at >= $1`, [started])).rows,
        (rows) => rows.length > 0,
        { what: 'a stored health report', timeoutMs: 130_000, intervalMs: 1_000 },
      );
      expect(['ok', 'warn', 'critical']).toContain(stored[0]?.status);
      expect(stored[0]?.findings.length).toBeGreaterThan(0);
      const logged = await waitFor(
        async () => lines.find((l) => typeof l.msg === 'string' && (l.msg as string).startsWith('health: ') && l.report_id !== undefined),
        (l) => l !== undefined,
        { what: 'the health summary log line', timeoutMs: 10_000 },
      );
      expect(String(logged?.report_id)).toBe(stored[0]?.id);
      expect(logged?.status).toBe(stored[0]?.status);
      const remaining = await waitFor(
        async () => (await db.query<{ days: number }>(`SELECT extract(day FROM now() - taken_at)::int AS days FROM sluice.health_reports ORDER BY taken_at`)).rows,
        (rows) => !rows.some((r) => r.days >= 31),
        { what: 'the 31-day-old report pruned', timeoutMs: 10_000 },
      );
      expect(remaining.some((r) => r.days === 29)).toBe(true);
    } finally {
      await worker.stop('test done');
    }
    const status = await runCli(['status', '--json'], { env: { DATABASE_URL: db.url } });
    expect(status.code).toBe(0);
    const parsed = JSON.parse(status.stdout) as JsonOf<StatusReport>;
    expect(parsed.health?.status).toMatch(/^(ok|warn|critical)$/);
    const text = await runCli(['status'], { env: { DATABASE_URL: db.url } });
    expect(text.stdout).toMatch(/health: (OK|WARN|CRITICAL) \(report of /);
  });
});

void urlForDatabase;
