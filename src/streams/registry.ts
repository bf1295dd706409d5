/**
 * The stream registry (sluice.streams): read definitions, create and drop
 * streams through the SQL functions of migrations/00002.
 */
import type { StreamSettings } from './stream-defaults.js';
import { withTransaction } from '../db/transaction.js';
import type pg from 'pg';
import { SluiceError, SQLSTATE, sqlState } from '../errors.js';
import { assertColumnName, assertStreamName } from './names.js';
import { canonicalColumnType, SUPPORTED_COLUMN_TYPES } from '../codec/column-types.js';
import type { IndexSpec } from './index-spec.js';

export type Queryable = pg.Pool | pg.ClientBase;

export interface ColumnDefinition {
  readonly name: string;
  /** Canonical Postgres type name, e.g. "bigint", "timestamp with time zone". */
  readonly type: string;
}

/** A stream: its name and shape, and its settings (defaults in stream-defaults.ts). */
export interface StreamDefinition extends StreamSettings {
  readonly name: string;
  readonly columns: readonly ColumnDefinition[];
  readonly indexes: ReadonlyArray<{ name: string; columns: string[]; predicate: string | null }>;
  readonly createdAt: Date;
  /**
   * Changes with every change of the definition, and differs after a drop and
   * re-create (migrations/00006): compare it to know whether a loaded
   * definition is still current. A bigint, as text.
   */
  readonly version: string;
}

export interface StreamOptions {
  premakeMonths?: number;
  retentionMonths?: number;
  retentionMode?: StreamSettings['retentionMode'];
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
       drain_batch_rows, max_event_bytes, require_event_id, created_at, version::text AS version
  FROM sluice.streams`;

interface StreamRow {
  name: string;
  columns: ColumnDefinition[];
  indexes: StreamDefinition['indexes'];
  premake_months: number;
  retention_months: number | null;
  retention_mode: StreamSettings['retentionMode'];
  max_past_months: number;
  drain_batch_rows: number;
  max_event_bytes: number;
  require_event_id: boolean;
  created_at: Date;
  version: string;
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
    version: row.version,
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

/**
 * How often holders of a loaded definition (a worker's IngestHub, the
 * TypeScript client, `sluice ingest`) compare its version with sluice.streams:
 * the bound on how long a changed, dropped or re-created stream's old
 * definition stays in use. Events that arrive later than this after the change
 * commits are validated and written with the new definition.
 */
export const STREAM_REFRESH_MS = 2_000;

const SELECT_VERSIONS = `SELECT name, version::text AS version FROM sluice.streams WHERE name = ANY($1::text[])`;

/**
 * The current version of each named stream; a dropped stream is absent from
 * the map. One small index-backed query, cheap enough to run every few seconds.
 */
export async function streamVersions(db: Queryable, names: readonly string[]): Promise<Map<string, string>> {
  if (names.length === 0) return new Map();
  const { rows } = await db.query<{ name: string; version: string }>(SELECT_VERSIONS, [names]);
  return new Map(rows.map((r) => [r.name, r.version]));
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
const PREMAKE_PARTITIONS = 'SELECT sluice.premake_partitions($1::text)';
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
  try {
    await withTransaction(client, async () => {
      await client.query(CREATE_STREAM, [
        spec.name,
        JSON.stringify(columns.map((c) => ({ name: c.name, type: canonicalColumnType(c.type) }))),
        JSON.stringify(options),
      ]);
      for (const index of spec.indexes ?? []) {
        await client.query(ADD_STREAM_INDEX, [spec.name, index.columns, index.predicate ?? null]);
      }
      // The whole premake window from the start (create_stream makes last, this and next month).
      await client.query(PREMAKE_PARTITIONS, [spec.name]);
    });
  } catch (err) {
    if (sqlState(err) === SQLSTATE.UNIQUE_VIOLATION) throw new SluiceError('stream_exists', `stream ${JSON.stringify(spec.name)} already exists`, { cause: err });
    if (sqlState(err) === SQLSTATE.CHECK_VIOLATION) throw new SluiceError('invalid_stream_option', `stream option out of range: ${(err as Error).message}`, { cause: err });
    throw err;
  }
  return requireStream(client, spec.name);
}

const DROP_STREAM = 'SELECT sluice.drop_stream($1::text) AS dropped';
/** A drain that runs while the stream is dropped can deadlock with the drop (40P01); the drop is one statement, safe to repeat. */
const DROP_ATTEMPTS = 5;

export async function dropStream(db: Queryable, name: string): Promise<boolean> {
  assertStreamName(name);
  for (let attempt = 1; ; attempt++) {
    try {
      const { rows } = await db.query<{ dropped: boolean }>(DROP_STREAM, [name]);
      return rows[0]?.dropped === true;
    } catch (err) {
      if (sqlState(err) !== SQLSTATE.DEADLOCK_DETECTED || attempt >= DROP_ATTEMPTS) throw err;
    }
  }
}
