/** The shape every benchmark scenario reports. */
import type { BenchContext, Workload } from './bench-context.js';

export type ScenarioGroup = 'limit' | 'alternative' | 'sluice';

export interface ScenarioResult {
  readonly id: string;
  readonly title: string;
  readonly group: ScenarioGroup;
  /** Rows (or jobs) the measured interval processed. */
  readonly rows: number;
  readonly seconds: number;
  readonly rowsPerSecond: number;
  /** What the count check expected and found afterwards; a mismatch fails the run. */
  readonly verified: { readonly expected: number; readonly actual: number; readonly what: string };
  /** Exact options used, for the JSON record. */
  readonly options: Record<string, unknown>;
  readonly peakConnections?: number;
  readonly budget?: number;
  readonly workerPeakRssMb?: number;
  readonly lagMs?: { readonly p50: number; readonly p99: number; readonly max: number };
  readonly notes?: string;
  /** rows/s of every round, in order, when the scenario ran in every round (the median round is reported). */
  readonly runs?: readonly number[];
}

export interface BenchSizes {
  /** Events for fast paths (COPY, Ingestor, drains, end to end): the whole workload. */
  readonly events: number;
  /** Events for row-at-a-time INSERTs (a tenth). */
  readonly slowEvents: number;
  /** Jobs for the one-event-per-job comparisons (a fortieth). */
  readonly jobEvents: number;
  /** Jobs for graphile-worker job-per-event, bound by commit (fsync) latency (a hundredth). */
  readonly fsyncBoundJobs: number;
}

export interface ScenarioInput {
  readonly ctx: BenchContext;
  readonly workload: Workload;
  /** Prefixes of the workload for the slower paths (see BenchSizes). */
  readonly slowWorkload: Workload;
  readonly jobWorkload: Workload;
  readonly fsyncBoundWorkload: Workload;
  readonly sizes: BenchSizes;
  /** Results so far (later scenarios pace themselves from earlier ones). */
  readonly results: ReadonlyMap<string, ScenarioResult>;
}

export interface Scenario {
  readonly id: string;
  readonly title: string;
  readonly group: ScenarioGroup;
  /**
   * Runs in every round (limit, sluice, limit, sluice …), because a target is
   * judged on the median of its per-round ratios: this VM's disk latency
   * varies run to run by ±30%, and a limit and its sluice path measured side
   * by side see the same weather. Otherwise: the first round only.
   */
  readonly everyRound?: boolean;
  run(input: ScenarioInput): Promise<ScenarioResult>;
}

/** A scenario's result from its measured interval; id, title and group come from the scenario. */
export function result(
  scenario: Pick<Scenario, 'id' | 'title' | 'group'>,
  fields: Omit<ScenarioResult, 'id' | 'title' | 'group' | 'rowsPerSecond' | 'seconds'> & { readonly ms: number },
): ScenarioResult {
  const { ms, ...rest } = fields;
  return { id: scenario.id, title: scenario.title, group: scenario.group, ...rest, seconds: ms / 1000, rowsPerSecond: ms > 0 ? (fields.rows * 1000) / ms : 0 };
}

export function verify(expected: number, actual: number, what: string): ScenarioResult['verified'] {
  return { expected, actual, what };
}

/** The same scenario, run in every round (its ratios feed a target). */
export function everyRound(scenario: Scenario): Scenario {
  return { id: scenario.id, title: scenario.title, group: scenario.group, everyRound: true, run: (input) => scenario.run.call(scenario, input) };
}

/** The median of some numbers (the mean of the middle two for an even count). */
export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}
