-- Races between sessions (issue 12):
--
-- * Each worker registration records its own heartbeat interval and stale
--   window, and everyone judges a registration by its own window: a worker that
--   heartbeats every 20 s must not look dead to an observer configured for 3 s.
-- * sluice.ensure_partition survives losing the race to another creator. The
--   advisory lock serialises creators, but waiting for it does not refresh the
--   backend's catalog caches: to_regclass kept answering from a negative cache
--   entry made before the wait, and CREATE TABLE then failed with 42P07. Under
--   REPEATABLE READ a plain SELECT on pg_class/pg_inherits would not see the
--   other session's partition either (its snapshot predates the commit).

-- NULL: registered by a worker that predates these columns (a rolling upgrade);
-- such a row is judged by the observer's --stale-after-ms, as before.
ALTER TABLE sluice.workers
  ADD COLUMN heartbeat_ms int CHECK (heartbeat_ms > 0),
  ADD COLUMN stale_after_ms int CHECK (stale_after_ms > 0);
COMMENT ON COLUMN sluice.workers.heartbeat_ms IS 'How often this worker heartbeats (its --heartbeat-ms)';
COMMENT ON COLUMN sluice.workers.stale_after_ms IS
  'How long after its last heartbeat this worker counts as dead (its --stale-after-ms), whoever looks';

-- The one definition of a live registration, used by the budget check and by
-- status/budget reports.
CREATE FUNCTION sluice.worker_is_live(p_heartbeat_at timestamptz, p_stale_after_ms int, p_observer_stale_after_ms int)
RETURNS boolean
LANGUAGE sql STABLE AS $$
  SELECT p_heartbeat_at > now() - make_interval(secs => coalesce(p_stale_after_ms, p_observer_stale_after_ms) / 1000.0)
$$;

-- Is sluice_data.<p_name> a partition of sluice_data.<p_stream>? Answered from
-- the catalog caches and the catalog snapshot (pg_partition_root), not from the
-- transaction snapshot, so it also sees partitions committed since a
-- REPEATABLE READ transaction began, once invalidations have been taken in.
CREATE FUNCTION sluice.partition_is_attached(p_stream text, p_name text) RETURNS boolean
LANGUAGE sql STABLE AS $$
  SELECT coalesce(pg_partition_root(to_regclass(format('sluice_data.%I', p_name)))
                  = to_regclass(format('sluice_data.%I', p_stream)), false)
$$;

-- Create the month partition if missing. Returns true when this call created
-- it, false when it is already attached (created earlier, or by a session that
-- won the race). A table of that name that is not attached (detached by hand)
-- raises object_not_in_prerequisite_state: nothing can be created in its place.
-- CREATE ... LIKE + ATTACH takes only SHARE UPDATE EXCLUSIVE on the parent,
-- so drains keep inserting meanwhile; ATTACH builds the parent's indexes.
CREATE OR REPLACE FUNCTION sluice.ensure_partition(p_stream text, p_month date) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
  v_name text := sluice.partition_name(p_stream, date_trunc('month', p_month)::date);
  v_from text := to_char(date_trunc('month', p_month), 'YYYY-MM-DD') || ' 00:00:00+00';
  v_to text := to_char(date_trunc('month', p_month) + interval '1 month', 'YYYY-MM-DD') || ' 00:00:00+00';
BEGIN
  -- Fast path, no lock: a stale cache here only sends us down the slow path.
  IF sluice.partition_is_attached(p_stream, v_name) THEN
    RETURN false;
  END IF;
  PERFORM pg_advisory_xact_lock(hashtext('sluice.partition:' || p_stream));
  -- The lock ATTACH needs anyway, taken now: acquiring a relation lock makes the
  -- backend take in other sessions' catalog changes (an advisory lock does not),
  -- so the check below sees a partition committed while we waited.
  EXECUTE format('LOCK TABLE sluice_data.%I IN SHARE UPDATE EXCLUSIVE MODE', p_stream);
  IF sluice.partition_is_attached(p_stream, v_name) THEN
    RETURN false;
  END IF;
  BEGIN
    EXECUTE format('CREATE TABLE sluice_data.%I (LIKE sluice_data.%I INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE)',
                   v_name, p_stream);
  EXCEPTION WHEN duplicate_table THEN
    -- The lock was already ours before this call (so nothing was refreshed), or
    -- a session that skips the advisory lock made it: CREATE has looked afresh.
    IF sluice.partition_is_attached(p_stream, v_name) THEN
      RETURN false;
    END IF;
    RAISE EXCEPTION 'sluice: table sluice_data.% exists but is not attached to sluice_data.% (detached by hand?)', v_name, p_stream
      USING ERRCODE = 'object_not_in_prerequisite_state',
            HINT = format('Re-attach it (ALTER TABLE sluice_data.%I ATTACH PARTITION sluice_data.%I FOR VALUES FROM (%L) TO (%L)) or rename it.',
                          p_stream, v_name, v_from, v_to);
  END;
  EXECUTE format('ALTER TABLE sluice_data.%I ATTACH PARTITION sluice_data.%I FOR VALUES FROM (%L) TO (%L)',
                 p_stream, v_name, v_from, v_to);
  RETURN true;
END
$$;

-- Make sure every month from last month to premake_months ahead exists. A month
-- whose name is taken by a table that is not attached is skipped with a
-- warning, so it does not keep the stream's other months from being made.
CREATE OR REPLACE FUNCTION sluice.premake_partitions(p_stream text) RETURNS int
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
    BEGIN
      IF sluice.ensure_partition(p_stream, (v_this + make_interval(months => i))::date) THEN
        v_created := v_created + 1;
      END IF;
    EXCEPTION WHEN object_not_in_prerequisite_state THEN
      -- The condition name also matches the rest of class 55 (lock_not_available
      -- under lock_timeout, …): only ensure_partition's own 55000 is skipped.
      IF SQLSTATE <> '55000' THEN
        RAISE;
      END IF;
      RAISE WARNING 'sluice: premake skipped a month: %', SQLERRM;
    END;
  END LOOP;
  RETURN v_created;
END
$$;
