/**
 * Reading sluice.rejects for `sluice rejects list`: the rejects themselves
 * (newest first) or a summary per stream and reason. Filters are parameters;
 * an absent filter is NULL and matches everything.
 */
import type pg from 'pg';

export type RejectState = 'all' | 'pending' | 'replayed';

export interface RejectFilter {
  readonly streams?: readonly string[];
  readonly reasons?: readonly string[];
  /** Received at or after this instant (ISO text Postgres parses)... */
  readonly since?: string;
  /** ...or within this interval before now(), in seconds (measured by Postgres' clock). */
  readonly sinceSeconds?: number;
  readonly state?: RejectState;
}

/** One reject, as `rejects list --json` prints it (snake_case, as stored). */
export interface RejectRecord {
  readonly id: number;
  readonly stream: string;
  readonly received_at: string;
  readonly source: string;
  readonly reason: string;
  readonly message: string;
  readonly raw: string;
  readonly input_key: string | null;
  readonly replayed_at: string | null;
  readonly replayed_by: string | null;
  readonly replay_attempts: number;
  readonly last_replay_at: string | null;
  readonly first_reason: string | null;
}

export interface RejectSummaryRow {
  readonly stream: string;
  readonly reason: string;
  readonly total: number;
  readonly pending: number;
  readonly replayed: number;
  readonly oldest_received_at: string;
  readonly newest_received_at: string;
}

const FILTER = `
   ($1::text[] IS NULL OR stream = ANY($1::text[]))
   AND ($2::text[] IS NULL OR reason = ANY($2::text[]))
   AND ($3::timestamptz IS NULL OR received_at >= $3::timestamptz)
   AND ($4::float8 IS NULL OR received_at >= now() - make_interval(secs => $4::float8))
   AND ($5::text = 'all' OR ($5::text = 'pending') = (replayed_at IS NULL))`;

// Timestamps as ISO 8601 text in UTC, whatever the session's TimeZone: the same in JSON and in tables.
const iso = (column: string) => `to_char(${column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`;

const LIST_REJECTS = `
SELECT id::float8 AS id, stream, ${iso('received_at')} AS received_at, source, reason, message, raw, input_key,
       ${iso('replayed_at')} AS replayed_at, replayed_by, replay_attempts, ${iso('last_replay_at')} AS last_replay_at, first_reason
  FROM sluice.rejects r
 WHERE ${FILTER}
 ORDER BY r.id DESC
 LIMIT $6::int`;

const SUMMARIZE_REJECTS = `
SELECT stream, reason, count(*)::float8 AS total,
       count(*) FILTER (WHERE replayed_at IS NULL)::float8 AS pending,
       count(*) FILTER (WHERE replayed_at IS NOT NULL)::float8 AS replayed,
       ${iso('min(received_at)')} AS oldest_received_at, ${iso('max(received_at)')} AS newest_received_at
  FROM sluice.rejects
 WHERE ${FILTER}
 GROUP BY stream, reason
 ORDER BY stream, reason`;

function filterParams(filter: RejectFilter): unknown[] {
  return [
    filter.streams?.length ? filter.streams : null,
    filter.reasons?.length ? filter.reasons : null,
    filter.since ?? null,
    filter.sinceSeconds ?? null,
    filter.state ?? 'all',
  ];
}

export async function listRejects(db: pg.Pool | pg.ClientBase, filter: RejectFilter, limit: number): Promise<RejectRecord[]> {
  return (await db.query<RejectRecord>(LIST_REJECTS, [...filterParams(filter), limit])).rows;
}

export async function summarizeRejects(db: pg.Pool | pg.ClientBase, filter: RejectFilter): Promise<RejectSummaryRow[]> {
  return (await db.query<RejectSummaryRow>(SUMMARIZE_REJECTS, filterParams(filter))).rows;
}
