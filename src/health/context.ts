/** What every check family gets: a connection, the thresholds, and the shared table pass. */
import type { Queryable } from '../streams/registry.js';
import type { Finding } from './finding.js';
import type { TableStats } from './table-stats.js';
import type { Thresholds } from './thresholds.js';

export interface CheckContext {
  readonly db: Queryable;
  readonly thresholds: Thresholds;
  /** The observer's --stale-after-ms, for worker registrations that recorded no window of their own. */
  readonly staleAfterMs: number;
  /** The clock partition decisions use (the worker's, with --clock-offset-ms), in ms since the epoch. */
  now(): number;
  /** The table catalog pass, read once per report. */
  tables(): Promise<TableStats[]>;
}

export interface HealthCheck {
  /** Family name; a failing check is reported under it. */
  readonly name: string;
  run(ctx: CheckContext): Promise<Finding[]>;
}

/** One ok finding standing for every target of a check that is fine (reports stay small over 30 days). */
export function summaryFinding(check: string, target: string, message: string): Finding {
  return { check, target, severity: 'ok', value: null, threshold: null, message, advice: 'nothing to do' };
}
