/**
 * What the durable side of a stream costs at one instant: bytes on disk (table
 * + indexes + TOAST, every partition) and autovacuum's work on its partitions,
 * as pg_stat_user_tables counts it (cumulative; the scale run reports deltas).
 */
import { readFileSync } from 'node:fs';
import type pg from 'pg';

/** Every partition of the stream's durable table (pg_inherits), summed. */
const DURABLE_STATS = `
SELECT coalesce(sum(pg_total_relation_size(i.inhrelid)), 0)::bigint AS bytes,
       coalesce(sum(s.autovacuum_count), 0)::bigint AS autovacuum_count,
       coalesce(sum(s.autoanalyze_count), 0)::bigint AS autoanalyze_count,
       coalesce(sum(s.n_dead_tup), 0)::bigint AS n_dead_tup,
       coalesce(sum(s.n_live_tup), 0)::bigint AS n_live_tup,
       count(*)::int AS partitions
  FROM pg_inherits i
  LEFT JOIN pg_stat_user_tables s ON s.relid = i.inhrelid
 WHERE i.inhparent = to_regclass($1)`;

export interface DurableStats {
  readonly bytes: number;
  readonly autovacuumCount: number;
  readonly autoanalyzeCount: number;
  readonly nDeadTup: number;
  readonly nLiveTup: number;
  readonly partitions: number;
}

/** WAL written so far, in bytes from 0/0 (deltas of it are the WAL of an interval, for the whole cluster). */
const WAL_POSITION = `SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::float8 AS bytes`;

export async function walPosition(db: pg.Pool | pg.ClientBase): Promise<number> {
  const { rows } = await db.query<{ bytes: number }>(WAL_POSITION);
  return Number(rows[0]?.bytes ?? 0);
}

/** `table` is the durable table's qualified, quoted name (durableTable()). */
export async function durableStats(db: pg.Pool | pg.ClientBase, table: string): Promise<DurableStats> {
  const { rows } = await db.query<Record<string, string | number>>(DURABLE_STATS, [table]);
  const r = rows[0] ?? {};
  return {
    bytes: Number(r.bytes ?? 0),
    autovacuumCount: Number(r.autovacuum_count ?? 0),
    autoanalyzeCount: Number(r.autoanalyze_count ?? 0),
    nDeadTup: Number(r.n_dead_tup ?? 0),
    nLiveTup: Number(r.n_live_tup ?? 0),
    partitions: Number(r.partitions ?? 0),
  };
}

/** Resident set size now (VmRSS) of a process, in MB; undefined off Linux or once it has exited. */
export function rssMb(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : undefined;
  } catch {
    return undefined;
  }
}
