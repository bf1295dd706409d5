-- Partition lifecycle (issue 15): retention with an archive mode, one clock for
-- the window (sluice.stream_window_at), a record of every rotation run; and the
-- materialized-view registry refreshed on a schedule by the worker.

-- retention_mode 'archive': detached partitions move to schema sluice_archive.
ALTER TABLE sluice.streams DROP CONSTRAINT streams_retention_mode_check;
ALTER TABLE sluice.streams ADD CONSTRAINT streams_retention_mode_check
  CHECK (retention_mode IN ('detach', 'drop', 'archive'));

CREATE SCHEMA IF NOT EXISTS sluice_archive;
COMMENT ON SCHEMA sluice_archive IS 'sluice: partitions past retention of streams with retention_mode archive (detached, kept)';
CREATE SCHEMA IF NOT EXISTS sluice_views;
COMMENT ON SCHEMA sluice_views IS 'sluice: materialized views registered in sluice.matviews (sluice matview add)';

-- The stream window at a given time. The rotation passes its (injectable)
-- clock; ingest and the drain keep calling sluice.stream_window, which is this
-- at now(): same formula, so the TypeScript planner (src/partitions/plan.ts)
-- and both SQL paths agree.
CREATE FUNCTION sluice.stream_window_at(p_stream text, p_now timestamptz, OUT lo date, OUT hi date)
LANGUAGE plpgsql STABLE AS $$
DECLARE
  v_stream sluice.streams;
  v_this date := sluice.utc_month(p_now);
BEGIN
  SELECT * INTO v_stream FROM sluice.streams WHERE name = p_stream;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'sluice: unknown stream %', p_stream USING ERRCODE = 'undefined_object';
  END IF;
  lo := (v_this - make_interval(months => v_stream.max_past_months))::date;
  IF v_stream.retention_months IS NOT NULL THEN
    lo := greatest(lo, (v_this - make_interval(months => v_stream.retention_months - 1))::date);
  END IF;
  hi := (v_this + make_interval(months => v_stream.premake_months + 1))::date;
END
$$;

CREATE OR REPLACE FUNCTION sluice.stream_window(p_stream text, OUT lo date, OUT hi date)
LANGUAGE sql STABLE AS $$
  SELECT w.lo, w.hi FROM sluice.stream_window_at(p_stream, now()) w
$$;

-- One row per rotation run of one stream (sluice partitions rotate, the hourly
-- task): what it did, what it skipped and why, who blocked it.
CREATE TABLE sluice.partition_runs (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  stream text NOT NULL,
  runner text NOT NULL,
  clock_at timestamptz NOT NULL,
  started_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  finished_at timestamptz,
  dry_run boolean NOT NULL DEFAULT false,
  created text[] NOT NULL DEFAULT '{}',
  detached text[] NOT NULL DEFAULT '{}',
  finalized text[] NOT NULL DEFAULT '{}',
  dropped text[] NOT NULL DEFAULT '{}',
  archived text[] NOT NULL DEFAULT '{}',
  -- staged rows of months past retention: drained first, the rest rejected (reason past_retention)
  rejected bigint NOT NULL DEFAULT 0,
  -- [{"step": "...", "partition": "...", "reason": "..."}]
  skipped jsonb NOT NULL DEFAULT '[]'::jsonb,
  -- [{"step": "...", "pid": n, "application_name": "...", "state": "...", "query_start": "...", "query": "..."}]
  blockers jsonb NOT NULL DEFAULT '[]'::jsonb,
  error text
);
CREATE INDEX partition_runs_stream_started_idx ON sluice.partition_runs (stream, started_at);
COMMENT ON TABLE sluice.partition_runs IS 'Partition rotation runs: created, detached, finalized, dropped, archived, skipped (why), blockers';

-- Materialized views sluice refreshes on a schedule. All live in sluice_views.
CREATE TABLE sluice.matviews (
  name text PRIMARY KEY CONSTRAINT matviews_name_format CHECK (name ~ '^[a-z][a-z0-9_]{0,62}$'),
  sql text NOT NULL,
  unique_columns text[] NOT NULL CHECK (cardinality(unique_columns) > 0),
  every_s int NOT NULL CHECK (every_s BETWEEN 1 AND 31 * 86400),
  enabled boolean NOT NULL DEFAULT true,
  allow_blocking boolean NOT NULL DEFAULT false,
  statement_timeout_ms int NOT NULL DEFAULT 300000 CHECK (statement_timeout_ms BETWEEN 100 AND 86400000),
  created_by_sluice boolean NOT NULL DEFAULT true,
  created_at timestamptz NOT NULL DEFAULT now(),
  last_started_at timestamptz,
  last_duration_ms int,
  last_rows bigint,
  last_status text CHECK (last_status IN ('refreshed', 'skipped', 'failed')),
  last_error text,
  last_refreshed_at timestamptz,
  -- sum of n_tup_ins + n_tup_upd + n_tup_del over the view's source tables at the last refresh
  watermark bigint,
  next_attempt_at timestamptz NOT NULL DEFAULT now(),
  failures int NOT NULL DEFAULT 0
);
COMMENT ON TABLE sluice.matviews IS 'Materialized views in sluice_views, refreshed CONCURRENTLY by the worker when their sources changed';

CREATE TABLE sluice.matview_runs (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  name text NOT NULL,
  started_at timestamptz NOT NULL,
  duration_ms int NOT NULL,
  status text NOT NULL CHECK (status IN ('refreshed', 'skipped', 'failed')),
  mode text,
  rows bigint,
  watermark bigint,
  error text
);
CREATE INDEX matview_runs_name_started_idx ON sluice.matview_runs (name, started_at);
COMMENT ON TABLE sluice.matview_runs IS 'One row per scheduled or manual matview refresh attempt: refreshed, skipped (sources unchanged) or failed';

-- Base tables a relation reads, through views and partitioned tables.
CREATE FUNCTION sluice.source_tables(p_rel regclass) RETURNS SETOF regclass
LANGUAGE sql STABLE AS $$
  WITH RECURSIVE deps(rel) AS (
    SELECT p_rel::oid
    UNION
    SELECT d.refobjid
      FROM deps
      JOIN pg_rewrite r ON r.ev_class = deps.rel
      JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
                      AND d.refclassid = 'pg_class'::regclass AND d.refobjid <> deps.rel
  ), leaves AS (
    SELECT c.oid AS relid FROM deps JOIN pg_class c ON c.oid = deps.rel WHERE c.relkind IN ('r', 'm')
    UNION
    -- pg_partition_tree lists nothing for a table outside a partition tree: only for 'p'.
    SELECT t.relid FROM deps JOIN pg_class c ON c.oid = deps.rel, LATERAL pg_partition_tree(c.oid) t
     WHERE c.relkind = 'p' AND t.isleaf
  )
  -- Not the view itself: its own refresh writes to it.
  SELECT DISTINCT relid::regclass FROM leaves WHERE relid <> p_rel::oid
$$;

-- The change counter a matview's skip decision compares (pg_stat counters:
-- per table, flushed by writers within about a second).
CREATE FUNCTION sluice.matview_watermark(p_rel regclass) RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
  -- Counters are cached per transaction (stats_fetch_consistency): read them afresh.
  PERFORM pg_stat_clear_snapshot();
  RETURN (SELECT coalesce(sum(s.n_tup_ins + s.n_tup_upd + s.n_tup_del), 0)::bigint
            FROM sluice.source_tables(p_rel) t JOIN pg_stat_all_tables s ON s.relid = t);
END
$$;
