/** Health reports in tests: one report on its own session, and threshold overrides in sluice.health_thresholds. */
import pg from 'pg';
import { runHealthChecks, type HealthReport } from '../../src/health/report.js';
import type { TestDatabase } from './database.js';

export async function healthReport(url: string): Promise<HealthReport> {
  const client = new pg.Client({ connectionString: url, application_name: 'sluice-test-health' });
  await client.connect();
  try {
    return await runHealthChecks(client, { staleAfterMs: 30_000 });
  } finally {
    await client.end();
  }
}

export async function setHealthThreshold(db: TestDatabase, name: string, value: number): Promise<void> {
  await db.query(`INSERT INTO sluice.health_thresholds (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = excluded.value`, [name, value]);
}
