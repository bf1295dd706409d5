/**
 * The matview registry (sluice.matviews). Every view lives in schema
 * sluice_views under a validated name; its SQL is the operator's (run as
 * given, like any DDL they type), names and columns are validated and quoted.
 */
import type pg from 'pg';
import { withTransaction } from '../db/transaction.js';
import { SluiceError } from '../errors.js';
import { quoteIdent } from '../streams/names.js';

export const MATVIEW_SCHEMA = 'sluice_views';
export const MATVIEW_NAME_PATTERN = /^[a-z][a-z0-9_]{0,62}$/;
/** A refresh may run this long (per view, --statement-timeout overrides). */
export const MATVIEW_STATEMENT_TIMEOUT_MS_DEFAULT = 300_000;
/** sluice.matviews.statement_timeout_ms's CHECK (migration 00008). */
export const MATVIEW_STATEMENT_TIMEOUT_MS_RANGE = { min: 100, max: 86_400_000 } as const;

function assertStatementTimeout(ms: number): void {
  const { min, max } = MATVIEW_STATEMENT_TIMEOUT_MS_RANGE;
  if (!Number.isInteger(ms) || ms < min || ms > max) {
    throw new SluiceError('invalid_argument', `invalid --statement-timeout-ms ${String(ms)}: whole milliseconds from ${min} to ${max}`);
  }
}

export interface MatviewRow {
  name: string;
  sql: string;
  unique_columns: string[];
  every_s: number;
  enabled: boolean;
  allow_blocking: boolean;
  statement_timeout_ms: number;
  created_by_sluice: boolean;
  created_at: Date;
  last_started_at: Date | null;
  last_duration_ms: number | null;
  last_rows: string | null;
  last_status: 'refreshed' | 'skipped' | 'failed' | null;
  last_error: string | null;
  last_refreshed_at: Date | null;
  watermark: string | null;
  next_attempt_at: Date;
  failures: number;
  /** Seconds since the last successful refresh (null: never). */
  age_s: number | null;
}

export function assertMatviewName(name: unknown): asserts name is string {
  if (typeof name !== 'string' || !MATVIEW_NAME_PATTERN.test(name)) {
    throw new SluiceError('invalid_matview_name', `invalid view name ${JSON.stringify(name)}: use a lowercase letter, then lowercase letters, digits or _ (at most 63); it is created in schema ${MATVIEW_SCHEMA}`);
  }
}

export function matviewRelation(name: string): string {
  assertMatviewName(name);
  return `${MATVIEW_SCHEMA}.${quoteIdent(name)}`;
}

/** 'a, b' → ['a', 'b'], each a plain column name. */
export function parseUniqueColumns(spec: string): string[] {
  const columns = spec.split(',').map((c) => c.trim());
  if (columns.length === 0 || columns.some((c) => !MATVIEW_NAME_PATTERN.test(c)) || new Set(columns).size !== columns.length) {
    throw new SluiceError('invalid_unique_columns', `invalid --unique ${JSON.stringify(spec)}: a comma-separated list of distinct column names of the view, e.g. 'type' or 'day, type'`);
  }
  return columns;
}

const UNITS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400 };

/** '30s', '1m', '5m', '1h', '1d' → seconds. */
export function parseInterval(spec: string): number {
  const m = /^(\d+)\s*(s|m|h|d)$/.exec(spec.trim());
  const seconds = m ? Number(m[1]) * UNITS[m[2]!]! : NaN;
  if (!Number.isInteger(seconds) || seconds < 1 || seconds > 31 * 86400) {
    throw new SluiceError('invalid_interval', `invalid --every ${JSON.stringify(spec)}: e.g. 30s, 1m, 15m, 1h, 1d (the worker checks every minute)`);
  }
  return seconds;
}

export interface AddMatview {
  readonly name: string;
  readonly sql?: string;
  readonly uniqueColumns: string[];
  readonly everyS: number;
  readonly existing?: boolean;
  readonly allowBlocking?: boolean;
  readonly statementTimeoutMs?: number;
}

const INSERT = `
INSERT INTO sluice.matviews (name, sql, unique_columns, every_s, allow_blocking, statement_timeout_ms, created_by_sluice)
VALUES ($1, $2, $3, $4, $5, $6, $7)`;
const VIEW_DEFINITION = `SELECT pg_get_viewdef(to_regclass($1)) AS sql, (SELECT relkind FROM pg_class WHERE oid = to_regclass($1)) AS relkind`;
/** Unique, non-partial, plain-column indexes of the view: what REFRESH … CONCURRENTLY needs. */
const UNIQUE_INDEXES = `
SELECT array_agg(a.attname::text ORDER BY a.attname) AS columns
  FROM pg_index i
  JOIN LATERAL unnest(i.indkey) k(attnum) ON true
  JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
 WHERE i.indrelid = to_regclass($1) AND i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL
 GROUP BY i.indexrelid`;

/** Create (or, with `existing`, register) a view; its first refresh is the worker's next sweep. */
export async function addMatview(client: pg.ClientBase, spec: AddMatview): Promise<void> {
  const relation = matviewRelation(spec.name);
  const timeout = spec.statementTimeoutMs ?? MATVIEW_STATEMENT_TIMEOUT_MS_DEFAULT;
  assertStatementTimeout(timeout);
  await withTransaction(client, async (c) => {
    if ((await c.query(`SELECT 1 FROM sluice.matviews WHERE name = $1`, [spec.name])).rowCount) {
      throw new SluiceError('matview_exists', `matview ${spec.name} is already registered (see \`sluice matview list\`; \`sluice matview drop ${spec.name}\` first to replace it)`);
    }
    let sql = spec.sql;
    if (spec.existing) {
      const { rows } = await c.query<{ sql: string | null; relkind: string | null }>(VIEW_DEFINITION, [relation]);
      if (rows[0]?.relkind !== 'm') {
        throw new SluiceError('unknown_matview', `no materialized view ${relation}: create it there first (or move it: ALTER MATERIALIZED VIEW … SET SCHEMA ${MATVIEW_SCHEMA})`);
      }
      sql ??= rows[0].sql ?? '';
      const indexes = (await c.query<{ columns: string[] }>(UNIQUE_INDEXES, [relation])).rows.map((r) => r.columns.join(','));
      const wanted = [...spec.uniqueColumns].sort().join(',');
      if (!indexes.includes(wanted)) {
        throw new SluiceError('no_unique_index', `${relation} has no unique index on (${spec.uniqueColumns.join(', ')}) without WHERE or expressions: REFRESH … CONCURRENTLY needs one (found: ${indexes.map((i) => `(${i})`).join(', ') || 'none'})`);
      }
    } else {
      if (!sql?.trim()) throw new SluiceError('missing_sql', 'sluice matview add needs --sql (or --existing, or --example)');
      // The operator's SQL, as DDL they could type in psql; WITH NO DATA: the first refresh populates it.
      await c.query(`CREATE MATERIALIZED VIEW ${relation} AS ${sql} WITH NO DATA`);
      await c.query(`CREATE UNIQUE INDEX ${quoteIdent(`${spec.name}_unique`)} ON ${relation} (${spec.uniqueColumns.map(quoteIdent).join(', ')})`);
    }
    await c.query(INSERT, [spec.name, sql, spec.uniqueColumns, spec.everyS, spec.allowBlocking ?? false, timeout, !spec.existing]);
  });
}

const SELECT = `
SELECT m.*, m.last_rows::text AS last_rows, m.watermark::text AS watermark,
       extract(epoch FROM now() - m.last_refreshed_at)::float8 AS age_s
  FROM sluice.matviews m`;

export async function listMatviews(db: pg.Pool | pg.ClientBase): Promise<MatviewRow[]> {
  return (await db.query<MatviewRow>(`${SELECT} ORDER BY name`)).rows;
}

export async function getMatview(db: pg.Pool | pg.ClientBase, name: string): Promise<MatviewRow> {
  assertMatviewName(name);
  const row = (await db.query<MatviewRow>(`${SELECT} WHERE name = $1`, [name])).rows[0];
  if (!row) throw new SluiceError('unknown_matview', `no registered matview ${JSON.stringify(name)} (see \`sluice matview list\`)`);
  return row;
}

export async function setMatviewEnabled(db: pg.Pool | pg.ClientBase, name: string, enabled: boolean): Promise<void> {
  await getMatview(db, name);
  // Enabling makes it due now (and forgets the failure backoff).
  await db.query(`UPDATE sluice.matviews SET enabled = $2, next_attempt_at = CASE WHEN $2 THEN now() ELSE next_attempt_at END, failures = CASE WHEN $2 THEN 0 ELSE failures END WHERE name = $1`, [name, enabled]);
}

/** Unregister; the view itself is dropped too when sluice created it (or `dropView`). */
export async function dropMatview(client: pg.ClientBase, name: string, options: { dropView?: boolean } = {}): Promise<boolean> {
  const row = await getMatview(client, name);
  const dropView = options.dropView ?? row.created_by_sluice;
  await withTransaction(client, async (c) => {
    await c.query(`DELETE FROM sluice.matviews WHERE name = $1`, [name]);
    await c.query(`DELETE FROM sluice.matview_runs WHERE name = $1`, [name]);
    if (dropView) await c.query(`DROP MATERIALIZED VIEW IF EXISTS ${matviewRelation(name)}`);
  });
  return dropView;
}

/**
 * The worked example on the default `events` stream: events per UTC day and
 * type (a daily leaderboard: ORDER BY events DESC when reading). No now() in
 * it: the refresh is skipped while the sources are unchanged, so a view whose
 * rows depend on the time of day would go stale between writes.
 */
export const EXAMPLE_MATVIEW: AddMatview = {
  name: 'events_top_types',
  sql: `SELECT (occurred_at AT TIME ZONE 'UTC')::date AS day, coalesce(payload->>'type', '(none)') AS type,
       count(*) AS events, max(occurred_at) AS last_seen
  FROM sluice_data.events
 GROUP BY 1, 2`,
  uniqueColumns: ['day', 'type'],
  everyS: 60,
};
