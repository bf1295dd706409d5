/**
 * The numbers `sluice status` shows per stream: staged rows and the age of
 * the oldest one (drain lag), durable rows in the last minute, rejects; and
 * the live workers.
 */
import { stagingLosses, type StagingLosses } from '../db/crash-sentinel.js';
import type pg from 'pg';
import { durableTable, stagingTable } from '../streams/names.js';
import { listStreams, type Queryable } from '../streams/registry.js';
import { latestReport } from '../health/store.js';
import type { Finding, Severity } from '../health/finding.js';
import { ESTIMATED_ROWS_SQL } from '../partitions/catalog.js';

export interface StreamStatus {
  readonly stream: string;
  readonly staged: number;
  /** Seconds since the oldest staged row was received (0 when staging is empty). */
  readonly oldestStagedAgeS: number;
  readonly durableLastMinute: number;
  readonly duplicatesLastMinute: number;
  /** Estimated durable rows (pg_class.reltuples over partitions, empty never-analysed ones as 0; -1 when a partition with pages was never analysed). */
  readonly durableEstimate: number;
  readonly partitions: number;
  readonly rejectsLastHour: number;
  readonly rejectsLastDay: number;
  readonly rejectsTotal: number;
  /** received_at of the stream's oldest reject still kept (ISO), or null. */
  readonly oldestRejectAt: string | null;
}

/** All of sluice.rejects, including rejects of streams dropped since (rejects outlive their stream until pruned). */
export interface RejectsSummary {
  readonly total: number;
  readonly lastDay: number;
  readonly oldestAt: string | null;
}

export interface WorkerStatus {
  readonly id: string;
  readonly host: string;
  readonly pid: number;
  readonly version: string;
  readonly budget: number;
  readonly plan: { pool: number; flushers: number; drainers: number; total: number };
  readonly connections: number;
  readonly heartbeatAgeS: number;
  /** The worker's own heartbeat interval (null: registered by a version that did not record it). */
  readonly heartbeatMs: number | null;
  /** How long after its last heartbeat this worker counts as dead: its own window, else the observer's. */
  readonly staleAfterMs: number;
  readonly live: boolean;
}

/** The latest stored health report (task sluice_health_check): overall status and its worst findings. */
export interface HealthSummary {
  readonly takenAt: string;
  readonly status: Severity;
  readonly worst: Finding[];
}

export interface StatusReport {
  readonly takenAt: string;
  readonly streams: StreamStatus[];
  readonly rejects: RejectsSummary;
  readonly workers: WorkerStatus[];
  /** Crash recoveries that emptied UNLOGGED staging (staged-acked events lost there). */
  readonly stagingLosses: StagingLosses;
  /** null: no report stored yet (no worker has run the health task). */
  readonly health: HealthSummary | null;
}

const DRAIN_LAST_MINUTE = `
SELECT coalesce(sum(inserted), 0)::bigint AS inserted, coalesce(sum(moved - inserted), 0)::bigint AS duplicates
  FROM sluice.drain_stats
 WHERE stream = $1 AND bucket > now() - interval '60 seconds'`;

// Empty premade partitions are never analysed (reltuples -1 on PG14+): they count as 0 rows,
// so only a partition holding pages that was never analysed makes the estimate unknown.
const DURABLE_ESTIMATE = `
SELECT count(*)::int AS partitions, coalesce(sum(greatest(p.rows, 0)), 0)::bigint AS estimate,
       bool_or(p.rows < 0) AS unanalysed
  FROM (SELECT ${ESTIMATED_ROWS_SQL} AS rows
          FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = to_regclass($1)) p`;

const REJECT_COUNTS = `
SELECT count(*) FILTER (WHERE received_at > now() - interval '1 hour')::bigint AS last_hour,
       count(*) FILTER (WHERE received_at > now() - interval '24 hours')::bigint AS last_day,
       count(*)::bigint AS total, min(received_at) AS oldest
  FROM sluice.rejects WHERE stream = $1`;

const ALL_REJECTS = `
SELECT count(*) FILTER (WHERE received_at > now() - interval '24 hours')::bigint AS last_day,
       count(*)::bigint AS total, min(received_at) AS oldest
  FROM sluice.rejects`;

interface RejectCountRow {
  last_day: string;
  total: string;
  oldest: Date | null;
}

// Liveness by each row's own stale window ($1, the observer's, only for rows without one).
const WORKERS = `
SELECT w.id, w.host, w.pid, w.version, w.budget, w.plan, w.heartbeat_ms,
       coalesce(w.stale_after_ms, $1::int) AS stale_after_ms,
       sluice.worker_is_live(w.id, w.heartbeat_at, w.stale_after_ms, $1::int) AS live,
       extract(epoch FROM now() - w.heartbeat_at)::float8 AS heartbeat_age_s,
       (SELECT count(*)::int FROM pg_stat_activity a WHERE a.datname = current_database() AND starts_with(a.application_name, 'sluice/' || w.id || '/')) AS connections
  FROM sluice.workers w
 ORDER BY w.started_at`;

export async function streamStatus(db: Queryable, name: string): Promise<StreamStatus> {
  const staged = await db.query<{ staged: string; age_s: number | null }>(
    `SELECT count(*)::bigint AS staged, extract(epoch FROM now() - min(received_at))::float8 AS age_s FROM ${stagingTable(name)}`,
  );
  const drained = await db.query<{ inserted: string; duplicates: string }>(DRAIN_LAST_MINUTE, [name]);
  const durable = await db.query<{ partitions: number; estimate: string; unanalysed: boolean | null }>(DURABLE_ESTIMATE, [durableTable(name)]);
  const rejects = await db.query<RejectCountRow & { last_hour: string }>(REJECT_COUNTS, [name]);
  return {
    stream: name,
    staged: Number(staged.rows[0]?.staged ?? 0),
    oldestStagedAgeS: Math.max(0, staged.rows[0]?.age_s ?? 0),
    durableLastMinute: Number(drained.rows[0]?.inserted ?? 0),
    duplicatesLastMinute: Number(drained.rows[0]?.duplicates ?? 0),
    durableEstimate: durable.rows[0]?.unanalysed ? -1 : Number(durable.rows[0]?.estimate ?? 0),
    partitions: durable.rows[0]?.partitions ?? 0,
    rejectsLastHour: Number(rejects.rows[0]?.last_hour ?? 0),
    rejectsLastDay: Number(rejects.rows[0]?.last_day ?? 0),
    rejectsTotal: Number(rejects.rows[0]?.total ?? 0),
    oldestRejectAt: rejects.rows[0]?.oldest?.toISOString() ?? null,
  };
}

export async function rejectsSummary(db: Queryable): Promise<RejectsSummary> {
  const { rows } = await db.query<RejectCountRow>(ALL_REJECTS);
  return { total: Number(rows[0]?.total ?? 0), lastDay: Number(rows[0]?.last_day ?? 0), oldestAt: rows[0]?.oldest?.toISOString() ?? null };
}

/** Every registration, each judged live or dead by its own stale window (`staleAfterMs`: for rows that recorded none). */
export async function workerStatuses(db: Queryable, staleAfterMs: number): Promise<WorkerStatus[]> {
  const { rows } = await db.query<{
    id: string;
    host: string;
    pid: number;
    version: string;
    budget: number;
    plan: WorkerStatus['plan'];
    heartbeat_ms: number | null;
    stale_after_ms: number;
    live: boolean;
    heartbeat_age_s: number;
    connections: number;
  }>(WORKERS, [staleAfterMs]);
  return rows.map((r) => ({
    id: r.id,
    host: r.host,
    pid: r.pid,
    version: r.version,
    budget: r.budget,
    plan: r.plan,
    connections: r.connections,
    heartbeatAgeS: r.heartbeat_age_s,
    heartbeatMs: r.heartbeat_ms,
    staleAfterMs: r.stale_after_ms,
    live: r.live,
  }));
}

export async function statusReport(db: pg.Pool | pg.ClientBase, staleAfterMs: number): Promise<StatusReport> {
  const streams = await listStreams(db);
  const statuses: StreamStatus[] = [];
  for (const s of streams) statuses.push(await streamStatus(db, s.name));
  return {
    takenAt: new Date().toISOString(),
    streams: statuses,
    rejects: await rejectsSummary(db),
    workers: await workerStatuses(db, staleAfterMs),
    stagingLosses: await stagingLosses(db),
    health: await healthSummary(db),
  };
}

const WORST_SHOWN = 5;

export async function healthSummary(db: Queryable): Promise<HealthSummary | null> {
  const latest = await latestReport(db);
  if (!latest) return null;
  return { takenAt: latest.takenAt, status: latest.status, worst: latest.findings.filter((f) => f.severity !== 'ok').slice(0, WORST_SHOWN) };
}
