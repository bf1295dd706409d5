-- A SQL front door without a job (issue 19): sluice.ingest(stream, events jsonb)
-- validates events like the other doors (the TypeScript encoder,
-- src/ingest/event-encoder.ts, is the reference; test/sql-ingest.test.ts runs a
-- shared corpus through both) and writes the good ones straight into staging,
-- in the caller's transaction: they become drainable only if the producer
-- commits (a transactional outbox). Refused events go to sluice.rejects with
-- source 'sql' in the same transaction.
--
-- Set-based: one statement classifies and writes the whole call. Every check
-- that decides a reason is made before any cast, so a bad value rejects its
-- event, not the call. Only numeric/real/double columns keep a cast that can
-- still raise at Postgres' limits (overflow, underflow); for streams declaring
-- those, the statement runs in one BEGIN/EXCEPTION block per call and, if a
-- cast raises, the call is redone event by event to find which (PG 16's
-- pg_input_is_valid would avoid that; PG 15 is supported).
--
-- Drains are kicked with pg_notify('sluice_staged', stream): one per call at
-- most (Postgres folds identical notifications within a transaction), sent
-- only at commit. The worker listens on graphile-worker's LISTEN connection
-- and kicks the stream's drains through its throttled DrainKicker; the minute
-- sweep drains anything a missed notification left.

-- occurred_at (and timestamptz columns): RFC 3339 with a zone, or epoch
-- milliseconds, as src/ingest/timestamps.ts parses them. Never raises: `problem`
-- says what is wrong. `at` is NULL for an epoch-ms value outside [p_lo, p_hi)
-- when p_lo/p_hi are given (Postgres' timestamp range is narrower than JS's).
CREATE FUNCTION sluice.parse_event_time(p_value jsonb, OUT at timestamptz, OUT problem text, OUT epoch_ms numeric)
LANGUAGE plpgsql STABLE AS $$
DECLARE
  v_text text;
  v_shape text;
  v_zone text;
  v_fraction int;
  y int; mo int; d int;
BEGIN
  CASE jsonb_typeof(p_value)
  WHEN 'number' THEN
    epoch_ms := trunc(p_value::numeric); -- new Date(ms) truncates a fraction of a millisecond
    IF abs(p_value::numeric) > 8.64e15 THEN
      problem := format('%s is not a valid epoch-milliseconds timestamp', left(p_value::text, 40));
    ELSIF epoch_ms BETWEEN -210866803200000 AND 9224318015999999 THEN -- inside Postgres' timestamptz range
      at := to_timestamp(0) + make_interval(secs => (epoch_ms / 1000)::double precision);
    END IF;
  WHEN 'string' THEN
    -- The RFC 3339 shape, checked without a regular expression (PG's regex with
    -- captures costs ~0.5 ms a call; this runs once per event): digits → 9.
    v_text := p_value #>> '{}';
    v_shape := translate(v_text, '0123456789', '9999999999');
    v_zone := substr(v_shape, 20);
    v_fraction := 0;
    IF left(v_zone, 1) = '.' THEN
      v_zone := ltrim(substr(v_zone, 2), '9');
      v_fraction := length(v_shape) - 20 - length(v_zone);
    END IF;
    IF left(v_shape, 19) NOT IN ('9999-99-99T99:99:99', '9999-99-99 99:99:99')
       OR v_fraction > 9 OR (v_fraction = 0 AND substr(v_shape, 20, 1) = '.')
       OR v_zone NOT IN ('Z', 'z', '+99:99', '-99:99', '+9999', '-9999') THEN
      problem := format('%s is not an RFC 3339 timestamp with a zone (e.g. 2026-11-25T14:03:00.123Z)', to_json(left(v_text, 64)));
      RETURN;
    END IF;
    y := substr(v_text, 1, 4)::int; mo := substr(v_text, 6, 2)::int; d := substr(v_text, 9, 2)::int;
    IF mo NOT BETWEEN 1 AND 12 OR y < 1 OR d < 1
       OR d > extract(day FROM make_date(y, mo, 1) + interval '1 month' - interval '1 day')
       OR substr(v_text, 12, 2)::int > 23 OR substr(v_text, 15, 2)::int > 59 OR substr(v_text, 18, 2)::int > 59 THEN
      problem := format('%s is not a valid calendar date and time', to_json(v_text));
      RETURN;
    END IF;
    IF length(v_zone) > 1 AND (substr(v_text, length(v_text) - length(v_zone) + 2, 2)::int > 15 OR right(v_text, 2)::int > 59) THEN
      problem := format('%s has an invalid UTC offset', to_json(v_text));
      RETURN;
    END IF;
    -- Postgres keeps microseconds and would round the rest (maybe into the next month): cut, as the encoder does.
    IF v_fraction > 6 THEN
      v_text := left(v_text, 26) || substr(v_text, 21 + v_fraction);
    END IF;
    IF v_zone = 'z' THEN
      v_text := left(v_text, -1) || 'Z';
    END IF;
    at := v_text::timestamptz;
    epoch_ms := floor(extract(epoch FROM at) * 1000);
  ELSE
    problem := format('expected an RFC 3339 string or epoch milliseconds, got %s', jsonb_typeof(p_value));
  END CASE;
END
$$;

-- Why an event's envelope cannot be taken, as {reason, message} (the reason
-- codes of REJECT_REASONS), or NULL. Checks in the encoder's order.
-- p_time: sluice.parse_event_time of its occurred_at (parsed once, in the caller).
CREATE FUNCTION sluice.event_envelope_problem(
  p_event jsonb, p_time_problem text, p_epoch_ms numeric, p_stream text, p_require_event_id boolean, p_lo date, p_hi date
) RETURNS text[]
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
  v_id jsonb;
BEGIN
  IF jsonb_typeof(p_event) IS DISTINCT FROM 'object' THEN
    RETURN ARRAY['not_an_object', format('an event must be a JSON object, got %s', coalesce(jsonb_typeof(p_event), 'nothing'))];
  END IF;
  v_id := p_event->'event_id';
  IF v_id IS NULL OR v_id = 'null'::jsonb THEN
    IF p_require_event_id THEN
      RETURN ARRAY['missing_event_id', format('event_id is required by stream %s (a UUID the producer reuses on retry)', p_stream)];
    END IF;
  ELSIF jsonb_typeof(v_id) <> 'string'
     OR translate(v_id #>> '{}', '0123456789abcdefABCDEF', '0000000000000000000000') <> '00000000-0000-0000-0000-000000000000' THEN
    RETURN ARRAY['invalid_event_id', format('event_id must be a UUID string, got %s', left(v_id::text, 40))];
  END IF;
  IF p_event->'occurred_at' IS NULL OR p_event->'occurred_at' = 'null'::jsonb THEN
    RETURN ARRAY['missing_occurred_at', 'occurred_at is required (RFC 3339 with a zone, or epoch milliseconds)'];
  END IF;
  IF p_time_problem IS NOT NULL THEN
    RETURN ARRAY['invalid_occurred_at', 'occurred_at: ' || p_time_problem];
  END IF;
  IF p_epoch_ms < extract(epoch FROM p_lo::timestamp) * 1000 OR p_epoch_ms >= extract(epoch FROM p_hi::timestamp) * 1000 THEN
    RETURN ARRAY['occurred_at_out_of_window',
                 format('occurred_at %s is outside stream %s''s window [%s, %s)', p_event->>'occurred_at', p_stream,
                        to_char(p_lo, 'YYYY-MM'), to_char(p_hi, 'YYYY-MM'))];
  END IF;
  RETURN NULL;
END
$$;

-- Why a declared column's JSON value cannot be cast to its type, as the
-- encoder in src/streams/column-types.ts decides it, or NULL. JSON null and
-- absent keys are NULL columns (never a problem).
CREATE FUNCTION sluice.column_value_problem(p_value jsonb, p_type text) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
  v_kind text := jsonb_typeof(p_value);
  v_text text;
  v_n numeric;
  v_min numeric;
  v_max numeric;
  m text[];
BEGIN
  IF v_kind IS NULL OR v_kind = 'null' THEN
    RETURN NULL;
  END IF;
  v_text := CASE WHEN v_kind = 'string' THEN p_value #>> '{}' ELSE p_value::text END;
  CASE p_type
  WHEN 'text', 'character varying' THEN
    IF v_kind NOT IN ('string', 'number', 'boolean') THEN RETURN format('%s is not text', left(v_text, 60)); END IF;
  WHEN 'smallint', 'integer', 'bigint' THEN
    v_min := CASE p_type WHEN 'smallint' THEN -32768 WHEN 'integer' THEN -2147483648 ELSE -9223372036854775808 END;
    v_max := CASE p_type WHEN 'smallint' THEN 32767 WHEN 'integer' THEN 2147483647 ELSE 9223372036854775807 END;
    IF v_kind = 'number' THEN
      v_n := p_value::numeric;
    ELSIF v_kind = 'string' AND v_text ~ '^[+-]?\d{1,20}$' THEN
      v_n := v_text::numeric;
    END IF;
    IF v_n IS NULL OR v_n <> trunc(v_n) OR v_n NOT BETWEEN v_min AND v_max THEN
      RETURN format('%s is not a %s (range %s to %s)', left(v_text, 60), p_type, v_min, v_max);
    END IF;
  WHEN 'numeric' THEN
    IF v_kind = 'number' THEN RETURN NULL; END IF; -- jsonb numbers are numerics already
    IF v_kind <> 'string' OR v_text !~ '^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$' THEN
      RETURN format('%s is not a number', left(v_text, 60));
    END IF;
    m := regexp_match(v_text, '[eE]([+-]?\d+)$');
    IF m IS NOT NULL AND length(ltrim(ltrim(m[1], '+-'), '0')) > 9 THEN
      RETURN format('%s: exponent out of range for Postgres numeric', left(v_text, 40));
    END IF;
  WHEN 'real', 'double precision' THEN
    IF NOT (v_kind = 'number' OR (v_kind = 'string' AND v_text ~ '^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$')) THEN
      RETURN format('%s is not a finite %s', left(v_text, 60), p_type);
    END IF;
  WHEN 'boolean' THEN
    IF v_kind = 'boolean' OR (v_kind = 'string' AND v_text IN ('true', 'false')) THEN RETURN NULL; END IF;
    RETURN format('%s is not a boolean', left(v_text, 60));
  WHEN 'uuid' THEN
    IF v_kind <> 'string' OR translate(v_text, '0123456789abcdefABCDEF', '0000000000000000000000') <> '00000000-0000-0000-0000-000000000000' THEN
      RETURN format('%s is not a UUID', left(v_text, 60));
    END IF;
  WHEN 'timestamp with time zone' THEN
    RETURN (sluice.parse_event_time(p_value)).problem;
  WHEN 'date' THEN
    IF v_kind <> 'string' THEN RETURN format('expected a YYYY-MM-DD string, got %s', v_kind); END IF;
    IF translate(v_text, '0123456789', '9999999999') <> '9999-99-99' THEN
      RETURN format('%s is not a YYYY-MM-DD date', to_json(left(v_text, 32)));
    END IF;
    m := ARRAY[left(v_text, 4), substr(v_text, 6, 2), right(v_text, 2)];
    IF m[1]::int < 1 OR m[2]::int NOT BETWEEN 1 AND 12 OR m[3]::int < 1
       OR m[3]::int > extract(day FROM make_date(m[1]::int, m[2]::int, 1) + interval '1 month' - interval '1 day') THEN
      RETURN format('%s is not a valid calendar date', to_json(v_text));
    END IF;
  WHEN 'jsonb' THEN
    RETURN NULL;
  ELSE
    RETURN format('sluice cannot check column type %s', p_type);
  END CASE;
  RETURN NULL;
END
$$;

-- The SQL expression casting event `e`'s value of a declared column (checked first).
CREATE FUNCTION sluice.column_cast_sql(p_name text, p_type text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE
    WHEN p_type = 'jsonb' THEN format('nullif(e->%L, ''null''::jsonb)', p_name)
    WHEN p_type IN ('smallint', 'integer', 'bigint') THEN format('(e->>%L)::numeric::%s', p_name, p_type::regtype)
    WHEN p_type = 'timestamp with time zone' THEN format('(sluice.parse_event_time(e->%L)).at', p_name)
    ELSE format('(e->>%L)::%s', p_name, p_type::regtype)
  END
$$;

CREATE FUNCTION sluice.ingest(p_stream text, p_events jsonb, OUT accepted int, OUT rejected int)
LANGUAGE plpgsql AS $$
DECLARE
  v_stream sluice.streams;
  v_lo date;
  v_hi date;
  v_events jsonb := CASE jsonb_typeof(p_events) WHEN 'object' THEN jsonb_build_array(p_events) ELSE p_events END;
  v_column_problems text := 'NULL::text[]';
  v_casts text := '';
  v_names text := '';
  v_known text[] := ARRAY['event_id', 'occurred_at'];
  v_cast_may_raise boolean := false;
  v_col jsonb;
  v_sql text;
  v_event jsonb;
  v_one record;
BEGIN
  SELECT * INTO v_stream FROM sluice.streams WHERE name = p_stream;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'sluice: unknown stream %', p_stream USING ERRCODE = 'undefined_object';
  END IF;
  IF jsonb_typeof(v_events) IS DISTINCT FROM 'array' THEN
    RAISE EXCEPTION 'sluice.ingest: p_events must be a JSON array of events (or one event object)'
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  SELECT w.lo, w.hi INTO v_lo, v_hi FROM sluice.stream_window(p_stream) w;

  FOR v_col IN SELECT c FROM jsonb_array_elements(v_stream.columns) AS c LOOP
    v_column_problems := format(
      'coalesce(%s, CASE WHEN sluice.column_value_problem(e->%L, %L) IS NOT NULL THEN ARRAY[''invalid_column_value'', %L || sluice.column_value_problem(e->%L, %L)] END)',
      v_column_problems, v_col->>'name', v_col->>'type',
      format('column %s (%s): ', v_col->>'name', v_col->>'type'), v_col->>'name', v_col->>'type');
    v_casts := v_casts || sluice.column_cast_sql(v_col->>'name', v_col->>'type') || ', ';
    v_names := v_names || format('%I, ', v_col->>'name');
    v_known := v_known || (v_col->>'name');
    v_cast_may_raise := v_cast_may_raise OR (v_col->>'type') IN ('numeric', 'real', 'double precision');
  END LOOP;

  -- One statement: classify, reject, stage. $1 events, $2 stream, $3 require_event_id, $4 lo, $5 hi,
  -- $6 max_event_bytes, $7 the keys that are not payload.
  v_sql := format($f$
    WITH checked AS (
      SELECT e, t.at, coalesce(sluice.event_envelope_problem(e, t.problem, t.epoch_ms, $2, $3, $4, $5), %s,
                         CASE WHEN octet_length(e::text) > $6 THEN
                           ARRAY['event_too_large', format('event is %%s bytes of JSON; stream %%s allows %%s (max_event_bytes)', octet_length(e::text), $2, $6)]
                         END) AS problem
        FROM jsonb_array_elements($1) AS e
        LEFT JOIN LATERAL sluice.parse_event_time(e->'occurred_at') AS t ON true),
    rejected AS (
      INSERT INTO sluice.rejects (stream, source, reason, message, raw)
      SELECT $2, 'sql', problem[1], problem[2], e::text FROM checked WHERE problem IS NOT NULL
      RETURNING 1),
    staged AS (
      INSERT INTO sluice_staging.%I (event_id, occurred_at, %s payload)
      SELECT coalesce((e->>'event_id')::uuid, gen_random_uuid()), at, %s e - $7
        FROM checked WHERE problem IS NULL
      RETURNING 1)
    SELECT (SELECT count(*) FROM staged)::int AS accepted, (SELECT count(*) FROM rejected)::int AS rejected
  $f$, v_column_problems, v_stream.name, v_names, v_casts);

  IF NOT v_cast_may_raise THEN
    EXECUTE v_sql INTO accepted, rejected
      USING v_events, p_stream, v_stream.require_event_id, v_lo, v_hi, v_stream.max_event_bytes, v_known;
  ELSE
    BEGIN
      EXECUTE v_sql INTO accepted, rejected
        USING v_events, p_stream, v_stream.require_event_id, v_lo, v_hi, v_stream.max_event_bytes, v_known;
    EXCEPTION WHEN data_exception THEN
      -- A value past a float's or numeric's limits: find it, one event at a time.
      accepted := 0;
      rejected := 0;
      FOR v_event IN SELECT e FROM jsonb_array_elements(v_events) AS e LOOP
        BEGIN
          EXECUTE v_sql INTO v_one
            USING jsonb_build_array(v_event), p_stream, v_stream.require_event_id, v_lo, v_hi, v_stream.max_event_bytes, v_known;
          accepted := accepted + v_one.accepted;
          rejected := rejected + v_one.rejected;
        EXCEPTION WHEN data_exception THEN
          INSERT INTO sluice.rejects (stream, source, reason, message, raw)
          VALUES (p_stream, 'sql', 'invalid_column_value', 'a declared column: ' || SQLERRM, v_event::text);
          rejected := rejected + 1;
        END;
      END LOOP;
    END;
  END IF;

  IF accepted > 0 THEN
    PERFORM pg_notify('sluice_staged', p_stream);
  END IF;
END
$$;

COMMENT ON FUNCTION sluice.ingest(text, jsonb) IS
  'Stage events (a JSON array, or one object) in the caller''s transaction, validated like every other door; '
  'refused ones go to sluice.rejects (source sql). Returns (accepted, rejected). Drainable once the caller commits.';
