/**
 * sluice.rejects has a retention (issue 13, item 6): the hourly maintenance
 * task prunes rejects older than --rejects-retention-days, in bounded chunks,
 * keeps recent ones (also of dropped streams, until they age out), and
 * `sluice status` shows what is kept: per stream total, last 24 h and oldest,
 * and a summary over all rejects.
 */
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, REJECTS_RETENTION_DAYS_DEFAULT } from '../src/config.js';
import { pruneRejects } from '../src/maintenance/prune.js';
import type { JsonOf } from '../src/json-keys.js';
import type { StatusReport } from '../src/status/stream-status.js';
import { runCli } from './helpers/cli.js';
import { createTestDatabase } from './helpers/database.js';
import { waitFor } from './helpers/wait.js';
import { startWorker } from './helpers/worker.js';

const db = await createTestDatabase('rejects_retention');

/** `count` rejects for `stream`, received `ageDays` ago (plus a few seconds per row, so they are not all equal). */
async function addRejects(stream: string, count: number, ageDays: number, label: string): Promise<void> {
  await db.query(
    `INSERT INTO sluice.rejects (stream, received_at, source, reason, message, raw)
     SELECT $1, now() - make_interval(days => $2::int) - make_interval(secs => i), 'sql', 'invalid_event_id', $3, '{}'
       FROM generate_series(1, $4::int) i`,
    [stream, ageDays, label, count],
  );
}

async function kept(): Promise<Record<string, number>> {
  const { rows } = await db.query<{ message: string; n: number }>(`SELECT message, count(*)::int AS n FROM sluice.rejects GROUP BY message`);
  return Object.fromEntries(rows.map((r) => [r.message, r.n]));
}

async function status(): Promise<{ report: JsonOf<StatusReport>; text: string }> {
  const json = await runCli(['status', '--json'], { env: { DATABASE_URL: db.url } });
  expect(json.code, json.stderr).toBe(0);
  const text = await runCli(['status'], { env: { DATABASE_URL: db.url } });
  expect(text.code, text.stderr).toBe(0);
  return { report: JSON.parse(json.stdout) as JsonOf<StatusReport>, text: text.stdout };
}

describe('rejects retention', () => {
  it('the setting: default 30 days, flag over environment, 0 keeps everything, out of range refused', () => {
    expect(REJECTS_RETENTION_DAYS_DEFAULT).toBe(30);
    expect(loadConfig({}, {}).rejectsRetentionDays).toBe(30);
    expect(loadConfig({}, { SLUICE_REJECTS_RETENTION_DAYS: '7' }).rejectsRetentionDays).toBe(7);
    expect(loadConfig({ rejectsRetentionDays: 3 }, { SLUICE_REJECTS_RETENTION_DAYS: '7' }).rejectsRetentionDays).toBe(3);
    expect(loadConfig({ rejectsRetentionDays: 0 }, {}).rejectsRetentionDays).toBe(0);
    expect(() => loadConfig({ rejectsRetentionDays: -1 }, {})).toThrow(ConfigError);
    expect(() => loadConfig({}, { SLUICE_REJECTS_RETENTION_DAYS: '1.5' })).toThrow(/SLUICE_REJECTS_RETENTION_DAYS must be an integer/);
  });

  it('pruning goes in chunks until the whole backlog older than the retention is gone; the rest stays', async () => {
    await db.query('TRUNCATE sluice.rejects');
    await addRejects('events', 12_345, 45, 'backlog');
    await addRejects('events', 40, 29, 'recent');
    await addRejects('events', 5, 0, 'today');
    // A retention of 0 keeps everything.
    expect(await pruneRejects(db.pool, 0, { chunkRows: 1_000 })).toBe(0);
    expect(await kept()).toEqual({ backlog: 12_345, recent: 40, today: 5 });

    expect(await pruneRejects(db.pool, 30, { chunkRows: 1_000 })).toBe(12_345);
    expect(await kept()).toEqual({ recent: 40, today: 5 });
    expect(await pruneRejects(db.pool, 30, { chunkRows: 1_000 })).toBe(0);
  });

  it('the hourly maintenance task of a running worker prunes by its --rejects-retention-days; status shows what is kept', async () => {
    await db.query('TRUNCATE sluice.rejects');
    await db.query(`SELECT sluice.create_stream('clicks')`);
    await addRejects('events', 300, 10, 'events old');
    await addRejects('events', 7, 2, 'events recent');
    await addRejects('events', 4, 0, 'events today');
    await addRejects('clicks', 20, 9, 'clicks old');
    await addRejects('clicks', 3, 0, 'clicks today');
    // A stream dropped long ago: its rejects stay until they age out too.
    await addRejects('gone', 50, 60, 'gone old');
    await addRejects('gone', 2, 5, 'gone recent');

    const before = await status();
    const events = before.report.streams.find((s) => s.stream === 'events');
    expect(events).toMatchObject({ rejects_total: 311, rejects_last_day: 4 });
    expect(Date.parse(events!.oldest_reject_at!)).toBeLessThan(Date.now() - 10 * 86_400_000);
    expect(before.report.rejects).toMatchObject({ total: 386, last_day: 7 });
    expect(Date.parse(before.report.rejects.oldest_at!)).toBeLessThan(Date.now() - 60 * 86_400_000);
    expect(before.text).toMatch(/rejects\/24h/);
    expect(before.text).toMatch(/oldest reject/);
    expect(before.text).toMatch(/rejects kept: 386 \(7 in the last 24 h\), oldest /);

    await startWorker(db, { concurrency: 2, poolSize: 2, drainers: 1, maxConnections: 4, rejectsRetentionDays: 7 });
    // What the crontab runs hourly, now.
    await db.query(`SELECT graphile_worker.add_job('sluice_rotate_partitions', '{}'::json, job_key => 'sluice_rotate_partitions_now')`);
    await waitFor(
      async () => (await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM graphile_worker.jobs WHERE task_identifier = 'sluice_rotate_partitions'`)).rows[0]?.n,
      (n) => n === 0,
      { what: 'the maintenance job to complete' },
    );
    expect(await kept()).toEqual({ 'events recent': 7, 'events today': 4, 'clicks today': 3, 'gone recent': 2 });

    const after = await status();
    expect(after.report.streams.find((s) => s.stream === 'events')).toMatchObject({ rejects_total: 11, rejects_last_day: 4 });
    expect(after.report.streams.find((s) => s.stream === 'clicks')).toMatchObject({ rejects_total: 3, rejects_last_day: 3 });
    expect(after.report.rejects).toMatchObject({ total: 16, last_day: 7 });
    // Nothing older than the retention is left.
    expect(Date.parse(after.report.rejects.oldest_at!)).toBeGreaterThan(Date.now() - 7 * 86_400_000);
  });
});
