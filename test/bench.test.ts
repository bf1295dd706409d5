/**
 * `sluice bench` works end to end on a tiny workload: every scenario runs,
 * its row counts are verified, the table and the targets are printed and the
 * JSON record is complete. Speed is never asserted here.
 */
import { readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { allScenarios } from '../src/bench/run-bench.js';
import type { BenchReport } from '../src/bench/report.js';
import { createTestDatabase } from './helpers/database.js';
import { runCli } from './helpers/cli.js';

const db = await createTestDatabase('bench');

describe('sluice bench', () => {
  it('runs every scenario on a tiny workload, verifies counts, prints the table and writes JSON', async () => {
    const json = path.join(os.tmpdir(), `sluice-bench-test-${process.pid}.json`);
    const run = await runCli(['bench', '--events', '400', '--json', json, '--no-progress'], {
      env: { DATABASE_URL: db.url },
      timeoutMs: 240_000,
    });
    expect(run.stderr).not.toMatch(/count check failed/);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/\| scenario \| rows \| s \| rows\/s \| × its limit \| × best alternative \| notes \|/);
    expect(run.stdout).toMatch(/\| target \| measured \| goal \| met \|/);

    const report = JSON.parse(await readFile(json, 'utf8')) as BenchReport;
    await rm(json, { force: true });
    const expectedIds = allScenarios().map((s) => s.id);
    expect(report.scenarios.map((s) => s.id)).toEqual(expectedIds);
    for (const s of report.scenarios) {
      expect(s.verified.actual, `${s.id}: ${s.verified.what}`).toBe(s.verified.expected);
      expect(s.rows).toBeGreaterThan(0);
      expect(s.rowsPerSecond).toBeGreaterThan(0);
      expect(run.stdout).toContain(s.title);
    }
    // Workers ran inside their declared budget, and their figures were recorded.
    const withWorkers = report.scenarios.filter((s) => s.budget !== undefined);
    expect(withWorkers.length).toBeGreaterThanOrEqual(5);
    for (const s of withWorkers) {
      expect(s.peakConnections).toBeGreaterThan(0);
      expect(s.peakConnections).toBeLessThanOrEqual(s.budget as number);
    }
    expect(report.scenarios.find((s) => s.id === 'sluice_e2e_half_rate')?.lagMs?.p50).toBeGreaterThanOrEqual(0);
    expect(report.targets).toHaveLength(12);
    for (const t of report.targets) expect(typeof t.met).toBe('boolean');
    expect(report.postgres.version).toMatch(/PostgreSQL \d+/);
    expect(report.postgres.settings.shared_buffers).toBeDefined();
    expect(report.machine.cores).toBeGreaterThan(0);
    expect(report.options).toMatchObject({ events: 400 });
    // The bench cleans up after itself.
    const leftovers = await db.query(`SELECT name FROM sluice.streams WHERE name LIKE 'bench_%'`);
    expect(leftovers.rows).toEqual([]);
  }, 240_000);
});
