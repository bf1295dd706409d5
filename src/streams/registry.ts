/**
 * The stream registry (sluice.streams): read definitions, create and drop
 * streams through the SQL functions of migrations/00002.
 */
import type pg from 'pg';
import { SluiceError, sqlState } from '../errors.js';
import { assertColumnName, assertStreamName } from './names.js';
import { canonicalColumnType, SUPPORTED_COLUMN_TYPES } from './column-types.js';
import type { IndexSpec } from './index-spec.js';

export type Queryable = pg.Pool | pg.ClientBase;

export interface ColumnDefinition {
  readonly name: string;
  /** Canonical Postgres type name, e.g. "bigint", "timestamp with time zone". */
  readonly type: string;
}

export interface StreamDefinition {
  readonly name: string;
  readonly columns: readonly ColumnDefinition[];
  readonly indexes: ReadonlyArray<{ name: string; columns: string[]; predicate: string | null }>;
  readonly premakeMonths: number;
  readonly retentionMonths: number | null;
  readonly retentionMode: 'detach' | 'drop';
  readonly maxPastMonths: number;
  readonly drainBatchRows: number;
  readonly maxEventBytes: number;
  readonly requireEventId: boolean;
  readonly createdAt: Date;
}

export interface StreamOptions {
  premakeMonths?: number;
  retentionMonths?: number;
  retentionMode?: 'detach' | 'drop';
  maxPastMonths?: number;
  drainBatchRows?: number;
  maxEventBytes?: number;
  requireEventId?: boolean;
}

export interface CreateStreamSpec extends StreamOptions {
  name: string;
  columns?: ColumnDefinition[];
  indexes?: IndexSpec[];
}

const SELECT_STREAMS = `
SELECT name, columns, indexes, premake_months, retention_months, retention_mode, max_past_months,
       drain_batch_rows, max_event_bytes, require_event_id, created_at
  FROM sluice.streams`;

interface StreamRow {
  name: string;
  columns: ColumnDefinition[];
  indexes: StreamDefinition['indexes'];
  premake_months: number;
  retention_months: number | null;
  retention_mode: 'detach' | 'drop';
  max_past_months: number;
  drain_batch_rows: number;
  max_event_bytes: number;
  require_event_id: boolean;
  created_at: Date;
}

function fromRow(row: StreamRow): StreamDefinition {
  return Object.freeze({
    name: row.name,
    columns: row.columns,
    indexes: row.indexes,
    premakeMonths: row.premake_months,
    retentionMonths: row.retention_months,
    retentionMode: row.retention_mode,
    maxPastMonths: row.max_past_months,
    drainBatchRows: row.drain_batch_rows,
    maxEventBytes: row.max_event_bytes,
    requireEventId: row.require_event_id,
    createdAt: row.created_at,
  });
}

export async function listStreams(db: Queryable): Promise<StreamDefinition[]> {
  const { rows } = await db.query<StreamRow>(`${SELECT_STREAMS} ORDER BY name`);
  return rows.map(fromRow);
}

export async function getStream(db: Queryable, name: string): Promise<StreamDefinition | undefined> {
  const { rows } = await db.query<StreamRow>(`${SELECT_STREAMS} WHERE name = $1`, [name]);
  return rows[0] ? fromRow(rows[0]) : undefined;
}

export function unknownStreamError(name: string): SluiceError {
  return new SluiceError(
    'unknown_stream',
    `unknown stream ${JSON.stringify(name)}: create it with \`sluice stream create ${name}\` (see \`sluice stream list\`)`,
  );
}

/** The stream's definition; validates the name first and throws SluiceError('unknown_stream') when absent. */
export async function requireStream(db: Queryable, name: string): Promise<StreamDefinition> {
  assertStreamName(name);
  const stream = await getStream(db, name);
  if (!stream) throw unknownStreamError(name);
  return stream;
}

/** Parse `name:type` as given to `--column`. */
export function parseColumnSpec(spec: string): ColumnDefinition {
  const colon = spec.indexOf(':');
  if (colon < 1) throw new SluiceError('invalid_column', `invalid --column ${JSON.stringify(spec)}: expected name:type, e.g. user_id:bigint`);
  const name = spec.slice(0, colon).trim();
  assertColumnName(name);
  const type = canonicalColumnType(spec.slice(colon + 1));
  if (!type) {
    throw new SluiceError(
      'invalid_column',
      `invalid --column ${JSON.stringify(spec)}: type must be one of ${SUPPORTED_COLUMN_TYPES.join(', ')}`,
    );
  }
  return { name, type };
}

const CREATE_STREAM = 'SELECT sluice.create_stream($1::text, $2::jsonb, $3::jsonb)';
const ADD_STREAM_INDEX = 'SELECT sluice.add_stream_index($1::text, $2::text[], $3::text) AS name';

/** Create a stream and its declared indexes in one transaction. */
export async function createStream(client: pg.ClientBase, spec: CreateStreamSpec): Promise<StreamDefinition> {
  assertStreamName(spec.name);
  const columns = spec.columns ?? [];
  const seen = new Set<string>();
  for (const column of columns) {
    assertColumnName(column.name);
    if (seen.has(column.name)) throw new SluiceError('invalid_column', `column ${column.name} is declared twice`);
    seen.add(column.name);
    if (!canonicalColumnType(column.type)) throw new SluiceError('invalid_column', `column ${column.name}: unsupported type ${column.type}`);
  }
  const options = {
    premake_months: spec.premakeMonths,
    retention_months: spec.retentionMonths,
    retention_mode: spec.retentionMode,
    max_past_months: spec.maxPastMonths,
    drain_batch_rows: spec.drainBatchRows,
    max_event_bytes: spec.maxEventBytes,
    require_event_id: spec.requireEventId,
  };
  await client.query('BEGIN');
  try {
    await client.query(CREATE_STREAM, [
      spec.name,
      JSON.stringify(columns.map((c) => ({ name: c.name, type: canonicalColumnType(c.type) }))),
      JSON.stringify(options),
    ]);
    for (const index of spec.indexes ?? []) {
      await client.query(ADD_STREAM_INDEX, [spec.name, index.columns, index.predicate ?? null]);
    }
    await client.query('COMMIT');
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    if (sqlState(err) === '23505') throw new SluiceError('stream_exists', `stream ${JSON.stringify(spec.name)} already exists`, { cause: err });
    if (sqlState(err) === '23514') throw new SluiceError('invalid_stream_option', `stream option out of range: ${(err as Error).message}`, { cause: err });
    throw err;
  }
  return requireStream(client, spec.name);
}

export async function dropStream(db: Queryable, name: string): Promise<boolean> {
  assertStreamName(name);
  const { rows } = await db.query<{ dropped: boolean }>('SELECT sluice.drop_stream($1::text) AS dropped', [name]);
  return rows[0]?.dropped === true;
}
