/** What every health check returns: findings a DBA can act on. */

export type Severity = 'ok' | 'warn' | 'critical';

export const SEVERITY_RANK: Readonly<Record<Severity, number>> = { ok: 0, warn: 1, critical: 2 };

export interface Finding {
  /** Check family and item, e.g. `dead_tuples`, `xmin_horizon.prepared_xact`. */
  readonly check: string;
  /** What it is about: `database d`, `table s.t`, `toast of s.t`, `session pid 42`, `worker w`, `stream s`, `slot s`. */
  readonly target: string;
  readonly severity: Severity;
  /** The measured value (a number where it is one). */
  readonly value: number | string | null;
  /** The threshold the value was judged against (the warn one, or the one crossed). */
  readonly threshold: number | string | null;
  readonly message: string;
  /** What to run or look at. */
  readonly advice: string;
}

export function worst(severities: Iterable<Severity>): Severity {
  let w: Severity = 'ok';
  for (const s of severities) if (SEVERITY_RANK[s] > SEVERITY_RANK[w]) w = s;
  return w;
}

/** Severity of `value` against ascending warn/critical thresholds (>= crosses). */
export function grade(value: number, warn: number, critical: number): Severity {
  if (value >= critical) return 'critical';
  if (value >= warn) return 'warn';
  return 'ok';
}

export function bySeverity(a: Finding, b: Finding): number {
  return SEVERITY_RANK[b.severity] - SEVERITY_RANK[a.severity] || a.check.localeCompare(b.check) || a.target.localeCompare(b.target);
}

/** Human durations and counts for messages (short names: every finding's message uses them). */
export { formatDuration as duration, formatInt as count } from '../format.js';
