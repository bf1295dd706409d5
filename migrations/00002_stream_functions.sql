-- Stream DDL and partition maintenance as SQL functions, so operators can run
-- them from psql too. Identifiers always go through format('%I'); types
-- through ::regtype (whose text form is quoted); values through %L or USING.

-- Types sluice knows how to validate and encode (canonical regtype names).
CREATE FUNCTION sluice.allowed_column_types() RETURNS text[]
LANGUAGE sql IMMUTABLE AS $$
  SELECT ARRAY['text', 'character varying', 'smallint', 'integer', 'bigint', 'numeric', 'real',
               'double precision', 'boolean', 'uuid', 'timestamp with time zone', 'date', 'jsonb']
$$;

-- Column names the event envelope already uses.
CREATE FUNCTION sluice.reserved_column_names() RETURNS text[]
LANGUAGE sql IMMUTABLE AS $$
  SELECT ARRAY['event_id', 'occurred_at', 'payload', 'received_at', 'drained_at', 'staged',
               'tableoid', 'xmin', 'xmax', 'cmin', 'cmax', 'ctid']
$$;

CREATE FUNCTION sluice.partition_name(p_stream text, p_month date) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
  SELECT p_stream || '_p' || to_char(p_month, 'YYYYMM')
$$;

-- First day of the UTC month holding p_at.
CREATE FUNCTION sluice.utc_month(p_at timestamptz) RETURNS date
LANGUAGE sql IMMUTABLE AS $$
  SELECT date_trunc('month', p_at AT TIME ZONE 'UTC')::date
$$;

-- The months a stream accepts events for: [lo, hi) as UTC month starts.
CREATE FUNCTION sluice.stream_window(p_stream text, OUT lo date, OUT hi date)
LANGUAGE plpgsql STABLE AS $$
DECLARE
  v_stream sluice.streams;
  v_this date := sluice.utc_month(now());
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

-- Create the month partition if missing. Returns true when it created one.
-- CREATE ... LIKE + ATTACH takes only SHARE UPDATE EXCLUSIVE on the parent,
-- so drains keep inserting meanwhile; ATTACH builds the parent's indexes.
CREATE FUNCTION sluice.ensure_partition(p_stream text, p_month date) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
  v_month date := date_trunc('month', p_month)::date;
  v_name text := sluice.partition_name(p_stream, date_trunc('month', p_month)::date);
  v_from text := to_char(date_trunc('month', p_month), 'YYYY-MM-DD') || ' 00:00:00+00';
  v_to text := to_char(date_trunc('month', p_month) + interval '1 month', 'YYYY-MM-DD') || ' 00:00:00+00';
BEGIN
  IF to_regclass(format('sluice_data.%I', v_name)) IS NOT NULL THEN
    RETURN false;
  END IF;
  PERFORM pg_advisory_xact_lock(hashtext('sluice.partition:' || p_stream));
  IF to_regclass(format('sluice_data.%I', v_name)) IS NOT NULL THEN
    RETURN false;
  END IF;
  EXECUTE format('CREATE TABLE sluice_data.%I (LIKE sluice_data.%I INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE)',
                 v_name, p_stream);
  EXECUTE format('ALTER TABLE sluice_data.%I ATTACH PARTITION sluice_data.%I FOR VALUES FROM (%L) TO (%L)',
                 p_stream, v_name, v_from, v_to);
  RETURN true;
END
$$;

-- Make sure every month from last month to premake_months ahead exists.
CREATE FUNCTION sluice.premake_partitions(p_stream text) RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
  v_premake int;
  v_this date := sluice.utc_month(now());
  v_created int := 0;
BEGIN
  SELECT premake_months INTO v_premake FROM sluice.streams WHERE name = p_stream;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'sluice: unknown stream %', p_stream USING ERRCODE = 'undefined_object';
  END IF;
  FOR i IN -1 .. v_premake LOOP
    IF sluice.ensure_partition(p_stream, (v_this + make_interval(months => i))::date) THEN
      v_created := v_created + 1;
    END IF;
  END LOOP;
  RETURN v_created;
END
$$;

-- The drain's slow path, taken when a batch hit a month with no partition:
-- months inside the stream's window get their partition; rows of months
-- outside it move to sluice.rejects, in this same transaction.
CREATE FUNCTION sluice.repair_missing_partitions(p_stream text, OUT created int, OUT rejected bigint)
LANGUAGE plpgsql AS $$
DECLARE
  v_lo date;
  v_hi date;
  v_month date;
  v_name text;
  v_reason text;
  v_count bigint;
BEGIN
  created := 0;
  rejected := 0;
  SELECT w.lo, w.hi INTO v_lo, v_hi FROM sluice.stream_window(p_stream) w;
  PERFORM pg_advisory_xact_lock(hashtext('sluice.repair:' || p_stream));
  FOR v_month IN EXECUTE format(
      'SELECT DISTINCT sluice.utc_month(occurred_at) FROM sluice_staging.%I WHERE occurred_at IS NOT NULL', p_stream)
  LOOP
    v_name := sluice.partition_name(p_stream, v_month);
    -- Attached, not merely present: a detached table (archived by hand) keeps its name.
    CONTINUE WHEN EXISTS (
      SELECT 1 FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
       WHERE i.inhparent = format('sluice_data.%I', p_stream)::regclass AND c.relname = v_name);
    IF v_month >= v_lo AND v_month < v_hi AND to_regclass(format('sluice_data.%I', v_name)) IS NULL THEN
      IF sluice.ensure_partition(p_stream, v_month) THEN
        created := created + 1;
      END IF;
    ELSE
      v_reason := CASE WHEN v_month >= v_lo AND v_month < v_hi
        THEN format('table sluice_data.%s exists but is not attached (detached by hand?): re-attach or rename it to let month %s in',
                    v_name, to_char(v_month, 'YYYY-MM'))
        ELSE format('occurred_at month %s is outside the stream window [%s, %s): no partition may be created for it',
                    to_char(v_month, 'YYYY-MM'), to_char(v_lo, 'YYYY-MM'), to_char(v_hi, 'YYYY-MM'))
      END;
      EXECUTE format(
        'WITH moved AS (DELETE FROM sluice_staging.%I s WHERE s.occurred_at >= $1 AND s.occurred_at < $2 RETURNING s.*)
         INSERT INTO sluice.rejects (stream, source, reason, message, raw)
         SELECT $3, ''drain'', ''no_partition'', $4, row_to_json(moved)::text FROM moved', p_stream)
      USING (to_char(v_month, 'YYYY-MM-DD') || ' 00:00:00+00')::timestamptz,
            (to_char(v_month + interval '1 month', 'YYYY-MM-DD') || ' 00:00:00+00')::timestamptz,
            p_stream,
            v_reason;
      GET DIAGNOSTICS v_count = ROW_COUNT;
      rejected := rejected + v_count;
    END IF;
  END LOOP;
END
$$;

-- Create a stream: registry row, UNLOGGED index-free staging table, durable
-- table partitioned by month (PK, BRIN, no default partition), partitions for
-- last, this and next month, and the read-your-writes view <stream>_all.
CREATE FUNCTION sluice.create_stream(p_name text, p_columns jsonb DEFAULT '[]'::jsonb, p_options jsonb DEFAULT '{}'::jsonb)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  v_col jsonb;
  v_col_name text;
  v_col_type text;
  v_columns jsonb := '[]'::jsonb;
  v_defs text := '';
  v_list text := '';
  v_this date := sluice.utc_month(now());
BEGIN
  IF p_name IS NULL OR p_name !~ '^[a-z][a-z0-9_]{0,47}$' OR p_name ~ '_all$' OR p_name ~ '_p[0-9]{6}$' THEN
    RAISE EXCEPTION 'sluice: invalid stream name %', quote_literal(coalesce(p_name, '<null>'))
      USING ERRCODE = 'invalid_name',
            HINT = 'Use 1-48 characters: a lowercase letter, then lowercase letters, digits or _; not ending in _all or _pYYYYMM.';
  END IF;
  IF jsonb_typeof(p_columns) <> 'array' THEN
    RAISE EXCEPTION 'sluice: columns must be a JSON array' USING ERRCODE = 'invalid_parameter_value';
  END IF;
  FOR v_col IN SELECT * FROM jsonb_array_elements(p_columns) LOOP
    v_col_name := v_col->>'name';
    IF v_col_name IS NULL OR v_col_name !~ '^[a-z][a-z0-9_]{0,62}$' THEN
      RAISE EXCEPTION 'sluice: invalid column name %', quote_literal(coalesce(v_col_name, '<null>')) USING ERRCODE = 'invalid_name';
    END IF;
    IF v_col_name = ANY (sluice.reserved_column_names()) THEN
      RAISE EXCEPTION 'sluice: column name % is reserved', v_col_name USING ERRCODE = 'invalid_name';
    END IF;
    IF v_columns @> jsonb_build_array(jsonb_build_object('name', v_col_name)) THEN
      RAISE EXCEPTION 'sluice: column % declared twice', v_col_name USING ERRCODE = 'duplicate_column';
    END IF;
    IF (v_col->>'type') ~ '[()\[\]]' THEN
      RAISE EXCEPTION 'sluice: column type % has a modifier or array bound; declare the base type', v_col->>'type'
        USING ERRCODE = 'invalid_parameter_value', HINT = 'Supported: ' || array_to_string(sluice.allowed_column_types(), ', ');
    END IF;
    v_col_type := (v_col->>'type')::regtype::text;
    IF NOT v_col_type = ANY (sluice.allowed_column_types()) THEN
      RAISE EXCEPTION 'sluice: column type % is not supported', v_col_type
        USING ERRCODE = 'invalid_parameter_value', HINT = 'Supported: ' || array_to_string(sluice.allowed_column_types(), ', ');
    END IF;
    v_columns := v_columns || jsonb_build_array(jsonb_build_object('name', v_col_name, 'type', v_col_type));
    v_defs := v_defs || format('%I %s, ', v_col_name, v_col_type::regtype);
    v_list := v_list || format('%I, ', v_col_name);
  END LOOP;

  INSERT INTO sluice.streams (name, columns, staging_table, durable_table, premake_months, retention_months,
                              retention_mode, max_past_months, drain_batch_rows, max_event_bytes, require_event_id)
  VALUES (p_name, v_columns, format('sluice_staging.%I', p_name), format('sluice_data.%I', p_name),
          coalesce((p_options->>'premake_months')::int, 3),
          (p_options->>'retention_months')::int,
          coalesce(p_options->>'retention_mode', 'detach'),
          coalesce((p_options->>'max_past_months')::int, 12),
          coalesce((p_options->>'drain_batch_rows')::int, 10000),
          coalesce((p_options->>'max_event_bytes')::int, 65536),
          coalesce((p_options->>'require_event_id')::boolean, true));

  -- Staging: UNLOGGED (no WAL), no indexes; NOT NULL on the key so a row that
  -- could never be drained cannot get in. Vacuumed eagerly: it churns.
  EXECUTE format(
    'CREATE UNLOGGED TABLE sluice_staging.%I (event_id uuid NOT NULL, occurred_at timestamptz NOT NULL, %s'
    'payload jsonb NOT NULL DEFAULT ''{}'', received_at timestamptz NOT NULL DEFAULT now()) '
    'WITH (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 10000, '
    'autovacuum_vacuum_insert_scale_factor = 0, autovacuum_vacuum_insert_threshold = 100000, '
    'autovacuum_vacuum_cost_delay = 0)', p_name, v_defs);

  -- received_at: when sluice staged the event; drained_at: when it became durable
  -- (the drain transaction's start), so staged→durable lag is visible per row.
  EXECUTE format(
    'CREATE TABLE sluice_data.%I (event_id uuid NOT NULL, occurred_at timestamptz NOT NULL, %s'
    'payload jsonb NOT NULL DEFAULT ''{}'', received_at timestamptz NOT NULL, drained_at timestamptz NOT NULL DEFAULT now(), '
    'CONSTRAINT %I PRIMARY KEY (occurred_at, event_id)) PARTITION BY RANGE (occurred_at)',
    p_name, v_defs, p_name || '_pkey');
  EXECUTE format('CREATE INDEX %I ON sluice_data.%I USING brin (occurred_at)', p_name || '_occurred_at_brin', p_name);

  FOR i IN -1 .. 1 LOOP
    PERFORM sluice.ensure_partition(p_name, (v_this + make_interval(months => i))::date);
  END LOOP;

  EXECUTE format(
    'CREATE VIEW sluice_data.%I AS '
    'SELECT event_id, occurred_at, %s payload, received_at, drained_at, false AS staged FROM sluice_data.%I '
    'UNION ALL '
    'SELECT event_id, occurred_at, %s payload, received_at, NULL::timestamptz, true AS staged FROM sluice_staging.%I',
    p_name || '_all', v_list, p_name, v_list, p_name);
END
$$;

-- Drop a stream and its tables. Rejects stay: they are the audit trail.
CREATE FUNCTION sluice.drop_stream(p_name text) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM sluice.streams WHERE name = p_name) THEN
    RETURN false;
  END IF;
  EXECUTE format('DROP VIEW IF EXISTS sluice_data.%I', p_name || '_all');
  EXECUTE format('DROP TABLE IF EXISTS sluice_data.%I', p_name);
  EXECUTE format('DROP TABLE IF EXISTS sluice_staging.%I', p_name);
  DELETE FROM sluice.drain_stats WHERE stream = p_name;
  DELETE FROM sluice.streams WHERE name = p_name;
  RETURN true;
END
$$;

-- Add a btree index on the durable table (propagates to every partition).
-- p_predicate is SQL: sluice's CLI renders it from a restricted grammar
-- (quoted identifiers, escaped literals); from psql, it is yours to vouch for.
CREATE FUNCTION sluice.add_stream_index(p_stream text, p_columns text[], p_predicate text DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
  v_allowed text[];
  v_col text;
  v_cols_sql text := '';
  v_name text;
BEGIN
  SELECT ARRAY['event_id', 'occurred_at', 'received_at', 'drained_at'] || coalesce(array_agg(c->>'name'), '{}')
    INTO v_allowed
    FROM sluice.streams s LEFT JOIN LATERAL jsonb_array_elements(s.columns) c ON true
   WHERE s.name = p_stream;
  IF NOT EXISTS (SELECT 1 FROM sluice.streams WHERE name = p_stream) THEN
    RAISE EXCEPTION 'sluice: unknown stream %', p_stream USING ERRCODE = 'undefined_object';
  END IF;
  IF p_columns IS NULL OR cardinality(p_columns) = 0 THEN
    RAISE EXCEPTION 'sluice: an index needs at least one column' USING ERRCODE = 'invalid_parameter_value';
  END IF;
  FOREACH v_col IN ARRAY p_columns LOOP
    IF NOT v_col = ANY (v_allowed) THEN
      RAISE EXCEPTION 'sluice: stream % has no column %', p_stream, v_col
        USING ERRCODE = 'undefined_column', HINT = 'Columns: ' || array_to_string(v_allowed, ', ');
    END IF;
    v_cols_sql := v_cols_sql || CASE WHEN v_cols_sql = '' THEN '' ELSE ', ' END || format('%I', v_col);
  END LOOP;
  -- Readable when it fits; otherwise (or with a predicate) a hash of the definition keeps names distinct.
  v_name := p_stream || '_' || array_to_string(p_columns, '_');
  IF length(v_name) > 50 OR p_predicate IS NOT NULL THEN
    v_name := left(v_name, 50) || '_' || left(md5(array_to_string(p_columns, ',') || '|' || coalesce(p_predicate, '')), 6);
  END IF;
  v_name := v_name || '_idx';
  EXECUTE format('CREATE INDEX %I ON sluice_data.%I (%s)%s', v_name, p_stream, v_cols_sql,
                 CASE WHEN p_predicate IS NULL THEN '' ELSE ' WHERE ' || p_predicate END);
  UPDATE sluice.streams
     SET indexes = indexes || jsonb_build_array(jsonb_build_object('name', v_name, 'columns', to_jsonb(p_columns), 'predicate', p_predicate))
   WHERE name = p_stream;
  RETURN v_name;
END
$$;
