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
}

export interface BenchSizes {
  /** Events for fast paths (COPY, Ingestor, drains, end to end). */
  readonly events: number;
  /** Events (= jobs) for paths that are slow by nature (row INSERTs, job-per-event). */
  readonly slowEvents: number;
}

export interface ScenarioInput {
  readonly ctx: BenchContext;
  readonly workload: Workload;
  /** A prefix of the workload for the slow paths. */
  readonly slowWorkload: Workload;
  readonly sizes: BenchSizes;
  /** Results so far (later scenarios pace themselves from earlier ones). */
  readonly results: ReadonlyMap<string, ScenarioResult>;
}

export interface Scenario {
  readonly id: string;
  readonly title: string;
  readonly group: ScenarioGroup;
  run(input: ScenarioInput): Promise<ScenarioResult>;
}

export function result(
  base: Omit<ScenarioResult, 'rowsPerSecond' | 'seconds'> & { readonly ms: number },
): ScenarioResult {
  const { ms, ...rest } = base;
  return { ...rest, seconds: ms / 1000, rowsPerSecond: ms > 0 ? (base.rows * 1000) / ms : 0 };
}

export function verify(expected: number, actual: number, what: string): ScenarioResult['verified'] {
  return { expected, actual, what };
}
