-- The SQL front door, faster (issue 19). Measured on 00012's sluice.ingest
-- (PG 15, 100 events per call): about 190 µs an event, of which ~110 µs
-- parsing occurred_at in PL/pgSQL, ~45 µs the envelope checks, and several ms
-- per call planning the statement it builds and EXECUTEs every time. Two changes:
--
-- 1. Each stream gets its own ingest function, sluice_ingest.<stream>(...),
--    generated from its columns (a trigger on sluice.streams keeps it in step;
--    settings that can change in place are arguments, not baked in). Its SQL is
--    static, so PL/pgSQL plans it once per session instead of once per call.
--    sluice.ingest keeps its signature and calls it.
-- 2. Most events a producer sends are well-formed. The statement decides per
--    event, with cheap inline checks
-- that cannot raise (no PL/pgSQL call, no cast before its shape is known),
-- whether the event is *plainly valid*: an object, a UUID event_id, an
-- occurred_at of the form YYYY-MM-DDTHH:MM:SS[.ffffff]Z naming a real instant
-- inside the stream's window, each declared column's value of a kind whose cast
-- cannot fail (see sluice.column_plain_sql), and no more JSON bytes than the
-- stream allows. Such an event is staged with plain casts. Every other event
-- takes the careful path of 00012 unchanged (sluice.event_envelope_problem,
-- sluice.parse_event_time, sluice.column_value_problem), which decides its
-- reason or its values. "Plainly valid" implies the careful path would accept
-- the event with the same values, so results do not depend on the path
-- (test/sql-ingest.test.ts runs the shared corpus, which exercises both).

-- A SQL predicate over event `e`: true when the declared column's value can
-- be cast to its type without a check (absent or JSON null is NULL; the rest
-- go the careful way).
CREATE FUNCTION sluice.column_plain_sql(p_name text, p_type text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
  SELECT format('coalesce(jsonb_typeof(e->%L), ''null'')', p_name) || CASE
    WHEN p_type IN ('text', 'character varying') THEN ' IN (''null'', ''string'', ''number'', ''boolean'')'
    WHEN p_type = 'jsonb' THEN ' IS NOT NULL'
    WHEN p_type IN ('numeric') THEN ' IN (''null'', ''number'')'
    WHEN p_type = 'boolean' THEN ' IN (''null'', ''boolean'')'
    -- An integer of at most 4 / 9 / 18 digits fits smallint / integer / bigint whatever its sign.
    WHEN p_type IN ('smallint', 'integer', 'bigint') THEN format(
      ' = ''null'' OR (jsonb_typeof(e->%1$L) = ''number'' AND translate(ltrim(e->>%1$L, ''-''), ''0123456789'', '''') = '''''
      ' AND length(ltrim(e->>%1$L, ''-'')) BETWEEN 1 AND %2$s)',
      p_name, CASE p_type WHEN 'smallint' THEN 4 WHEN 'integer' THEN 9 ELSE 18 END)
    WHEN p_type = 'uuid' THEN format(
      ' = ''null'' OR (jsonb_typeof(e->%1$L) = ''string'' AND translate(e->>%1$L, ''0123456789abcdefABCDEF'', ''0000000000000000000000'')'
      ' = ''00000000-0000-0000-0000-000000000000'')', p_name)
    ELSE ' = ''null'''
  END
$$;

-- occurred_at as plain as it gets, as a SQL predicate over a text column
-- `ts` (the value when it is a JSON string, else NULL): YYYY-MM-DDTHH:MM:SS,
-- 0 to 6 fraction digits, 'Z', naming a real calendar date and time (year ≥ 1).
-- Never raises: the one cast (the year) follows the shape check inside CASE,
-- which orders evaluation.
CREATE FUNCTION sluice.plain_utc_time_sql() RETURNS text
LANGUAGE sql IMMUTABLE AS $$
  SELECT $s$CASE
    WHEN translate(ts, '0123456789', '9999999999') NOT IN (
      '9999-99-99T99:99:99Z', '9999-99-99T99:99:99.9Z', '9999-99-99T99:99:99.99Z', '9999-99-99T99:99:99.999Z',
      '9999-99-99T99:99:99.9999Z', '9999-99-99T99:99:99.99999Z', '9999-99-99T99:99:99.999999Z') THEN false
    WHEN substr(ts, 6, 2) NOT BETWEEN '01' AND '12' OR substr(ts, 12, 2) > '23' OR substr(ts, 15, 2) > '59'
      OR substr(ts, 18, 2) > '59' OR left(ts, 4) = '0000' THEN false
    WHEN substr(ts, 9, 2) BETWEEN '01' AND '28' THEN true
    ELSE substr(ts, 9, 2) <= CASE substr(ts, 6, 2)
      WHEN '02' THEN CASE WHEN left(ts, 4)::int % 4 = 0 AND (left(ts, 4)::int % 100 <> 0 OR left(ts, 4)::int % 400 = 0) THEN '29' ELSE '28' END
      WHEN '04' THEN '30' WHEN '06' THEN '30' WHEN '09' THEN '30' WHEN '11' THEN '30'
      ELSE '31' END
  END$s$
$$;


-- sluice.parse_event_time's result as a named row type: a CASE can return it, and its
-- fields can then be read from one call (an anonymous record cannot be taken apart there).
CREATE TYPE sluice.event_time AS (at timestamptz, problem text, epoch_ms numeric);
CREATE FUNCTION sluice.event_time_of(p_value jsonb) RETURNS sluice.event_time
LANGUAGE sql STABLE AS $$
  SELECT t.at, t.problem, t.epoch_ms FROM sluice.parse_event_time(p_value) AS t
$$;

CREATE SCHEMA sluice_ingest;
COMMENT ON SCHEMA sluice_ingest IS 'sluice: one generated ingest function per stream (called by sluice.ingest)';
-- Whoever may call sluice.ingest may call these: they run with the caller's rights (INSERT on
-- staging and sluice.rejects decides), so they grant nothing sluice.ingest does not.
GRANT USAGE ON SCHEMA sluice_ingest TO PUBLIC;

-- The CREATE FUNCTION text of stream p_stream's ingest function. Arguments:
-- $1 events (a jsonb array), $2 stream name, $3 require_event_id, $4/$5 the
-- window (months [lo, hi)), $6 max_event_bytes.
CREATE FUNCTION sluice.ingest_function_sql(p_stream text) RETURNS text
LANGUAGE plpgsql STABLE AS $$
DECLARE
  v_columns jsonb;
  v_column_problems text := 'NULL::text[]';
  v_columns_plain text := 'true';
  v_casts text := '';
  v_names text := '';
  v_known text[] := ARRAY['event_id', 'occurred_at'];
  v_cast_may_raise boolean := false;
  v_col jsonb;
  v_statement text;
BEGIN
  SELECT columns INTO v_columns FROM sluice.streams WHERE name = p_stream;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'sluice: unknown stream %', p_stream USING ERRCODE = 'undefined_object';
  END IF;
  FOR v_col IN SELECT c FROM jsonb_array_elements(v_columns) AS c LOOP
    -- The names and types go into generated code: only what sluice.create_stream accepts (a name
    -- never holds '$', so no dollar quote below can be closed early by it), whoever wrote the row.
    IF jsonb_typeof(v_col) IS DISTINCT FROM 'object' OR coalesce(v_col->>'name', '') !~ '^[a-z][a-z0-9_]{0,62}$'
       OR v_col->>'name' = ANY (sluice.reserved_column_names())
       OR NOT coalesce(v_col->>'type' = ANY (sluice.allowed_column_types()), false) THEN
      RAISE EXCEPTION 'sluice: stream % declares a column sluice.create_stream would refuse: %', p_stream, left(v_col::text, 100)
        USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- One column check per event (a subquery names its result instead of calling it twice).
    v_column_problems := format(
      'coalesce(%s, (SELECT ARRAY[''invalid_column_value'', %L || m] FROM (SELECT sluice.column_value_problem(e->%L, %L)) AS v(m) WHERE m IS NOT NULL))',
      v_column_problems, format('column %s (%s): ', v_col->>'name', v_col->>'type'), v_col->>'name', v_col->>'type');
    v_columns_plain := v_columns_plain || ' AND (' || sluice.column_plain_sql(v_col->>'name', v_col->>'type') || ')';
    v_casts := v_casts || sluice.column_cast_sql(v_col->>'name', v_col->>'type') || ', ';
    v_names := v_names || format('%I, ', v_col->>'name');
    v_known := v_known || (v_col->>'name');
    v_cast_may_raise := v_cast_may_raise OR (v_col->>'type') IN ('numeric', 'real', 'double precision');
  END LOOP;

  -- One statement: classify, reject, stage. OFFSET 0 keeps each level a subquery, so its columns
  -- are computed once per event, not once per reference.
  v_statement := format($f$
    WITH ev AS (
      SELECT e, plain_shape, CASE WHEN plain_shape THEN ts::timestamptz END AS plain_at
        FROM (SELECT e, coalesce(jsonb_typeof(e) = 'object'
                             AND jsonb_typeof(e->'event_id') = 'string'
                             AND translate(e->>'event_id', '0123456789abcdefABCDEF', '0000000000000000000000') = '00000000-0000-0000-0000-000000000000'
                             AND (%s) AND %s, false) AS plain_shape, ts
                FROM (SELECT e, CASE WHEN jsonb_typeof(e->'occurred_at') = 'string' THEN e->>'occurred_at' END AS ts
                        FROM jsonb_array_elements(events) AS e OFFSET 0) a
              OFFSET 0) b
    ),
    checked AS (
      SELECT e, CASE WHEN plain THEN plain_at ELSE t_at END AS at,
             CASE WHEN NOT plain THEN
               coalesce(sluice.event_envelope_problem(e, t_problem, t_epoch_ms, stream, require_event_id, lo, hi), %s,
                        CASE WHEN octet_length(e::text) > max_event_bytes THEN
                          ARRAY['event_too_large', format('event is %%s bytes of JSON; stream %%s allows %%s (max_event_bytes)', octet_length(e::text), stream, max_event_bytes)]
                        END)
             END AS problem
        -- The careful parse only for events that are not plainly valid (CASE: not called for the
        -- others), once each: a named row type, so its fields can be read from the one call.
        FROM (SELECT e, plain_at, plain, (t).at AS t_at, (t).problem AS t_problem, (t).epoch_ms AS t_epoch_ms
                FROM (SELECT e, plain_at, plain, CASE WHEN NOT plain THEN sluice.event_time_of(e->'occurred_at') END AS t
                        FROM (SELECT e, plain_at,
                                     coalesce(plain_at >= lo::timestamp AT TIME ZONE 'UTC' AND plain_at < hi::timestamp AT TIME ZONE 'UTC'
                                              AND octet_length(e::text) <= max_event_bytes, false) AS plain
                                FROM ev OFFSET 0) c
                      OFFSET 0) d
              OFFSET 0) f),
    rejected AS (
      INSERT INTO sluice.rejects (stream, source, reason, message, raw)
      SELECT stream, 'sql', problem[1], problem[2], e::text FROM checked WHERE problem IS NOT NULL
      RETURNING 1),
    staged AS (
      INSERT INTO sluice_staging.%I (event_id, occurred_at, %s payload)
      SELECT coalesce((e->>'event_id')::uuid, gen_random_uuid()), at, %s e - %L::text[]
        FROM checked WHERE problem IS NULL
      RETURNING 1)
    SELECT (SELECT count(*) FROM staged)::int, (SELECT count(*) FROM rejected)::int
  $f$, sluice.plain_utc_time_sql(), v_columns_plain, v_column_problems, p_stream, v_names, v_casts, v_known);

  -- The statement reads the arguments by name; `#variable_conflict use_variable` makes a name
  -- like `stream` mean the argument wherever a column of that name could also be meant.
  -- Streams declaring numeric/real/double columns keep 00012's fallback: a cast past those
  -- types' limits redoes the call event by event to find the culprit.
  RETURN format($fn$
CREATE OR REPLACE FUNCTION sluice_ingest.%I(
  events jsonb, stream text, require_event_id boolean, lo date, hi date, max_event_bytes int,
  OUT accepted int, OUT rejected int)
LANGUAGE plpgsql AS $body$
#variable_conflict use_variable
DECLARE
  all_events jsonb;
  one_event jsonb;
  one_accepted int;
  one_rejected int;
BEGIN
  %s
END
$body$
$fn$, p_stream,
    CASE WHEN NOT v_cast_may_raise THEN v_statement || ' INTO accepted, rejected;'
    ELSE format($b$
  BEGIN
    %1$s INTO accepted, rejected;
  EXCEPTION WHEN data_exception THEN
    accepted := 0;
    rejected := 0;
    all_events := events;
    FOR one_event IN SELECT x FROM jsonb_array_elements(all_events) AS x LOOP
      events := jsonb_build_array(one_event);
      BEGIN
        %1$s INTO one_accepted, one_rejected;
        accepted := accepted + one_accepted;
        rejected := rejected + one_rejected;
      EXCEPTION WHEN data_exception THEN
        INSERT INTO sluice.rejects (stream, source, reason, message, raw)
        VALUES (stream, 'sql', 'invalid_column_value', 'a declared column: ' || SQLERRM, one_event::text);
        rejected := rejected + 1;
      END;
    END LOOP;
  END;$b$, v_statement)
    END);
END
$$;

-- Keep each stream's ingest function in step with its row: (re)generated when
-- a stream is created or its columns change, dropped with the stream.
-- SECURITY DEFINER: a stream created by a role without CREATE on sluice_ingest (a member of
-- the worker role, 00014) still gets its function, owned by sluice's owner.
CREATE FUNCTION sluice.sync_ingest_function() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN
    EXECUTE format('DROP FUNCTION IF EXISTS sluice_ingest.%I(jsonb, text, boolean, date, date, int)', OLD.name);
    RETURN OLD;
  END IF;
  IF TG_OP = 'UPDATE' AND NEW.name <> OLD.name THEN
    EXECUTE format('DROP FUNCTION IF EXISTS sluice_ingest.%I(jsonb, text, boolean, date, date, int)', OLD.name);
  END IF;
  EXECUTE sluice.ingest_function_sql(NEW.name);
  RETURN NEW;
END
$$;
CREATE TRIGGER streams_ingest_function AFTER INSERT OR UPDATE OF name, columns OR DELETE ON sluice.streams
  FOR EACH ROW EXECUTE FUNCTION sluice.sync_ingest_function();

DO $$
DECLARE v_name text;
BEGIN
  FOR v_name IN SELECT name FROM sluice.streams ORDER BY name LOOP
    EXECUTE sluice.ingest_function_sql(v_name);
  END LOOP;
END
$$;

-- A stream's window [lo, hi) at p_now, from its row: the rule of 00008's
-- stream_window_at, now in one place for both (sluice.ingest has the row already;
-- reading it again cost as much as staging an event).
CREATE FUNCTION sluice.window_of(p_stream sluice.streams, p_now timestamptz, OUT lo date, OUT hi date)
LANGUAGE sql STABLE AS $$
  SELECT CASE WHEN p_stream.retention_months IS NULL THEN (m - make_interval(months => p_stream.max_past_months))::date
              ELSE greatest((m - make_interval(months => p_stream.max_past_months))::date,
                            (m - make_interval(months => p_stream.retention_months - 1))::date)
         END,
         (m + make_interval(months => p_stream.premake_months + 1))::date
    FROM (SELECT sluice.utc_month(p_now) AS m) AS this_month
$$;

CREATE OR REPLACE FUNCTION sluice.stream_window_at(p_stream text, p_now timestamptz, OUT lo date, OUT hi date)
LANGUAGE plpgsql STABLE AS $$
DECLARE
  v_stream sluice.streams;
BEGIN
  SELECT * INTO v_stream FROM sluice.streams WHERE name = p_stream;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'sluice: unknown stream %', p_stream USING ERRCODE = 'undefined_object';
  END IF;
  SELECT w.lo, w.hi INTO lo, hi FROM sluice.window_of(v_stream, p_now) AS w;
END
$$;

CREATE OR REPLACE FUNCTION sluice.ingest(p_stream text, p_events jsonb, OUT accepted int, OUT rejected int)
LANGUAGE plpgsql AS $$
DECLARE
  v_stream sluice.streams;
  v_lo date;
  v_hi date;
  v_events jsonb := CASE jsonb_typeof(p_events) WHEN 'object' THEN jsonb_build_array(p_events) ELSE p_events END;
BEGIN
  SELECT * INTO v_stream FROM sluice.streams WHERE name = p_stream;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'sluice: unknown stream %', p_stream USING ERRCODE = 'undefined_object';
  END IF;
  IF jsonb_typeof(v_events) IS DISTINCT FROM 'array' THEN
    RAISE EXCEPTION 'sluice.ingest: p_events must be a JSON array of events (or one event object)'
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  SELECT w.lo, w.hi INTO v_lo, v_hi FROM sluice.window_of(v_stream, now()) AS w;

  EXECUTE format('SELECT accepted, rejected FROM sluice_ingest.%I($1, $2, $3, $4, $5, $6)', v_stream.name)
     INTO accepted, rejected
    USING v_events, v_stream.name, v_stream.require_event_id, v_lo, v_hi, v_stream.max_event_bytes;

  IF accepted > 0 THEN
    PERFORM pg_notify('sluice_staged', p_stream);
  END IF;
END
$$;
