/**
 * The health report reads sluice's own registries (migration 00008): each
 * stream's last partition rotation, and each matview's staleness against its
 * own interval. Seen broken before: matview staleness was never judged (the
 * check looked for an interval-typed column; sluice.matviews has every_s int),
 * and a failed rotation of one stream was hidden by a later stream's clean run.
 */
import { describe, expect, it } from 'vitest';
import type { Finding } from '../src/health/finding.js';
import { runHealthChecks } from '../src/health/report.js';
import { createTestDatabase } from './helpers/database.js';

const db = await createTestDatabase('health_registries');

async function findings(check: string): Promise<Finding[]> {
  const report = await runHealthChecks(db.pool, { staleAfterMs: 30_000 });
  return report.findings.filter((f) => f.check === check);
}

describe('health: registries', () => {
  it("judges each matview's age against its own interval", async () => {
    await db.query(`CREATE MATERIALIZED VIEW sluice_views.hr_fresh AS SELECT 1 AS k`);
    await db.query(`CREATE MATERIALIZED VIEW sluice_views.hr_stale AS SELECT 1 AS k`);
    await db.query(
      `INSERT INTO sluice.matviews (name, sql, unique_columns, every_s, last_refreshed_at)
       VALUES ('hr_fresh', 'SELECT 1 AS k', '{k}', 600, now() - interval '1 minute'),
              ('hr_stale', 'SELECT 1 AS k', '{k}', 60, now() - interval '1 hour')`,
    );
    const byTarget = new Map((await findings('pipeline.matview_staleness')).map((f) => [f.target, f]));
    expect(byTarget.get('matview hr_fresh')?.severity).toBe('ok');
    // 60 minutes against a 1-minute interval: far past the critical factor.
    expect(byTarget.get('matview hr_stale')?.severity).toBe('critical');
    expect(byTarget.get('matview hr_stale')?.message).toMatch(/last refreshed 60(\.0)? min/);
  });

  it("reports a stream's failed rotation even when another stream's run came after it", async () => {
    await db.query(
      `INSERT INTO sluice.partition_runs (stream, runner, clock_at, started_at, finished_at, error)
       VALUES ('hr_a', 'w', now(), now() - interval '2 minutes', now() - interval '2 minutes', 'lock_timeout on sluice_data.hr_a'),
              ('hr_b', 'w', now(), now() - interval '1 minute', now() - interval '1 minute', NULL)`,
    );
    const byTarget = new Map((await findings('pipeline.rotation')).map((f) => [f.target, f]));
    expect(byTarget.get('stream hr_a')?.severity).toBe('warn');
    expect(byTarget.get('stream hr_a')?.message).toMatch(/failed: lock_timeout/);
    expect(byTarget.get('stream hr_b')?.severity).toBe('ok');
  });
});
