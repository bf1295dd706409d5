/**
 * The targets (issues #8 and #19), each computed from ratios measured in one
 * run and reported as met / not met (never asserted in tests: speed is shown,
 * not tested). evaluateTargets judges one round; combineRounds judges a target
 * on the median of its per-round figures and keeps the min–max beside it.
 */
import { median, type ScenarioResult } from './scenario.js';

export interface TargetCheck {
  readonly id: string;
  readonly description: string;
  readonly measured: number | undefined;
  readonly threshold: number;
  readonly comparator: '>=' | '<' | '<=';
  readonly unit: string;
  readonly met: boolean | undefined;
  readonly detail: string;
  /** The figure of every round (median → measured), and their range. */
  readonly rounds?: ReadonlyArray<number | undefined>;
  readonly min?: number;
  readonly max?: number;
  /** Set when `--target` replaced the threshold: the built-in goal. */
  readonly defaultThreshold?: number;
}

type Results = ReadonlyMap<string, ScenarioResult>;

const rate = (r: Results, id: string) => r.get(id)?.rowsPerSecond;

export function isMet(measured: number | undefined, comparator: TargetCheck['comparator'], threshold: number): boolean | undefined {
  if (measured === undefined || Number.isNaN(measured)) return undefined;
  return comparator === '>=' ? measured >= threshold : comparator === '<' ? measured < threshold : measured <= threshold;
}

function check(
  id: string,
  description: string,
  measured: number | undefined,
  comparator: TargetCheck['comparator'],
  threshold: number,
  unit: string,
  detail: string,
): TargetCheck {
  return { id, description, measured, comparator, threshold, unit, met: isMet(measured, comparator, threshold), detail };
}

/** One check per target from the checks of every round: the median figure decides, the range is kept. */
export function combineRounds(perRound: ReadonlyArray<readonly TargetCheck[]>): TargetCheck[] {
  const first = perRound[0] ?? [];
  return first.map((t, i) => {
    const rounds = perRound.map((checks) => checks[i]?.measured);
    const known = rounds.filter((v): v is number => v !== undefined && !Number.isNaN(v));
    const measured = known.length ? median(known) : undefined;
    return {
      ...t,
      measured,
      met: isMet(measured, t.comparator, t.threshold),
      rounds,
      ...(known.length ? { min: Math.min(...known), max: Math.max(...known) } : {}),
    };
  });
}

function ratio(a: number | undefined, b: number | undefined): number | undefined {
  return a !== undefined && b !== undefined && b > 0 ? a / b : undefined;
}

/** Combined limit: the rate if the box did nothing but COPY, then INSERT … SELECT. */
export function combinedLimit(results: Results): number | undefined {
  const copy = rate(results, 'limit_raw_copy');
  const oneShot = rate(results, 'limit_one_shot_insert_select');
  return copy && oneShot ? 1 / (1 / copy + 1 / oneShot) : undefined;
}

export function bestDrain(results: Results): ScenarioResult | undefined {
  const d1 = results.get('sluice_drain_1');
  const d2 = results.get('sluice_drain_2');
  if (!d1 || !d2) return d1 ?? d2;
  return d1.rowsPerSecond >= d2.rowsPerSecond ? d1 : d2;
}

export function evaluateTargets(results: Results): TargetCheck[] {
  const e2e = rate(results, 'sluice_e2e_budget16');
  const half = results.get('sluice_e2e_half_rate');
  const withBudget = [...results.values()].filter((r) => r.budget !== undefined && r.peakConnections !== undefined);
  const worstConnections = withBudget.reduce<ScenarioResult | undefined>(
    (worst, r) => (!worst || (r.peakConnections ?? 0) / (r.budget ?? 1) > (worst.peakConnections ?? 0) / (worst.budget ?? 1) ? r : worst),
    undefined,
  );
  const rss = [...results.values()].map((r) => r.workerPeakRssMb).filter((x): x is number => x !== undefined);
  return [
    check('ingest_vs_copy', 'sluice ingest (JSON in, parsed + validated) ≥ 0.80× raw COPY', ratio(rate(results, 'sluice_ingestor'), rate(results, 'limit_raw_copy')), '>=', 0.8, '×', 'sluice_ingestor / limit_raw_copy'),
    check('drain_1_vs_ordered_one_shot', 'sluice drain ×1 ≥ 0.90× key-ordered one-shot INSERT … SELECT', ratio(rate(results, 'sluice_drain_1'), rate(results, 'limit_one_shot_ordered')), '>=', 0.9, '×', 'sluice_drain_1 / limit_one_shot_ordered'),
    check('drain_2_vs_two_connection_one_shot', 'sluice drain ×2 ≥ 0.90× two-connection one-shot', ratio(rate(results, 'sluice_drain_2'), rate(results, 'limit_one_shot_2conn')), '>=', 0.9, '×', 'sluice_drain_2 / limit_one_shot_2conn'),
    check('e2e_vs_combined_limit', 'end-to-end durable ≥ 0.90× combined limit 1/(1/COPY + 1/INSERT…SELECT)', ratio(e2e, combinedLimit(results)), '>=', 0.9, '×', 'sluice_e2e_budget16 / combined limit'),
    check('e2e_vs_gw_job_per_event', 'end-to-end ≥ 10× graphile-worker job-per-event (best settings)', ratio(e2e, rate(results, 'alt_gw_job_per_event_best')), '>=', 10, '×', 'sluice_e2e_budget16 / alt_gw_job_per_event_best'),
    check('e2e_vs_pooled_insert', 'end-to-end ≥ 8× pooled row INSERT', ratio(e2e, rate(results, 'alt_pooled_row_insert')), '>=', 8, '×', 'sluice_e2e_budget16 / alt_pooled_row_insert'),
    check('add_job_1_vs_gw_noop', 'SQL add_job, 1 event/job ≥ 0.8× graphile-worker no-op jobs (same settings)', ratio(rate(results, 'sluice_add_job_1'), rate(results, 'alt_gw_noop_sluice_settings')), '>=', 0.8, '×', 'sluice_add_job_1 / alt_gw_noop_sluice_settings'),
    check('add_job_100_vs_ingestor', 'SQL add_job, 100 events/job ≥ 0.5× the Ingestor path', ratio(rate(results, 'sluice_add_job_100'), rate(results, 'sluice_ingestor')), '>=', 0.5, '×', 'sluice_add_job_100 / sluice_ingestor'),
    check('sql_ingest_100_vs_ingestor', 'SQL sluice.ingest(), 100 events/call ≥ 0.6× the Ingestor path', ratio(rate(results, 'sluice_sql_ingest_100x1'), rate(results, 'sluice_ingestor')), '>=', 0.6, '×', 'sluice_sql_ingest_100x1 / sluice_ingestor'),
    check('sql_ingest_1x8_vs_add_job', 'SQL sluice.ingest(), 1 event/call, 8 clients ≥ 1.5× graphile-worker add_job (same way)', ratio(rate(results, 'sluice_sql_ingest_1x8'), rate(results, 'alt_gw_add_job_1x8')), '>=', 1.5, '×', 'sluice_sql_ingest_1x8 / alt_gw_add_job_1x8'),
    check('lag_p50_half_rate', 'staged→durable lag p50 at 50% of max rate < 200 ms', half?.lagMs?.p50, '<', 200, 'ms', 'sluice_e2e_half_rate, drained_at − received_at'),
    check('lag_p99_half_rate', 'staged→durable lag p99 at 50% of max rate < 100 ms', half?.lagMs?.p99, '<', 100, 'ms', 'sluice_e2e_half_rate, drained_at − received_at'),
    check('peak_connections', 'peak connections ≤ declared budget in every scenario', worstConnections ? (worstConnections.peakConnections ?? 0) / (worstConnections.budget ?? 1) : undefined, '<=', 1, '× budget', worstConnections ? `worst: ${worstConnections.id} ${worstConnections.peakConnections}/${worstConnections.budget}` : 'no worker scenario ran'),
    check('budget_4_vs_16', 'throughput at budget 4 ≥ 0.8× at budget 16', ratio(rate(results, 'sluice_e2e_budget4'), e2e), '>=', 0.8, '×', 'sluice_e2e_budget4 / sluice_e2e_budget16'),
    check('worker_rss', 'worker RSS < 256 MB at max rate', rss.length ? Math.max(...rss) : undefined, '<', 256, 'MB', 'peak VmHWM of the worker processes'),
  ];
}

/** Every target's id, in report order (the checks of an empty run: nothing measured). */
export const TARGET_IDS: readonly string[] = evaluateTargets(new Map()).map((t) => t.id);

/**
 * The targets judged against other goals (`sluice bench --target id=value`, e.g. a
 * CI box that only promises half the ratio): the threshold is replaced, the
 * comparator kept, `met` recomputed, and the default kept beside it.
 */
export function withThresholds(targets: readonly TargetCheck[], goals: ReadonlyMap<string, number>): TargetCheck[] {
  return targets.map((t) => {
    const threshold = goals.get(t.id);
    if (threshold === undefined) return t;
    return { ...t, threshold, defaultThreshold: t.threshold, met: isMet(t.measured, t.comparator, threshold) };
  });
}

/** The targets `--check` fails on: measured and not met (a target whose scenarios did not run is not judged). */
export function unmetTargets(targets: readonly TargetCheck[]): TargetCheck[] {
  return targets.filter((t) => t.met === false);
}
