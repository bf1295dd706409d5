/**
 * xmin horizon holders and freeze age, created for real on this file's own
 * embedded Postgres, configured for them (ALTER SYSTEM, then a restart):
 * max_prepared_transactions = 10, wal_level = logical, max_replication_slots = 4
 * — so these run the same whatever server the rest of the suite uses.
 */
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEmbeddedServer, type EmbeddedServer } from '../src/db/embedded-server.js';
import { migrateDatabase } from '../src/db/migrate.js';
import type { Finding } from '../src/health/finding.js';
import { runHealthChecks, type HealthReport } from '../src/health/report.js';
import { createLogger } from '../src/logger.js';
import { embeddedHomes } from './helpers/embedded.js';

const homes = embeddedHomes();
const log = createLogger('silent');
let server: EmbeddedServer;
let url: string;
const open: pg.Client[] = [];

async function connect(): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: url, application_name: 'sluice-test-holder' });
  await c.connect();
  open.push(c);
  return c;
}

async function report(): Promise<HealthReport> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return await runHealthChecks(c, { staleAfterMs: 30_000 });
  } finally {
    await c.end();
  }
}

function find(r: HealthReport, check: string, target: string): Finding | undefined {
  return r.findings.find((f) => f.check === check && f.target === target);
}

beforeAll(async () => {
  const home = path.join(await homes.tempDir('health'), 'home');
  homes.track(home);
  server = await startEmbeddedServer({ homeDir: home, log, database: 'sluice_health' });
  const admin = new pg.Client({ connectionString: server.url });
  await admin.connect();
  for (const setting of ['max_prepared_transactions = 10', 'wal_level = logical', 'max_replication_slots = 4']) {
    await admin.query(`ALTER SYSTEM SET ${setting}`);
  }
  await admin.end();
  await server.stop();
  server = await startEmbeddedServer({ homeDir: home, log, database: 'sluice_health' });
  url = server.url;
  await migrateDatabase(url, log);
}, 180_000);

afterAll(async () => {
  for (const c of open) await c.end().catch(() => undefined);
  await server?.stop();
  await homes.cleanUp();
});

describe('xmin horizon holders and freeze age', () => {
  it('names a session idle in transaction, a prepared transaction and a logical slot, each by type with its age', async () => {
    const db = await connect();
    const settings = await db.query(`SELECT name, setting FROM pg_settings WHERE name IN ('max_prepared_transactions', 'wal_level') ORDER BY name`);
    expect(settings.rows).toEqual([{ name: 'max_prepared_transactions', setting: '10' }, { name: 'wal_level', setting: 'logical' }]);
    await db.query(`CREATE TABLE public.held (id int)`);
    await db.query(`INSERT INTO sluice.health_thresholds (name, value) VALUES ('idle_xact_warn_s', 1), ('idle_xact_critical_s', 3600)`);

    // First: creating a logical slot waits for every transaction holding an xid to end.
    await db.query(`SELECT pg_create_logical_replication_slot('sluice_test_slot', 'test_decoding')`);
    const idle = await connect();
    await idle.query('BEGIN');
    await idle.query('INSERT INTO public.held VALUES (1)'); // takes an xid: holds the horizon
    const idlePid = (await idle.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;

    const preparer = await connect();
    const gid = `sluice-test-${randomBytes(3).toString('hex')}`;
    await preparer.query('BEGIN');
    await preparer.query('INSERT INTO public.held VALUES (2)');
    await preparer.query(`PREPARE TRANSACTION '${gid}'`);
    try {
      await new Promise((r) => setTimeout(r, 1_500)); // past the 1 s thresholds (idle: lowered; prepared: check_postgres' default)
      const r = await report();
      const idleFinding = find(r, 'xmin_horizon.idle_in_transaction', `session pid ${idlePid}`);
      expect(idleFinding).toMatchObject({ severity: 'warn', threshold: 1 });
      expect(idleFinding?.value).toBeGreaterThanOrEqual(1);
      expect(idleFinding?.message).toMatch(/idle in transaction for .* holds the xmin horizon \(its xid is/);
      const prepared = find(r, 'xmin_horizon.prepared_transaction', `prepared transaction '${gid}'`);
      expect(prepared).toMatchObject({ severity: 'warn', threshold: 1 });
      expect(prepared?.advice).toContain(`ROLLBACK PREPARED '${gid}'`);
      const slot = find(r, 'xmin_horizon.replication_slot', 'slot sluice_test_slot');
      expect(slot?.severity).toBe('critical'); // inactive (pgmonitor: critical)
      expect(slot?.message).toMatch(/logical replication slot sluice_test_slot .* INACTIVE.* catalog_xmin [\d,]+ transactions old/);
      expect(r.status).toBe('critical');
    } finally {
      await db.query(`SELECT pg_drop_replication_slot('sluice_test_slot')`);
      await db.query(`ROLLBACK PREPARED '${gid}'`);
      await idle.query('ROLLBACK');
    }
    const cleared = await report();
    expect(cleared.findings.filter((f) => f.check.startsWith('xmin_horizon.'))).toEqual([]);
  });

  it('reports freeze age of a table and of a TOAST table against their per-table freeze max age after real XID consumption', async () => {
    const db = await connect();
    // Per-table overrides (the minimum Postgres allows is 100,000): f_main on the table, f_toast on its TOAST table only.
    await db.query(`CREATE TABLE public.f_main (id int, body text) WITH (autovacuum_enabled = false, autovacuum_freeze_max_age = 100000)`);
    await db.query(`CREATE TABLE public.f_toast (id int, body text) WITH (autovacuum_enabled = false, toast.autovacuum_enabled = false, toast.autovacuum_freeze_max_age = 100000)`);
    // Lowered percentages so a few thousand XIDs cross them: warn at 1 % (1,000), critical at 2 % (2,000) of 100,000.
    await db.query(`INSERT INTO sluice.health_thresholds (name, value) VALUES ('freeze_warn_pct', 1), ('freeze_critical_pct', 2)
                    ON CONFLICT (name) DO UPDATE SET value = excluded.value`);
    const before = await report();
    expect(before.findings.filter((f) => f.check === 'freeze.xid')).toEqual([]);
    // Burn XIDs: each subtransaction that writes gets an xid of its own (pg_current_xact_id would only assign the top one).
    await db.query(`CREATE TABLE public.burn (i int)`);
    await db.query(`DO $$ BEGIN FOR i IN 1..2500 LOOP BEGIN INSERT INTO public.burn VALUES (i); EXCEPTION WHEN OTHERS THEN NULL; END; END LOOP; END $$`);
    const ages = await db.query<{ relname: string; main: number; toast: number }>(
      `SELECT c.relname, age(c.relfrozenxid)::int AS main, age(t.relfrozenxid)::int AS toast
         FROM pg_class c JOIN pg_class t ON t.oid = c.reltoastrelid WHERE c.relname IN ('f_main', 'f_toast') ORDER BY 1`,
    );
    const after = await report();
    const main = find(after, 'freeze.xid', 'table public.f_main');
    expect(main).toMatchObject({ severity: 'critical', value: ages.rows[0]!.main, threshold: 1_000 });
    // f_main's TOAST table has no reloptions of its own, so it follows the main table's (as autovacuum does).
    expect(after.findings.find((f) => f.check === 'freeze.xid' && f.target.startsWith('toast of table public.f_main'))?.severity).toBe('critical');
    // f_toast: only its TOAST table has the low freeze max age.
    expect(find(after, 'freeze.xid', 'table public.f_toast')).toBeUndefined();
    const toast = after.findings.find((f) => f.check === 'freeze.xid' && f.target.startsWith('toast of table public.f_toast'));
    expect(toast).toMatchObject({ severity: 'critical', value: ages.rows[1]!.toast, threshold: 1_000 });

    await db.query(`VACUUM (FREEZE) public.f_main`);
    await db.query(`VACUUM (FREEZE) public.f_toast`);
    const frozen = await report();
    expect(frozen.findings.filter((f) => f.check === 'freeze.xid')).toEqual([]);
  });
});
