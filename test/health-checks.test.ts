/**
 * The health checks health.test.ts and health-horizon.test.ts do not reach,
 * each condition made for real on the test server and each threshold lowered
 * only as far as the condition needs: a long transaction, total connections,
 * a stale worker registration, the rejects rate, database wraparound, and a
 * table due an analyze. Each is shown firing and, where the condition can be
 * undone, clearing.
 */
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import type { Finding } from '../src/health/finding.js';
import type { HealthReport } from '../src/health/report.js';
import { sleep } from '../src/timing.js';
import { healthReport, setHealthThreshold } from './helpers/health.js';
import { createTestDatabase } from './helpers/database.js';

const db = await createTestDatabase('health_checks');

const report = (): Promise<HealthReport> => healthReport(db.url);
const setThreshold = (name: string, value: number): Promise<void> => setHealthThreshold(db, name, value);

function findings(r: HealthReport, check: string): Finding[] {
  return r.findings.filter((f) => f.check === check);
}

afterEach(async () => {
  await db.query('DELETE FROM sluice.health_thresholds');
});

describe('health checks, each condition made for real', () => {
  it('a long transaction holding an xid is named with its age, application and statement; gone once it ends', async () => {
    await setThreshold('long_xact_warn_s', 1);
    const holder = new pg.Client({ connectionString: db.url, application_name: 'sluice-test-long-xact' });
    await holder.connect();
    try {
      await holder.query('BEGIN');
      await holder.query('SELECT txid_current()');
      // Long enough to still be running when the report looks, however slow the box; cancelled after.
      const sleeping = holder.query('SELECT pg_sleep(60)').catch((err: { code?: string }) => err.code);
      await sleep(1_500);
      const pid = (holder as unknown as { processID: number }).processID;
      const long = findings(await report(), 'xmin_horizon.long_transaction').find((f) => f.target === `session pid ${pid}`);
      expect(long).toMatchObject({ severity: 'warn', threshold: 1 });
      expect(long?.value).toBeGreaterThanOrEqual(1);
      expect(long?.message).toContain("application_name 'sluice-test-long-xact'");
      expect(long?.message).toContain('pg_sleep(60)');
      expect(long?.message).toContain('holds the xmin horizon');
      await db.query('SELECT pg_cancel_backend($1)', [pid]);
      expect(await sleeping).toBe('57014');
      await holder.query('ROLLBACK');
      const after = findings(await report(), 'xmin_horizon.long_transaction').filter((f) => f.target === `session pid ${pid}`);
      expect(after).toEqual([]);
    } finally {
      await holder.end();
    }
  });

  it("total connections against max_connections minus the reserved slots: warn past the warn share, critical past the critical share", async () => {
    const { rows } = await db.query<{ max: number; reserved: number }>(
      `SELECT current_setting('max_connections')::int AS max, current_setting('superuser_reserved_connections')::int
                + coalesce(nullif(current_setting('reserved_connections', true), '')::int, 0) AS reserved`,
    );
    const usable = rows[0]!.max - rows[0]!.reserved;
    // At least the reporting session is connected: one connection is 100 / usable percent.
    const onePct = 100 / usable;
    await setThreshold('connections_warn_pct', onePct / 2);
    await setThreshold('connections_critical_pct', 100);
    const warn = findings(await report(), 'connections.total')[0];
    expect(warn).toMatchObject({ severity: 'warn', target: 'server' });
    expect(warn?.message).toMatch(new RegExp(`client connections of ${usable} usable \\(max_connections ${rows[0]!.max} − ${rows[0]!.reserved} reserved\\)`));
    await setThreshold('connections_critical_pct', onePct / 2);
    expect(findings(await report(), 'connections.total')[0]).toMatchObject({ severity: 'critical' });
    // Only a full server reaches 100 %.
    await setThreshold('connections_warn_pct', 100);
    await setThreshold('connections_critical_pct', 100);
    expect(findings(await report(), 'connections.total')[0]).toMatchObject({ severity: 'ok' });
  });

  it('a worker registration whose heartbeat stopped is reported stale, with the connections that still carry its name', async () => {
    const id = `ghost-${randomUUID().slice(0, 8)}`;
    await db.query(
      `INSERT INTO sluice.workers (id, host, pid, version, budget, plan, heartbeat_at, heartbeat_ms, stale_after_ms)
       VALUES ($1, 'gone-host', 4242, 'test', 4, '{"pool": 2, "flushers": 1, "drainers": 1, "total": 4}', now() - interval '10 minutes', 1000, 3000)`,
      [id],
    );
    const named = new pg.Client({ connectionString: db.url, application_name: `sluice/${id}/pool` });
    await named.connect();
    try {
      const stale = findings(await report(), 'connections.stale_worker').find((f) => f.target === `worker ${id}`);
      expect(stale).toMatchObject({ severity: 'warn' });
      expect(stale?.value).toBeGreaterThanOrEqual(600);
      expect(stale?.message).toContain('gone-host pid 4242');
      expect(stale?.message).toContain('yet 1 connection(s) still carry its name');
      expect(stale?.advice).toContain(`DELETE FROM sluice.workers WHERE id = '${id}'`);
    } finally {
      await named.end();
      await db.query('DELETE FROM sluice.workers WHERE id = $1', [id]);
    }
    expect(findings(await report(), 'connections.stale_worker').filter((f) => f.target === `worker ${id}`)).toEqual([]);
  });

  it('the rejects rate: rejects in the last hour as a share of rejects and drained rows', async () => {
    await db.query(`SELECT sluice.create_stream('rated')`);
    const reject = (n: number) =>
      db.query(
        `INSERT INTO sluice.rejects (stream, source, reason, message, raw) SELECT 'rated', 'client', 'invalid_json', 'not JSON', 'x' || g FROM generate_series(1, $1) g`,
        [n],
      );
    const target = 'stream rated';
    // 5 rejects and nothing drained: 100 % → critical.
    await reject(5);
    expect(findings(await report(), 'pipeline.rejects_rate').find((f) => f.target === target)).toMatchObject({ severity: 'critical', value: 5 });
    // 995 rows drained in the last hour: 5 of 1,000 = 0.5 %, under the 1 % warn share → ok.
    await db.query(`INSERT INTO sluice.drain_stats (stream, bucket, drainer, batches, moved, inserted) VALUES ('rated', date_bin('10 seconds', now(), 'epoch'), 'test', 1, 995, 995)`);
    const ok = findings(await report(), 'pipeline.rejects_rate').find((f) => f.target === target);
    expect(ok).toMatchObject({ severity: 'ok', value: 5 });
    expect(ok?.message).toContain('0.50 % of 1,000 events');
    // 15 more: 20 of 1,015 ≈ 1.97 % → warn, with the query that breaks them down by reason.
    await reject(15);
    const warn = findings(await report(), 'pipeline.rejects_rate').find((f) => f.target === target);
    expect(warn).toMatchObject({ severity: 'warn', value: 20 });
    expect(warn?.advice).toContain("WHERE stream = 'rated'");
  });

  it('database wraparound: age(datfrozenxid) of every database against 2^31, named per database', async () => {
    const { rows } = await db.query<{ age: number }>(`SELECT age(datfrozenxid)::float8 AS age FROM pg_database WHERE datname = current_database()`);
    const pct = (rows[0]!.age / 2 ** 31) * 100;
    expect(pct).toBeGreaterThan(0);
    // Thresholds just under this database's real share: the finding must appear with the database's own numbers.
    await setThreshold('wraparound_warn_pct', pct / 2);
    await setThreshold('wraparound_critical_pct', 100);
    const { rows: names } = await db.query<{ datname: string }>('SELECT current_database() AS datname');
    const mine = findings(await report(), 'wraparound.xid').find((f) => f.target.includes(names[0]!.datname));
    expect(mine).toMatchObject({ severity: 'warn' });
    expect(mine?.message).toMatch(/age\(datfrozenxid\) [\d,]+ is [\d.]+ % of the 2\^31 wraparound limit/);
  });

  it("sluice's small control tables get no dead-tuple finding (under 1 MB there is no bloat to report); past it they do", async () => {
    await db.query(`ALTER TABLE sluice.drain_stats SET (autovacuum_enabled = false)`);
    const churn = async (rows: number, updates: number, pad: number) => {
      const c = new pg.Client({ connectionString: db.url, application_name: 'sluice-test-churn' });
      await c.connect();
      await c.query(
        `INSERT INTO sluice.drain_stats (stream, bucket, drainer, batches, moved, inserted)
         SELECT 'churned', now() - make_interval(secs => g * 10), repeat('d', $2::int), 1, g, g FROM generate_series(1, $1::int) g`,
        [rows, pad],
      );
      for (let i = 0; i < updates; i++) await c.query(`UPDATE sluice.drain_stats SET batches = batches + 1 WHERE stream = 'churned'`);
      await c.end(); // its statistics are flushed when it ends
      await sleep(500);
    };
    const finding = async () => findings(await report(), 'dead_tuples').find((f) => f.target === 'table sluice.drain_stats');
    try {
      // 200 rows updated 5 times: 1,000 dead tuples against a trigger of ~90, in a table of a few pages.
      await churn(200, 5, 10);
      const { rows } = await db.query<{ dead: string; bytes: string }>(
        `SELECT n_dead_tup AS dead, pg_table_size(relid) AS bytes FROM pg_stat_all_tables WHERE relid = 'sluice.drain_stats'::regclass`,
      );
      expect(Number(rows[0]?.dead)).toBeGreaterThanOrEqual(500);
      expect(Number(rows[0]?.bytes)).toBeLessThan(1024 * 1024);
      expect(await finding()).toBeUndefined();
      // The same churn on rows wide enough to pass 1 MB: reported.
      await db.query(`DELETE FROM sluice.drain_stats WHERE stream = 'churned'`);
      await churn(2_000, 3, 400);
      expect(await finding()).toMatchObject({ check: 'dead_tuples' });
    } finally {
      await db.query(`DELETE FROM sluice.drain_stats WHERE stream = 'churned'`);
      await db.query(`ALTER TABLE sluice.drain_stats RESET (autovacuum_enabled)`);
    }
  });

  it('a table with churn that was never analysed is due an analyze; ANALYZE clears it', async () => {
    await setThreshold('min_table_mb', 0);
    await db.query(`CREATE TABLE public.churn (id int, v text) WITH (autovacuum_enabled = false)`);
    await db.query(`INSERT INTO public.churn SELECT g, md5(g::text) FROM generate_series(1, 20000) g`);
    const target = 'table public.churn';
    const due = await waitForFinding('vacuum_recency.analyze', target);
    expect(due).toMatchObject({ severity: 'warn' });
    expect(due.message).toMatch(/due an analyze \(20,000 rows changed since the last\) and never analysed/);
    expect(due.advice).toContain('ANALYZE public.churn');
    await db.query('ANALYZE public.churn');
    await sleep(1_200); // the cumulative statistics arrive within about a second
    expect(findings(await report(), 'vacuum_recency.analyze').filter((f) => f.target === target)).toEqual([]);
  });
});

/** pg_stat counters arrive within about a second of the writing transaction's end. */
async function waitForFinding(check: string, target: string): Promise<Finding> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const found = findings(await report(), check).find((f) => f.target === target);
    if (found) return found;
    if (Date.now() > deadline) throw new Error(`no ${check} finding for ${target} within 15 s`);
    await sleep(300);
  }
}
