/**
 * Crash detection for UNLOGGED staging (issue 17, defect 6). Crash recovery
 * empties every unlogged table, staging included: events acknowledged as
 * `staged` and not yet drained are gone, as the contract allows, but never
 * silently. sluice.check_crash_sentinel (migration 00011) arms an unlogged
 * sentinel row with a logged twin; finding the sentinel gone while the twin
 * says it was armed records a row in sluice.staging_losses.
 */
import type pg from 'pg';
import { formatInt } from '../format.js';

const CHECK = `SELECT sluice.check_crash_sentinel($1) AS emptied`;
// The last loss's estimate (migration 00017): what staging held at the last look before that crash.
const LOSSES = `
SELECT count(*)::int AS count, count(*) FILTER (WHERE detected_at > now() - interval '1 day')::int AS last_day,
       max(detected_at) AS last_detected_at, max(server_started_at) AS last_server_started_at,
       (SELECT staged_estimate::float8 FROM sluice.staging_losses ORDER BY id DESC LIMIT 1) AS last_staged_estimate,
       (SELECT estimate_observed_at FROM sluice.staging_losses ORDER BY id DESC LIMIT 1) AS last_estimate_observed_at
  FROM sluice.staging_losses`;

/** True when staging was emptied by a crash since the sentinel was last armed (and the loss is now recorded). */
export async function checkCrashSentinel(db: pg.Pool | pg.ClientBase, observer: string): Promise<boolean> {
  const { rows } = await db.query<{ emptied: boolean }>(CHECK, [observer]);
  return rows[0]?.emptied === true;
}

export interface StagingLosses {
  readonly count: number;
  /** Losses detected in the last 24 h. */
  readonly lastDay: number;
  readonly lastDetectedAt: Date | null;
  readonly lastServerStartedAt: Date | null;
  /** About how many staged rows the last crash took: staging's rows at the last look before it (null: never looked). */
  readonly lastStagedEstimate: number | null;
  readonly lastEstimateObservedAt: Date | null;
}

export async function stagingLosses(db: pg.Pool | pg.ClientBase): Promise<StagingLosses> {
  const { rows } = await db.query<{
    count: number;
    last_day: number;
    last_detected_at: Date | null;
    last_server_started_at: Date | null;
    last_staged_estimate: number | null;
    last_estimate_observed_at: Date | null;
  }>(LOSSES);
  const row = rows[0];
  return {
    count: row?.count ?? 0,
    lastDay: row?.last_day ?? 0,
    lastDetectedAt: row?.last_detected_at ?? null,
    lastServerStartedAt: row?.last_server_started_at ?? null,
    lastStagedEstimate: row?.last_staged_estimate ?? null,
    lastEstimateObservedAt: row?.last_estimate_observed_at ?? null,
  };
}

/** "about N staged rows (at the last look, 12:00:05Z)", or '' when the last loss has no estimate. */
export function lossEstimateText(l: StagingLosses): string {
  if (l.lastStagedEstimate === null) return '';
  return `about ${formatInt(l.lastStagedEstimate)} staged row(s) by the last look before it (${l.lastEstimateObservedAt?.toISOString()})`;
}
