/** Stored reports: sluice.health_reports, pruned past the retention. */
import type { Queryable } from '../streams/registry.js';
import type { Finding, Severity } from './finding.js';
import type { HealthReport } from './report.js';

const INSERT_REPORT = `
INSERT INTO sluice.health_reports (taken_at, status, duration_ms, findings)
VALUES ($1, $2, $3, $4::jsonb) RETURNING id`;

// Oldest first, bounded per statement like the rejects prune, so a long backlog never holds one huge DELETE.
const PRUNE_REPORTS = `
DELETE FROM sluice.health_reports
 WHERE id IN (SELECT id FROM sluice.health_reports WHERE taken_at < now() - make_interval(days => $1::int)
               ORDER BY taken_at LIMIT 1000)`;

const LATEST_REPORT = `
SELECT taken_at, status, duration_ms, findings FROM sluice.health_reports ORDER BY taken_at DESC, id DESC LIMIT 1`;

export async function storeReport(db: Queryable, report: HealthReport): Promise<number> {
  const { rows } = await db.query<{ id: string }>(INSERT_REPORT, [report.takenAt, report.status, report.durationMs, JSON.stringify(report.findings)]);
  return Number(rows[0]?.id);
}

/** Deletes reports older than `retentionDays` (0 keeps all); returns how many. */
export async function pruneReports(db: Queryable, retentionDays: number): Promise<number> {
  if (retentionDays <= 0) return 0;
  let total = 0;
  for (;;) {
    const { rowCount } = await db.query(PRUNE_REPORTS, [retentionDays]);
    total += rowCount ?? 0;
    if ((rowCount ?? 0) < 1000) return total;
  }
}

export interface StoredReport {
  readonly takenAt: string;
  readonly status: Severity;
  readonly durationMs: number;
  readonly findings: Finding[];
}

export async function latestReport(db: Queryable): Promise<StoredReport | null> {
  const { rows } = await db.query<{ taken_at: Date; status: Severity; duration_ms: number; findings: Finding[] }>(LATEST_REPORT);
  const r = rows[0];
  return r ? { takenAt: r.taken_at.toISOString(), status: r.status, durationMs: r.duration_ms, findings: r.findings } : null;
}

/** What is stored: non-ok findings in full, ok ones too (they are already one summary per check where targets are many). */
export function summarise(report: HealthReport): { status: Severity; counts: HealthReport['counts']; worst: Array<Pick<Finding, 'check' | 'target' | 'severity' | 'message'>> } {
  return {
    status: report.status,
    counts: report.counts,
    worst: report.findings.filter((f) => f.severity !== 'ok').slice(0, 5).map(({ check, target, severity, message }) => ({ check, target, severity, message })),
  };
}
