/**
 * `sluice demo --json` against DATABASE_URL: exits 0 and its report checks
 * out against the database itself — every unique valid event durable exactly
 * once, one reject for each of the 8 invalid inputs, peak connections within
 * the budget, nothing left in staging. A second run on the same database
 * (the stream already exists) succeeds too.
 */
import { describe, expect, it } from 'vitest';
import type { JsonOf } from '../src/json-keys.js';
import type { DemoReport as DemoReportObject } from '../src/demo/run-demo.js';

/** `demo --json` as printed: snake_case keys. */
type DemoReport = JsonOf<DemoReportObject>;
import { REJECT_REASONS, type RejectReason } from '../src/ingest/event-encoder.js';
import { runCli } from './helpers/cli.js';
import { createTestDatabase } from './helpers/database.js';

const db = await createTestDatabase('demo');

/** The demo sends one input per validation rule the encoder enforces on its own. */
const DEMO_INVALID_REASONS: readonly RejectReason[] = [
  'not_an_object',
  'missing_event_id',
  'invalid_event_id',
  'missing_occurred_at',
  'invalid_occurred_at',
  'occurred_at_out_of_window',
  'invalid_payload',
  'event_too_large',
];

async function runDemo(events: number): Promise<DemoReport> {
  const result = await runCli(['demo', '--events', String(events), '--json'], { env: { DATABASE_URL: db.url }, timeoutMs: 90_000 });
  expect(result.code, result.stderr.slice(-3000)).toBe(0);
  expect(result.stderr).not.toMatch(/error/i);
  return JSON.parse(result.stdout) as DemoReport;
}

async function checkAgainstDatabase(report: DemoReport, events: number): Promise<void> {
  expect(report.problems).toEqual([]);
  expect(report.ok).toBe(true);
  expect(report.generated).toBe(events);
  expect(report.unique + report.resends).toBe(events);
  expect(report.resends).toBeGreaterThan(0);
  expect(report.expected_durable).toBe(report.unique + report.sql_events);
  expect(report.durable_rows).toBe(report.expected_durable);
  expect(report.duplicates_collapsed).toBeGreaterThanOrEqual(report.resends);
  expect(report.staging_left).toBe(0);

  // The database agrees with the report.
  const durable = await db.query<{ n: number; ids: number }>(
    `SELECT count(*)::int AS n, count(DISTINCT event_id)::int AS ids FROM sluice_data.events WHERE payload->>'demo_run' = $1`,
    [report.run_id],
  );
  expect(durable.rows[0]).toEqual({ n: report.expected_durable, ids: report.expected_durable });
  const viaSql = await db.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM sluice_data.events WHERE payload->>'demo_run' = $1 AND payload->>'via' = 'sql'`,
    [report.run_id],
  );
  expect(viaSql.rows[0]?.n).toBe(report.sql_events);
  const staged = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM sluice_staging.events WHERE payload->>'demo_run' = $1`, [report.run_id]);
  expect(staged.rows[0]?.n).toBe(0);

  // One reject per invalid input, each with its own reason.
  expect(report.invalid_sent).toBe(DEMO_INVALID_REASONS.length);
  for (const reason of DEMO_INVALID_REASONS) {
    expect(REJECT_REASONS).toContain(reason);
    const row = report.rejects.find((r) => r.reason === reason);
    expect(row, `reject ${reason} in ${JSON.stringify(report.rejects)}`).toBeDefined();
    expect(row?.count).toBe(1);
    expect(row?.example.length).toBeGreaterThan(0);
  }
  expect(report.rejects.map((r) => r.reason).sort()).toEqual([...DEMO_INVALID_REASONS].sort());
  const stored = await db.query<{ reason: string; n: number }>(
    `SELECT reason, count(*)::int AS n FROM sluice.rejects WHERE stream = 'events' AND raw LIKE '%' || $1 || '%' GROUP BY reason`,
    [report.run_id],
  );
  // Every reject that carries the run id (all but the array) is stored once.
  expect(stored.rows.map((r) => r.reason).sort()).toEqual(DEMO_INVALID_REASONS.filter((r) => r !== 'not_an_object').sort());
  expect(stored.rows.every((r) => r.n === 1)).toBe(true);

  expect(report.peak_connections).toBeGreaterThan(0);
  expect(report.peak_connections).toBeLessThanOrEqual(report.budget);
  expect(report.plan.total).toBeLessThanOrEqual(report.budget);

  // The demo's worker deregistered on the way out.
  const workers = await db.query(`SELECT id FROM sluice.workers WHERE id = $1`, [`demo-${report.run_id}`]);
  expect(workers.rowCount).toBe(0);
}

describe('sluice demo', () => {
  it('--events 3000 --json: ok, every count checks out against the database', async () => {
    const report = await runDemo(3_000);
    await checkAgainstDatabase(report, 3_000);
  }, 90_000);

  it('a second run on the same database succeeds too (stream already there)', async () => {
    const before = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM sluice_data.events`);
    const report = await runDemo(1_000);
    await checkAgainstDatabase(report, 1_000);
    const after = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM sluice_data.events`);
    expect((after.rows[0]?.n ?? 0) - (before.rows[0]?.n ?? 0)).toBe(report.expected_durable);
  }, 90_000);
});
