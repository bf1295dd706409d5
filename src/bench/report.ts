/** The benchmark's outputs: a markdown table with ratios, the targets, and the JSON record. */
import os from 'node:os';
import type pg from 'pg';
import { formatInt } from '../format.js';
import type { ScenarioResult } from './scenario.js';
import { bestDrain, combinedLimit, type TargetCheck } from './targets.js';

export interface MachineInfo {
  readonly cores: number;
  readonly cpu: string;
  readonly memoryGb: number;
  readonly node: string;
  readonly platform: string;
}

export interface PostgresInfo {
  readonly version: string;
  readonly settings: Record<string, string>;
}

export interface BenchReport {
  readonly startedAt: string;
  readonly durationS: number;
  readonly machine: MachineInfo;
  readonly postgres: PostgresInfo;
  readonly options: Record<string, unknown>;
  readonly scenarios: ScenarioResult[];
  readonly targets: TargetCheck[];
}

const SETTINGS = [
  'shared_buffers', 'synchronous_commit', 'fsync', 'wal_level', 'wal_compression', 'full_page_writes', 'max_wal_size',
  'checkpoint_timeout', 'work_mem', 'maintenance_work_mem', 'max_connections', 'autovacuum', 'effective_io_concurrency', 'io_method', 'jit',
];

export async function postgresInfo(db: pg.Pool): Promise<PostgresInfo> {
  const version = (await db.query<{ v: string }>('SELECT version() AS v')).rows[0]?.v ?? 'unknown';
  const { rows } = await db.query<{ name: string; setting: string; unit: string | null }>(
    `SELECT name, setting, unit FROM pg_settings WHERE name = ANY($1)`,
    [SETTINGS],
  );
  return { version, settings: Object.fromEntries(rows.map((r) => [r.name, r.unit ? `${r.setting} ${r.unit}` : r.setting])) };
}

export function machineInfo(): MachineInfo {
  return {
    cores: os.cpus().length,
    cpu: os.cpus()[0]?.model ?? 'unknown',
    memoryGb: Math.round(os.totalmem() / 2 ** 30),
    node: process.version,
    platform: `${os.platform()} ${os.release()}`,
  };
}

const fmt = formatInt;
const x = (n: number | undefined) => (n === undefined || !Number.isFinite(n) ? '—' : `${n.toFixed(2)}×`);

/** The limit a sluice figure is compared with. */
function limitFor(r: ScenarioResult, results: ReadonlyMap<string, ScenarioResult>): number | undefined {
  if (r.group !== 'sluice') return undefined;
  if (r.id === 'sluice_drain_1') return results.get('limit_one_shot_ordered')?.rowsPerSecond;
  if (r.id === 'sluice_drain_2') return results.get('limit_one_shot_2conn')?.rowsPerSecond;
  if (r.id.startsWith('sluice_drain')) return results.get('limit_one_shot_insert_select')?.rowsPerSecond;
  if (r.id.startsWith('sluice_e2e')) return combinedLimit(results);
  return results.get('limit_raw_copy')?.rowsPerSecond;
}

function bestAlternative(results: ReadonlyMap<string, ScenarioResult>): ScenarioResult | undefined {
  return [...results.values()]
    .filter((r) => r.group === 'alternative' && r.id !== 'alt_gw_noop_sluice_settings')
    .sort((a, b) => b.rowsPerSecond - a.rowsPerSecond)[0];
}

export function renderMarkdown(report: BenchReport): string {
  const results = new Map(report.scenarios.map((r) => [r.id, r]));
  const best = bestAlternative(results);
  const lines = [
    '| scenario | rows | s | rows/s | × its limit | × best alternative | notes |',
    '|---|---:|---:|---:|---:|---:|---|',
  ];
  for (const r of report.scenarios) {
    const notes: string[] = [];
    if (r.peakConnections !== undefined) notes.push(`peak conn ${r.peakConnections}/${r.budget}`);
    if (r.lagMs) notes.push(`lag p50 ${fmt(r.lagMs.p50)} ms, p99 ${fmt(r.lagMs.p99)} ms, max ${fmt(r.lagMs.max)} ms`);
    if (r.workerPeakRssMb !== undefined) notes.push(`worker RSS ${fmt(r.workerPeakRssMb)} MB`);
    if (r.runs) notes.push(`median of ${r.runs.length} rounds: ${r.runs.map(fmt).join(' / ')} rows/s`);
    if (r.group === 'alternative' && r.id !== 'alt_gw_noop_sluice_settings' && r === best) notes.push('best alternative');
    const limit = limitFor(r, results);
    lines.push(
      `| ${r.title} | ${fmt(r.rows)} | ${r.seconds.toFixed(2)} | ${fmt(r.rowsPerSecond)} | ${r.group === 'sluice' ? x(limit ? r.rowsPerSecond / limit : undefined) : ''} | ${r.group === 'sluice' ? x(best ? r.rowsPerSecond / best.rowsPerSecond : undefined) : ''} | ${notes.join('; ')} |`,
    );
  }
  const combined = combinedLimit(results);
  const drain = bestDrain(results);
  const footer = [
    '',
    `Limits: ingest → raw COPY; drain ×1 → key-ordered one-shot INSERT … SELECT; drain ×2 → the same on two connections; end to end → combined limit 1/(1/COPY + 1/INSERT…SELECT) = ${combined ? fmt(combined) : '—'} rows/s.` +
      ` Best alternative: ${best ? `${best.title} (${fmt(best.rowsPerSecond)} rows/s)` : '—'}. Best drain: ${drain?.id ?? '—'}.`,
    '',
    `Targets: the median of the per-round figures (${report.targets[0]?.rounds?.length ?? 1} interleaved rounds), min–max beside it.`,
    '',
    '| target | median | min–max | goal | met |',
    '|---|---:|---:|---:|:---:|',
    ...report.targets.map((t) => {
      const figure = (n: number) => (t.unit === '×' || t.unit === '× budget' ? n.toFixed(2) : fmt(n));
      const range = t.min !== undefined && t.max !== undefined ? `${figure(t.min)}–${figure(t.max)}` : '—';
      return `| ${t.description} | ${t.measured === undefined ? '—' : `${figure(t.measured)} ${t.unit}`} | ${range} | ${t.comparator} ${t.threshold} ${t.unit}${t.defaultThreshold === undefined ? '' : ` (--target; default ${t.defaultThreshold})`} | ${t.met === undefined ? 'not run' : t.met ? 'met' : 'NOT MET'} |`;
    }),
  ];
  return [...lines, ...footer].join('\n');
}
