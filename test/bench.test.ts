/**
 * `sluice bench` works end to end on a tiny workload: every scenario runs,
 * its row counts are verified, the table and the targets are printed and the
 * JSON record is complete; target scenarios run in every interleaved round and
 * every target carries its per-round figures. Speed is never asserted here.
 */
import { readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { allScenarios } from '../src/bench/run-bench.js';
import type { BenchReport } from '../src/bench/report.js';
import type { JsonOf } from '../src/json-keys.js';
import { createTestDatabase } from './helpers/database.js';
import { runCli, stderrRecords } from './helpers/cli.js';

const db = await createTestDatabase('bench');

describe('sluice bench', () => {
  it('runs every scenario on a tiny workload, verifies counts, prints the table and writes the JSON record (--out)', async () => {
    const json = path.join(os.tmpdir(), `sluice-bench-test-${process.pid}.json`);
    const run = await runCli(['bench', '--events', '400', '--rounds', '2', '--out', json, '--no-progress'], {
      env: { DATABASE_URL: db.url },
      timeoutMs: 240_000,
    });
    expect(run.stderr).not.toMatch(/count check failed/);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/\| scenario \| rows \| s \| rows\/s \| × its limit \| × best alternative \| notes \|/);
    expect(run.stdout).toMatch(/\| target \| median \| min–max \| goal \| met \|/);

    const report = JSON.parse(await readFile(json, 'utf8')) as JsonOf<BenchReport>;
    await rm(json, { force: true });
    const expectedIds = allScenarios().map((s) => s.id);
    expect(report.scenarios.map((s) => s.id)).toEqual(expectedIds);
    for (const s of report.scenarios) {
      expect(s.verified.actual, `${s.id}: ${s.verified.what}`).toBe(s.verified.expected);
      expect(s.rows).toBeGreaterThan(0);
      expect(s.rows_per_second).toBeGreaterThan(0);
      expect(run.stdout).toContain(s.title);
    }
    // Workers ran inside their declared budget, and their figures were recorded.
    const withWorkers = report.scenarios.filter((s) => s.budget !== undefined);
    expect(withWorkers.length).toBeGreaterThanOrEqual(5);
    for (const s of withWorkers) {
      expect(s.peak_connections).toBeGreaterThan(0);
      expect(s.peak_connections).toBeLessThanOrEqual(s.budget as number);
    }
    expect(report.scenarios.find((s) => s.id === 'sluice_e2e_half_rate')?.lag_ms?.p50).toBeGreaterThanOrEqual(0);
    // Target scenarios ran in both rounds (limit, sluice, limit, sluice …); the others once.
    const everyRound = allScenarios().filter((s) => s.everyRound).map((s) => s.id);
    expect(everyRound).toEqual(expect.arrayContaining(['limit_raw_copy', 'limit_one_shot_ordered', 'limit_one_shot_2conn', 'sluice_ingestor',
      'sluice_sql_ingest_100x1', 'sluice_sql_ingest_1x8', 'alt_gw_add_job_1x8', 'sluice_drain_1', 'sluice_drain_2', 'sluice_e2e_budget16']));
    for (const s of report.scenarios) expect(s.runs?.length ?? 1, s.id).toBe(everyRound.includes(s.id) ? 2 : 1);
    expect(report.targets).toHaveLength(15);
    for (const t of report.targets) {
      expect(typeof t.met, t.id).toBe('boolean');
      expect(t.rounds, t.id).toHaveLength(2);
      expect(t.min, t.id).toBeLessThanOrEqual(t.measured as number);
      expect(t.max, t.id).toBeGreaterThanOrEqual(t.measured as number);
    }
    expect(report.targets.map((t) => t.id)).toEqual(expect.arrayContaining(['sql_ingest_100_vs_ingestor', 'sql_ingest_1x8_vs_add_job',
      'drain_1_vs_ordered_one_shot', 'drain_2_vs_two_connection_one_shot']));
    expect(report.postgres.version).toMatch(/PostgreSQL \d+/);
    expect(report.postgres.settings.shared_buffers).toBeDefined();
    expect(report.machine.cores).toBeGreaterThan(0);
    expect(report.options).toMatchObject({ events: 400, rounds: 2 });
    // The bench cleans up after itself.
    const leftovers = await db.query(`SELECT name FROM sluice.streams WHERE name LIKE 'bench_%'`);
    expect(leftovers.rows).toEqual([]);
  }, 240_000);

  /** Two cheap scenarios that make one target (ingest_vs_copy), judged against a goal given on the command line. */
  const CHECKED = ['bench', '--events', '400', '--rounds', '1', '--scenarios', 'limit_raw_copy', 'sluice_ingestor', '--no-progress', '--check', '--json'];

  it('--check exits 1 naming a target that is not met (an impossible --target goal), with the report on stdout', async () => {
    const run = await runCli([...CHECKED, '--target', 'ingest_vs_copy=1000'], { env: { DATABASE_URL: db.url }, timeoutMs: 120_000 });
    expect(run.code, run.stderr).toBe(1);
    const report = JSON.parse(run.stdout) as JsonOf<BenchReport>;
    const target = report.targets.find((t) => t.id === 'ingest_vs_copy');
    expect(target).toMatchObject({ met: false, threshold: 1000, default_threshold: 0.8, comparator: '>=' });
    expect(target?.measured).toBeGreaterThan(0);
    // Targets whose scenarios did not run are not judged, and do not fail the check.
    expect(report.targets.filter((t) => t.id !== 'ingest_vs_copy').every((t) => t.met === null || t.met === undefined)).toBe(true);
    const records = stderrRecords(run.stderr);
    const miss = records.find((r) => r.target === 'ingest_vs_copy');
    expect(miss?.msg).toMatch(/target ingest_vs_copy NOT MET: .* goal >= 1000/);
    expect(miss?.level).toBe(40);
    expect(records.find((r) => Array.isArray(r.unmet))?.unmet).toEqual(['ingest_vs_copy']);
  }, 120_000);

  it('--check exits 0 when every measured target is met (a trivial --target goal)', async () => {
    const run = await runCli([...CHECKED, '--target', 'ingest_vs_copy=0.000001'], { env: { DATABASE_URL: db.url }, timeoutMs: 120_000 });
    expect(run.code, run.stderr).toBe(0);
    const report = JSON.parse(run.stdout) as JsonOf<BenchReport>;
    expect(report.targets.find((t) => t.id === 'ingest_vs_copy')).toMatchObject({ met: true, threshold: 0.000001 });
    expect(stderrRecords(run.stderr).find((r) => Array.isArray(r.unmet))?.unmet).toEqual([]);
  }, 120_000);

  it('--check with no target measured, and an unknown or malformed --target, are usage errors (exit 2)', async () => {
    const none = await runCli(['bench', '--events', '400', '--rounds', '1', '--scenarios', 'limit_raw_copy', '--no-progress', '--check', '--json'], {
      env: { DATABASE_URL: db.url },
      timeoutMs: 120_000,
    });
    expect(none.code, none.stderr).toBe(2);
    expect(stderrRecords(none.stderr).at(-1)?.msg).toMatch(/--check: no target was measured/);
    for (const bad of ['nope=1', 'ingest_vs_copy', 'ingest_vs_copy=fast']) {
      const run = await runCli(['bench', '--target', bad, '--check'], { env: { DATABASE_URL: db.url } });
      expect(run.code, bad).toBe(2);
      expect(run.stdout, bad).toBe('');
      expect(stderrRecords(run.stderr).at(-1)?.msg, bad).toMatch(/--target/);
    }
    // The old `--json FILE` is gone: --json is a flag, a file name after it is refused.
    const old = await runCli(['bench', '--json', 'out.json'], { env: { DATABASE_URL: db.url } });
    expect(old.code).toBe(2);
    expect(old.stdout).toBe('');
    expect(stderrRecords(old.stderr).at(-1)?.msg).toMatch(/out\.json/);
  }, 120_000);
});
