/**
 * What exists, from the catalog: a stream's month tables in sluice_data
 * (attached, detach pending, detached) and in sluice_archive, with size and
 * estimated rows.
 */
import type pg from 'pg';
import { monthOfPartitionName, type MonthIndex } from './months.js';
import type { ExistingPartition, PartitionState } from './plan.js';

export interface PartitionInfo extends ExistingPartition {
  readonly schema: 'sluice_data' | 'sluice_archive';
  /** pg_class.reltuples; 0 for an empty table never analysed; -1 for one with pages never analysed (ESTIMATED_ROWS_SQL). */
  readonly estimatedRows: number;
  readonly bytes: number;
}

/**
 * Estimated rows of the table `c` (a pg_class row): its reltuples; 0 when it was
 * never analysed and its heap is empty on disk; -1 only when it has pages and was
 * never analysed. Premade months are the empty case: nothing writes them, so
 * autovacuum never analyses them, and since PostgreSQL 14 reltuples stays -1
 * until something does. relpages cannot tell (it is 0 until a VACUUM or ANALYZE,
 * full or not), so the heap's size is read (pg_relation_size: a stat, no scan).
 */
export const ESTIMATED_ROWS_SQL = `CASE WHEN c.reltuples >= 0 THEN c.reltuples WHEN pg_relation_size(c.oid) = 0 THEN 0 ELSE -1 END`;

// The name pattern is matched in TS (monthOfPartitionName): the stream name is
// only ever a parameter here.
const SELECT_PARTITIONS = `
SELECT c.relname AS name, n.nspname AS schema,
       i.inhrelid IS NOT NULL AS attached, coalesce(i.inhdetachpending, false) AS detach_pending,
       (${ESTIMATED_ROWS_SQL})::float8 AS estimated_rows, pg_total_relation_size(c.oid)::float8 AS bytes
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_inherits i ON i.inhrelid = c.oid AND i.inhparent = to_regclass(format('sluice_data.%I', $1::text))
 WHERE n.nspname IN ('sluice_data', 'sluice_archive') AND c.relkind = 'r'
   AND starts_with(c.relname, $1::text || '_p')`;

interface Row {
  name: string;
  schema: 'sluice_data' | 'sluice_archive';
  attached: boolean;
  detach_pending: boolean;
  estimated_rows: number;
  bytes: number;
}

function stateOf(row: Row): PartitionState {
  if (row.schema === 'sluice_archive') return 'archived';
  if (row.detach_pending) return 'detach_pending';
  return row.attached ? 'attached' : 'detached';
}

export async function readPartitions(db: pg.Pool | pg.ClientBase, stream: string): Promise<PartitionInfo[]> {
  const { rows } = await db.query<Row>(SELECT_PARTITIONS, [stream]);
  const found: PartitionInfo[] = [];
  for (const row of rows) {
    const month: MonthIndex | undefined = monthOfPartitionName(stream, row.name);
    if (month === undefined) continue;
    found.push({ name: row.name, month, state: stateOf(row), schema: row.schema, estimatedRows: row.estimated_rows, bytes: row.bytes });
  }
  return found.sort((a, b) => a.month - b.month || a.schema.localeCompare(b.schema));
}
