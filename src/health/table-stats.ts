/**
 * One catalog pass for the table checks (dead tuples, vacuum/analyze recency,
 * freeze): every ordinary table and matview outside the system schemas, its
 * statistics, its effective autovacuum settings (per-table reloptions over the
 * server's), and its TOAST table's freeze ages with the TOAST table's own
 * settings (Postgres uses the TOAST table's reloptions when it has any, else
 * the main table's).
 */
import type { Queryable } from '../streams/registry.js';

export const SLUICE_SCHEMAS = ['sluice', 'sluice_staging', 'sluice_data'] as const;

// Reloptions are text; '' when unset so the numeric casts below stay simple.
const TABLE_STATS = `
WITH g AS (
  SELECT current_setting('autovacuum')::bool AS autovacuum,
         current_setting('autovacuum_vacuum_threshold')::float8 AS vac_base,
         current_setting('autovacuum_vacuum_scale_factor')::float8 AS vac_scale,
         coalesce(nullif(current_setting('autovacuum_vacuum_max_threshold', true), '')::float8, -1) AS vac_max,
         current_setting('autovacuum_analyze_threshold')::float8 AS an_base,
         current_setting('autovacuum_analyze_scale_factor')::float8 AS an_scale,
         current_setting('autovacuum_freeze_max_age')::float8 AS freeze_max,
         current_setting('autovacuum_multixact_freeze_max_age')::float8 AS mxid_max
), t AS (
  SELECT c.oid, n.nspname AS schema, c.relname AS name, c.reltuples::float8 AS reltuples,
         n.nspname = ANY ($1::text[]) AS sluice_owned,
         pg_table_size(c.oid)::float8 AS bytes,
         age(c.relfrozenxid)::float8 AS xid_age, mxid_age(c.relminmxid)::float8 AS mxid_age,
         c.reltoastrelid, c.reloptions
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE c.relkind IN ('r', 'm')
     AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp_|toast_temp_)'
)
SELECT t.schema, t.name, t.reltuples, t.sluice_owned, t.bytes, t.xid_age, t.mxid_age,
       coalesce(o.enabled, 'true')::bool AND g.autovacuum AS autovacuum_enabled,
       coalesce(o.enabled, '') = 'false' AS autovacuum_disabled_here,
       coalesce(o.vac_base::float8, g.vac_base) AS vac_base,
       coalesce(o.vac_scale::float8, g.vac_scale) AS vac_scale,
       coalesce(o.vac_max::float8, g.vac_max) AS vac_max,
       coalesce(o.an_base::float8, g.an_base) AS an_base,
       coalesce(o.an_scale::float8, g.an_scale) AS an_scale,
       least(coalesce(o.freeze_max::float8, g.freeze_max), g.freeze_max) AS freeze_max,
       least(coalesce(o.mxid_max::float8, g.mxid_max), g.mxid_max) AS mxid_max,
       o.freeze_max IS NOT NULL AS freeze_max_from_reloption,
       s.n_live_tup::float8 AS n_live_tup, s.n_dead_tup::float8 AS n_dead_tup,
       s.n_mod_since_analyze::float8 AS n_mod_since_analyze,
       (s.n_tup_ins + s.n_tup_upd + s.n_tup_del)::float8 AS writes,
       extract(epoch FROM now() - greatest(s.last_vacuum, s.last_autovacuum))::float8 AS vacuumed_s_ago,
       extract(epoch FROM now() - greatest(s.last_analyze, s.last_autoanalyze))::float8 AS analyzed_s_ago,
       (s.vacuum_count + s.autovacuum_count)::float8 AS vacuums, (s.analyze_count + s.autoanalyze_count)::float8 AS analyzes,
       tc.relname AS toast_name,
       age(tc.relfrozenxid)::float8 AS toast_xid_age, mxid_age(tc.relminmxid)::float8 AS toast_mxid_age,
       least(coalesce(CASE WHEN tc.reloptions IS NOT NULL THEN tox.freeze_max ELSE o.freeze_max END::float8, g.freeze_max), g.freeze_max)
         AS toast_freeze_max,
       least(coalesce(CASE WHEN tc.reloptions IS NOT NULL THEN tox.mxid_max ELSE o.mxid_max END::float8, g.mxid_max), g.mxid_max)
         AS toast_mxid_max
  FROM t CROSS JOIN g
  LEFT JOIN pg_stat_all_tables s ON s.relid = t.oid
  LEFT JOIN pg_class tc ON tc.oid = t.reltoastrelid AND t.reltoastrelid <> 0
  LEFT JOIN LATERAL (
    SELECT max(option_value) FILTER (WHERE option_name = 'autovacuum_enabled') AS enabled,
           max(option_value) FILTER (WHERE option_name = 'autovacuum_vacuum_threshold') AS vac_base,
           max(option_value) FILTER (WHERE option_name = 'autovacuum_vacuum_scale_factor') AS vac_scale,
           max(option_value) FILTER (WHERE option_name = 'autovacuum_vacuum_max_threshold') AS vac_max,
           max(option_value) FILTER (WHERE option_name = 'autovacuum_analyze_threshold') AS an_base,
           max(option_value) FILTER (WHERE option_name = 'autovacuum_analyze_scale_factor') AS an_scale,
           max(option_value) FILTER (WHERE option_name = 'autovacuum_freeze_max_age') AS freeze_max,
           max(option_value) FILTER (WHERE option_name = 'autovacuum_multixact_freeze_max_age') AS mxid_max
      FROM pg_options_to_table(t.reloptions)) o ON true
  LEFT JOIN LATERAL (
    SELECT max(option_value) FILTER (WHERE option_name = 'autovacuum_freeze_max_age') AS freeze_max,
           max(option_value) FILTER (WHERE option_name = 'autovacuum_multixact_freeze_max_age') AS mxid_max
      FROM pg_options_to_table(tc.reloptions)) tox ON true
 ORDER BY t.schema, t.name`;

export interface TableStats {
  readonly schema: string;
  readonly name: string;
  /** -1: never vacuumed or analysed (statistics never collected). */
  readonly reltuples: number;
  readonly sluice_owned: boolean;
  readonly bytes: number;
  readonly xid_age: number;
  readonly mxid_age: number;
  readonly autovacuum_enabled: boolean;
  readonly autovacuum_disabled_here: boolean;
  readonly vac_base: number;
  readonly vac_scale: number;
  /** PG18 autovacuum_vacuum_max_threshold; -1 when off or older servers. */
  readonly vac_max: number;
  readonly an_base: number;
  readonly an_scale: number;
  readonly freeze_max: number;
  readonly mxid_max: number;
  readonly freeze_max_from_reloption: boolean;
  readonly n_live_tup: number | null;
  readonly n_dead_tup: number | null;
  readonly n_mod_since_analyze: number | null;
  readonly writes: number | null;
  readonly vacuumed_s_ago: number | null;
  readonly analyzed_s_ago: number | null;
  readonly vacuums: number | null;
  readonly analyzes: number | null;
  readonly toast_name: string | null;
  readonly toast_xid_age: number | null;
  readonly toast_mxid_age: number | null;
  readonly toast_freeze_max: number | null;
  readonly toast_mxid_max: number | null;
}

export async function readTableStats(db: Queryable): Promise<TableStats[]> {
  const { rows } = await db.query<TableStats>(TABLE_STATS, [SLUICE_SCHEMAS]);
  return rows;
}

export function qualified(t: Pick<TableStats, 'schema' | 'name'>): string {
  return `${t.schema}.${t.name}`;
}

/** Autovacuum's own trigger for this table: threshold + scale_factor × reltuples (capped on PG18). */
export function vacuumTrigger(t: TableStats): number {
  const trigger = t.vac_base + t.vac_scale * Math.max(t.reltuples, 0);
  return t.vac_max >= 0 ? Math.min(trigger, t.vac_max) : trigger;
}

export function analyzeTrigger(t: TableStats): number {
  return t.an_base + t.an_scale * Math.max(t.reltuples, 0);
}

/** Above the size floor, or one of sluice's own tables. */
export function inScope(t: TableStats, minTableMb: number): boolean {
  return t.sluice_owned || t.bytes >= minTableMb * 1024 * 1024;
}
