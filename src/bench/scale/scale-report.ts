/**
 * The scale run's record (snake_case JSON), its three targets, judged met /
 * not met and never asserted in tests, and its markdown table.
 */
import type { PostgresInfo } from '../report.js';
import { isMet, type TargetCheck } from '../targets.js';
import type { LagFigures } from './lag-samples.js';
import type { ManyPartitionsResult } from './many-partitions.js';
import { formatInt } from '../../format.js';

export interface ScaleBucket {
  /** 1-based. */
  readonly bucket: number;
  /** Pushed events [events_from, events_to). */
  readonly events_from: number;
  readonly events_to: number;
  readonly events: number;
  /** First occurrences among them: the rows this bucket adds to the durable table. */
  readonly unique_events: number;
  readonly seconds: number;
  readonly durable_events_per_s: number;
  readonly lag_ms: LagFigures | undefined;
  readonly worker_rss_mb: number | null;
  readonly bench_rss_mb: number | null;
  readonly durable_rows: number;
  readonly table_bytes: number;
  readonly bytes_per_event: number;
  /** WAL of the whole cluster during the bucket ÷ its distinct events. */
  readonly wal_bytes_per_event: number;
  readonly autovacuum_count: number;
  readonly autoanalyze_count: number;
  readonly n_dead_tup: number;
  readonly n_live_tup: number;
  readonly partitions: number;
}

export interface ScaleReport {
  readonly kind: 'scale';
  readonly started_at: string;
  readonly duration_s: number;
  readonly machine: { cores: number; cpu: string; memory_gb: number; node: string; platform: string };
  readonly postgres: PostgresInfo;
  readonly options: Record<string, unknown>;
  /** How each figure is measured. */
  readonly measured: Record<string, string>;
  readonly buckets: ScaleBucket[];
  readonly totals: Record<string, number | null>;
  readonly many_partitions: ManyPartitionsResult;
  readonly targets: TargetCheck[];
  /** Where the chart was written, when it was. */
  chart?: string;
}

function target(id: string, description: string, measured: number | undefined, comparator: TargetCheck['comparator'], threshold: number, unit: string, detail: string): TargetCheck {
  return { id, description, measured, comparator, threshold, unit, met: isMet(measured, comparator, threshold), detail };
}

/**
 * Throughput and RSS compare the first full bucket with the last full one (a
 * short last bucket, from --scale-duration, is left out of those two); lag
 * counts every bucket.
 */
export function scaleTargets(buckets: readonly ScaleBucket[], bucketSize: number): TargetCheck[] {
  const full = buckets.filter((b) => b.events === bucketSize);
  const first = full[0];
  const last = full.length > 1 ? full[full.length - 1] : undefined;
  const ratio = (a: number | null | undefined, b: number | null | undefined) => (a != null && b != null && b > 0 ? a / b : undefined);
  const p99s = buckets.map((b) => b.lag_ms?.p99).filter((v): v is number => v !== undefined);
  const worst = p99s.length ? Math.max(...p99s) : undefined;
  return [
    target('scale_throughput', "last bucket's durable throughput ≥ 0.8× the first's", ratio(last?.durable_events_per_s, first?.durable_events_per_s), '>=', 0.8, '×',
      last && first ? `bucket ${last.bucket} ${last.durable_events_per_s} ÷ bucket ${first.bucket} ${first.durable_events_per_s} events/s` : 'needs two full buckets'),
    target('scale_rss_flat', "worker RSS flat: last bucket's ≤ 1.2× the first's", ratio(last?.worker_rss_mb, first?.worker_rss_mb), '<=', 1.2, '×',
      last && first ? `bucket ${last.bucket} ${last.worker_rss_mb} MB ÷ bucket ${first.bucket} ${first.worker_rss_mb} MB (worker child process VmRSS)` : 'needs two full buckets'),
    target('scale_lag_p99', 'lag p99 (push → durable) never above 1 s', worst, '<=', 1000, 'ms', `worst bucket p99 of ${p99s.length} buckets`),
  ];
}

const fmt = (n: number | null | undefined) => (n == null || !Number.isFinite(n) ? '—' : formatInt(n));
const millions = (n: number) => (n >= 1e6 ? `${+(n / 1e6).toFixed(2)}M` : n.toLocaleString('en-US'));

export function renderScaleMarkdown(report: ScaleReport): string {
  const t = report.totals;
  const m = report.many_partitions;
  const lines = [
    '| events | durable events/s | lag p50 ms | lag p99 ms | lag max ms | worker RSS MB | bytes/event | WAL bytes/event | autovacuum | autoanalyze | dead tuples |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...report.buckets.map(
      (b) =>
        `| ${millions(b.events_from)}–${millions(b.events_to)} | ${fmt(b.durable_events_per_s)} | ${fmt(b.lag_ms?.p50)} | ${fmt(b.lag_ms?.p99)} | ${fmt(b.lag_ms?.max)} | ${fmt(b.worker_rss_mb)} | ${fmt(b.bytes_per_event)} | ${fmt(b.wal_bytes_per_event)} | ${b.autovacuum_count} | ${b.autoanalyze_count} | ${fmt(b.n_dead_tup)} |`,
    ),
    '',
    `Total: ${fmt(t.events)} events pushed (${fmt(t.unique_events)} distinct), ${fmt(t.durable_rows)} durable rows, ${fmt(t.durable_distinct_event_ids)} distinct event_ids (exactly once: ${t.durable_rows === t.unique_events && t.durable_distinct_event_ids === t.unique_events ? 'yes' : 'NO'}), ` +
      `${t.seconds} s, ${fmt(t.durable_events_per_s)} durable events/s overall, ${fmt(t.bytes_per_event)} bytes/event, ${fmt(t.wal_bytes_per_event)} WAL bytes/event, peak worker RSS ${fmt(t.worker_peak_rss_mb)} MB, peak connections ${t.peak_connections}/${t.budget}.`,
    `${m.partitions} partitions (back to ${m.oldest}, made in ${m.create_seconds} s): health ${m.health.median_ms} ms (runs ${m.health.runs_ms.join(' / ')} ms, ${m.health.status}${m.health.worst[0] ? `, worst: ${m.health.worst[0].check} on ${m.health.worst[0].target}` : ''}; ${m.health_before.median_ms} ms before they existed), partitions list ${m.partitions_list.median_ms} ms (runs ${m.partitions_list.runs_ms.join(' / ')} ms); as commands (with Node's start-up) \`sluice health\` ${m.cli_ms.health} ms, \`sluice partitions list --stream\` ${m.cli_ms.partitions_list} ms.`,
    '',
    '| target | measured | goal | met |',
    '|---|---:|---:|:---:|',
    ...report.targets.map(
      (x) => `| ${x.description} | ${x.measured === undefined ? '—' : `${x.unit === 'ms' ? fmt(x.measured) : x.measured.toFixed(2)} ${x.unit}`} | ${x.comparator} ${x.threshold} ${x.unit} | ${x.met === undefined ? 'not judged' : x.met ? 'met' : 'NOT MET'} |`,
    ),
  ];
  return lines.join('\n');
}
