/**
 * A health report: every check family run in turn on one connection, findings
 * sorted worst first. A check that fails (a missing privilege, a timeout) is a
 * finding of its own, so the rest of the report still arrives.
 */
import { coerceError, SQLSTATE, sqlState } from '../errors.js';
import type { Queryable } from '../streams/registry.js';
import { connectionsCheck } from './connections.js';
import type { CheckContext, HealthCheck } from './context.js';
import { deadTuplesCheck } from './dead-tuples.js';
import { bySeverity, worst, type Finding, type Severity } from './finding.js';
import { freezeCheck } from './freeze.js';
import { invalidIndexesCheck } from './invalid-indexes.js';
import { pipelineCheck } from './pipeline.js';
import { registriesCheck } from './registries.js';
import { readTableStats, type TableStats } from './table-stats.js';
import { loadThresholds } from './thresholds.js';
import { vacuumRecencyCheck } from './vacuum-recency.js';
import { xminHorizonCheck } from './xmin-horizon.js';

export const HEALTH_CHECKS: readonly HealthCheck[] = [
  deadTuplesCheck,
  vacuumRecencyCheck,
  freezeCheck,
  xminHorizonCheck,
  connectionsCheck,
  pipelineCheck,
  invalidIndexesCheck,
  registriesCheck,
];

export interface HealthReport {
  readonly takenAt: string;
  readonly status: Severity;
  readonly durationMs: number;
  readonly counts: Readonly<Record<Severity, number>>;
  /** Worst first. */
  readonly findings: Finding[];
}

/** Nagios-style exit code: 0 ok, 1 warn, 2 critical. */
export function exitCodeFor(status: Severity): 0 | 1 | 2 {
  return status === 'critical' ? 2 : status === 'warn' ? 1 : 0;
}

export async function runHealthChecks(db: Queryable, options: { staleAfterMs: number; clockOffsetMs?: number }): Promise<HealthReport> {
  const started = performance.now();
  const takenAt = new Date().toISOString();
  const { thresholds, unknown } = await loadThresholds(db);
  let tables: Promise<TableStats[]> | undefined;
  const ctx: CheckContext = {
    db,
    thresholds,
    staleAfterMs: options.staleAfterMs,
    now: () => Date.now() + (options.clockOffsetMs ?? 0),
    tables: () => (tables ??= readTableStats(db)),
  };
  const findings: Finding[] = unknown.map((name) => ({
    check: 'health.thresholds',
    target: 'sluice.health_thresholds',
    severity: 'warn',
    value: name,
    threshold: null,
    message: `unknown threshold name '${name}' in sluice.health_thresholds: it has no effect`,
    advice: `fix the name (docs/health.md lists them) or DELETE FROM sluice.health_thresholds WHERE name = '${name}'`,
  }));
  for (const check of HEALTH_CHECKS) {
    try {
      findings.push(...(await check.run(ctx)));
    } catch (err) {
      const code = sqlState(err);
      findings.push({
        check: check.name,
        target: 'health check',
        severity: 'warn',
        value: code ?? null,
        threshold: null,
        message: `the ${check.name} check failed: ${coerceError(err).message}${code ? ` (SQLSTATE ${code})` : ''}`,
        advice: code === SQLSTATE.INSUFFICIENT_PRIVILEGE ? 'grant the monitoring role what docs/health.md lists (pg_monitor, USAGE and SELECT on the sluice schemas)' : 'see the message; rerun sluice health',
      });
    }
  }
  findings.sort(bySeverity);
  const counts: Record<Severity, number> = { ok: 0, warn: 0, critical: 0 };
  for (const f of findings) counts[f.severity]++;
  return {
    takenAt,
    status: worst(findings.map((f) => f.severity)),
    durationMs: Math.round(performance.now() - started),
    counts,
    findings,
  };
}
