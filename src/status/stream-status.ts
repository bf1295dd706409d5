/**
 * The numbers `sluice status` shows per stream: staged rows and the age of
 * the oldest one (drain lag), durable rows in the last minute, rejects; and
 * the live workers.
 */
import type pg from 'pg';
import { durableTable, stagingTable } from '../streams/names.js';
import { listStreams, type Queryable } from '../streams/registry.js';

export interface StreamStatus {
  readonly stream: string;
  readonly staged: number;
  /** Seconds since the oldest staged row was received (0 when staging is empty). */
  readonly oldestStagedAgeS: number;
  readonly durableLastMinute: number;
  readonly duplicatesLastMinute: number;
  /** Estimated durable rows (pg_class.reltuples over partitions; -1 when never analysed). */
  readonly durableEstimate: number;
  readonly partitions: number;
  readonly rejectsLastHour: number;
  readonly rejectsTotal: number;
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
  readonly live: boolean;
}

export interface StatusReport {
  readonly takenAt: string;
  readonly streams: StreamStatus[];
  readonly workers: WorkerStatus[];
}

const DRAIN_LAST_MINUTE = `
SELECT coalesce(sum(inserted), 0)::bigint AS inserted, coalesce(sum(moved - inserted), 0)::bigint AS duplicates
  FROM sluice.drain_stats
 WHERE stream = $1 AND bucket > now() - interval '60 seconds'`;

const DURABLE_ESTIMATE = `
SELECT count(*)::int AS partitions, coalesce(sum(greatest(c.reltuples, 0)), 0)::bigint AS estimate,
       bool_or(c.reltuples < 0) AS unanalysed
  FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
 WHERE i.inhparent = to_regclass($1)`;

const REJECT_COUNTS = `
SELECT count(*) FILTER (WHERE received_at > now() - interval '1 hour')::bigint AS last_hour, count(*)::bigint AS total
  FROM sluice.rejects WHERE stream = $1`;

const WORKERS = `
SELECT w.id, w.host, w.pid, w.version, w.budget, w.plan,
       extract(epoch FROM now() - w.heartbeat_at)::float8 AS heartbeat_age_s,
       (SELECT count(*)::int FROM pg_stat_activity a WHERE a.application_name LIKE 'sluice/' || w.id || '/%') AS connections
  FROM sluice.workers w
 ORDER BY w.started_at`;

export async function streamStatus(db: Queryable, name: string): Promise<StreamStatus> {
  const staged = await db.query<{ staged: string; age_s: number | null }>(
    `SELECT count(*)::bigint AS staged, extract(epoch FROM now() - min(received_at))::float8 AS age_s FROM ${stagingTable(name)}`,
  );
  const drained = await db.query<{ inserted: string; duplicates: string }>(DRAIN_LAST_MINUTE, [name]);
  const durable = await db.query<{ partitions: number; estimate: string; unanalysed: boolean | null }>(DURABLE_ESTIMATE, [durableTable(name)]);
  const rejects = await db.query<{ last_hour: string; total: string }>(REJECT_COUNTS, [name]);
  return {
    stream: name,
    staged: Number(staged.rows[0]?.staged ?? 0),
    oldestStagedAgeS: Math.max(0, staged.rows[0]?.age_s ?? 0),
    durableLastMinute: Number(drained.rows[0]?.inserted ?? 0),
    duplicatesLastMinute: Number(drained.rows[0]?.duplicates ?? 0),
    durableEstimate: durable.rows[0]?.unanalysed ? -1 : Number(durable.rows[0]?.estimate ?? 0),
    partitions: durable.rows[0]?.partitions ?? 0,
    rejectsLastHour: Number(rejects.rows[0]?.last_hour ?? 0),
    rejectsTotal: Number(rejects.rows[0]?.total ?? 0),
  };
}

export async function workerStatuses(db: Queryable, staleAfterMs: number): Promise<WorkerStatus[]> {
  const { rows } = await db.query<{
    id: string;
    host: string;
    pid: number;
    version: string;
    budget: number;
    plan: WorkerStatus['plan'];
    heartbeat_age_s: number;
    connections: number;
  }>(WORKERS);
  return rows.map((r) => ({
    id: r.id,
    host: r.host,
    pid: r.pid,
    version: r.version,
    budget: r.budget,
    plan: r.plan,
    connections: r.connections,
    heartbeatAgeS: r.heartbeat_age_s,
    live: r.heartbeat_age_s * 1000 < staleAfterMs,
  }));
}

export async function statusReport(db: pg.Pool | pg.ClientBase, staleAfterMs: number): Promise<StatusReport> {
  const streams = await listStreams(db);
  const statuses: StreamStatus[] = [];
  for (const s of streams) statuses.push(await streamStatus(db, s.name));
  return { takenAt: new Date().toISOString(), streams: statuses, workers: await workerStatuses(db, staleAfterMs) };
}
