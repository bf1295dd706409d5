/**
 * `sluice bench --scale` works end to end on a tiny run (20,000 events in
 * buckets of 5,000): every event is durable exactly once, every bucket carries
 * its figures, the health report and the partition list run over a stream of
 * 1,000 partitions, the chart is an SVG with one point per figure, and the
 * bench leaves nothing behind. Speed is never asserted here.
 */
import { readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { renderScaleMarkdown, type ScaleReport } from '../src/bench/scale/scale-report.js';
import { lagOfSamples } from '../src/bench/scale/lag-samples.js';
import { BenchContext } from '../src/bench/bench-context.js';
import { silentLogger } from '../src/logger.js';
import { durableTable } from '../src/streams/names.js';
import { createTestDatabase } from './helpers/database.js';
import { runCli } from './helpers/cli.js';

const db = await createTestDatabase('bench_scale');

const EVENTS = 20_000;
const BUCKET = 5_000;

describe('sluice bench --scale', () => {
  it('pushes every event through to the durable table once and reports each bucket, the partitions timings and a chart', async () => {
    const chart = path.join(os.tmpdir(), `sluice-bench-scale-test-${process.pid}.svg`);
    // --json: the record on stdout, as one JSON document (every command's --json); no tables.
    const run = await runCli(['bench', '--scale', '--scale-events', String(EVENTS), '--scale-bucket', String(BUCKET), '--chart', chart, '--no-progress', '--json'], {
      env: { DATABASE_URL: db.url },
      timeoutMs: 300_000,
    });
    expect(run.stderr).not.toMatch(/count check failed/);
    expect(run.code, run.stderr).toBe(0);
    const report = JSON.parse(run.stdout) as ScaleReport;
    expect(run.stdout.trim().split('\n')).toHaveLength(1);
    // The tables a run without --json prints, from the same record.
    const tables = renderScaleMarkdown(report);
    expect(tables).toMatch(/\| events \| durable events\/s \| lag p50 ms \| lag p99 ms \|/);
    expect(tables).toMatch(/\| target \| measured \| goal \| met \|/);

    // Exactly once: as many durable rows and distinct event_ids as distinct events pushed, staging empty.
    const t = report.totals;
    expect(t.events).toBe(EVENTS);
    expect(t.unique_events).toBeLessThan(EVENTS); // the workload re-sends ~1%
    expect(t.unique_events).toBeGreaterThan(EVENTS * 0.97);
    expect(t.durable_rows).toBe(t.unique_events);
    expect(t.durable_distinct_event_ids).toBe(t.unique_events);
    expect(t.staging_left).toBe(0);
    expect(t.bytes_per_event).toBeGreaterThan(0);
    expect(t.peak_connections).toBeLessThanOrEqual(t.budget as number);

    // One bucket per 5,000 events pushed, in order, their figures adding up.
    expect(report.buckets.map((b) => [b.bucket, b.events_from, b.events_to, b.events])).toEqual(
      [1, 2, 3, 4].map((n) => [n, (n - 1) * BUCKET, n * BUCKET, BUCKET]),
    );
    expect(report.buckets.reduce((n, b) => n + b.unique_events, 0)).toBe(t.unique_events);
    let rows = 0;
    let bytes = 0;
    let samples = 0;
    for (const b of report.buckets) {
      rows += b.unique_events;
      expect(b.durable_rows, `bucket ${b.bucket}`).toBe(rows);
      expect(b.durable_events_per_s).toBeGreaterThan(0);
      expect(b.table_bytes).toBeGreaterThanOrEqual(bytes);
      bytes = b.table_bytes;
      expect(b.bytes_per_event).toBeGreaterThan(0);
      expect(b.wal_bytes_per_event).toBeGreaterThan(0); // durable rows are logged
      expect(b.worker_rss_mb).toBeGreaterThan(0);
      expect(b.partitions).toBeGreaterThan(0);
      expect(b.autovacuum_count).toBeGreaterThanOrEqual(0);
      const lag = b.lag_ms;
      expect(lag, `bucket ${b.bucket} lag`).toBeDefined();
      expect(lag?.p50).toBeLessThanOrEqual(lag?.p99 as number);
      expect(lag?.p99).toBeLessThanOrEqual(lag?.max as number);
      samples += lag?.samples ?? 0;
    }
    expect(samples).toBe(Math.floor(t.unique_events as number / 100)); // one new event in 100, each found durable

    expect(report.targets.map((x) => x.id)).toEqual(['scale_throughput', 'scale_rss_flat', 'scale_lag_p99']);
    for (const x of report.targets) expect(typeof x.met, x.id).toBe('boolean');

    // 1,000 partitions made, listed and looked at by the health report.
    const many = report.many_partitions;
    expect(many.partitions).toBeGreaterThanOrEqual(1_000);
    expect(many.partitions_list.listed).toBe(many.partitions);
    expect(many.oldest).toMatch(/^bench_scale_many_p19\d{4}$/);
    expect(many.health.runs_ms).toHaveLength(3);
    expect(many.health.findings).toBeGreaterThan(0);
    expect(many.cli_ms.health).toBeGreaterThan(0);
    expect(many.cli_ms.partitions_list).toBeGreaterThan(0);

    // The chart: an SVG with a point per bucket for throughput and two (p50, p99) for lag.
    const svg = await readFile(chart, 'utf8');
    await rm(chart, { force: true });
    expect(report.chart).toBe(chart);
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg.trimEnd().endsWith('</svg>')).toBe(true);
    expect(svg.match(/aria-roledescription="point"/g)).toHaveLength(3 * report.buckets.length);
    expect(svg).toContain('durable events/s');

    // Nothing left behind: neither stream, nor any of the thousand tables.
    expect((await db.query(`SELECT name FROM sluice.streams WHERE name LIKE 'bench_%'`)).rows).toEqual([]);
    expect((await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM pg_class WHERE relname LIKE 'bench_scale%'`)).rows[0]?.n).toBe(0);
  }, 300_000);

  it('with --scale-duration, pushes until the time is up, ends on a short bucket and still checks every event', async () => {
    const run = await runCli(
      ['bench', '--scale', '--scale-duration', '3', '--scale-bucket', String(BUCKET), '--scale-partitions', '12', '--no-chart', '--no-progress', '--json'],
      { env: { DATABASE_URL: db.url }, timeoutMs: 180_000 },
    );
    expect(run.code, run.stderr).toBe(0);
    const report = JSON.parse(run.stdout) as ScaleReport;
    expect(report.options).toMatchObject({ duration_s: 3, bucket: BUCKET });
    expect(report.chart).toBeUndefined();
    const t = report.totals;
    expect(t.events).toBeGreaterThan(0);
    expect((t.events as number) % 1_000).toBe(0); // it stops between pushes, on a thousand
    expect(report.buckets.reduce((n, b) => n + b.events, 0)).toBe(t.events);
    expect(report.buckets.slice(0, -1).every((b) => b.events === BUCKET)).toBe(true);
    expect(report.buckets.at(-1)?.events_to).toBe(t.events);
    expect(t.durable_rows).toBe(t.unique_events);
    expect(t.durable_distinct_event_ids).toBe(t.unique_events);
    expect(report.many_partitions.partitions).toBeGreaterThanOrEqual(12);
    expect(report.many_partitions.partitions).toBeLessThan(20);
  }, 180_000);

  it('finds lag samples by key, per bucket, and refuses a sample that never became durable', async () => {
    const ctx = new BenchContext(db.url, silentLogger);
    try {
      const stream = await ctx.freshStream('lagtest');
      const at = new Date().toISOString();
      const ids = ['00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-000000000002', '00000000-0000-4000-8000-000000000003'];
      await db.query(
        `INSERT INTO sluice_data.bench_lagtest (event_id, occurred_at, received_at, drained_at)
         SELECT id::uuid, $2::timestamptz, $2::timestamptz, $2::timestamptz + make_interval(secs => n) FROM unnest($1::text[]) WITH ORDINALITY AS u(id, n)`,
        [ids, at],
      );
      const pushed = Date.parse(at);
      const samples = ids.map((eventId, i) => ({ bucket: i === 0 ? 0 : 1, pushedAtMs: pushed, eventId, occurredAt: at }));
      expect(await lagOfSamples(ctx, durableTable(stream.name), samples, 3)).toEqual([
        { p50: 1000, p99: 1000, max: 1000, samples: 1 },
        { p50: 2000, p99: 3000, max: 3000, samples: 2 },
        undefined,
      ]);
      // A sample whose row is missing (lost, or never drained) fails the run instead of shrinking the sample.
      const lost = { bucket: 0, pushedAtMs: pushed, eventId: '00000000-0000-4000-8000-000000000009', occurredAt: at };
      await expect(lagOfSamples(ctx, durableTable(stream.name), [...samples, lost], 3)).rejects.toThrow(/1 sampled events not found durable/);
      await ctx.dropStream(stream.name);
    } finally {
      await ctx.close();
    }
  });

  it('refuses a bucket larger than the run before touching the database', async () => {
    const run = await runCli(['bench', '--scale', '--scale-events', '2000', '--scale-bucket', '5000', '--no-progress'], { env: { DATABASE_URL: db.url }, timeoutMs: 60_000 });
    expect(run.code).not.toBe(0);
    expect(run.stderr).toMatch(/--scale-bucket must not exceed --scale-events/);
    expect((await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM sluice.streams WHERE name LIKE 'bench_%'`)).rows[0]?.n).toBe(0);
  }, 60_000);
});
