-- Least-privilege roles (issue 17): sluice.create_roles(prefix) makes three
-- NOLOGIN group roles that users GRANT to their login roles:
--
-- * <prefix>producer: stages events (sluice.ingest, the TypeScript Ingestor's
--   COPY) and enqueues sluice_ingest jobs through sluice.add_ingest_job. It
--   has no access to graphile_worker: add_job is SECURITY INVOKER and writes
--   (and RETURNs) graphile_worker._private_jobs, so the privileges it needs
--   would let a producer read every pending job's payload and enqueue any task.
--   The two SECURITY DEFINER functions below are its only way into the queue,
--   each for one task with a fixed shape.
-- * <prefix>reader: sluice status / sluice health (control tables, the
--   received_at column of staging, pg_monitor). No events.
-- * <prefix>worker: what `sluice worker --no-migrate` needs: graphile_worker's
--   tables (with a row-level security policy of its own: graphile-worker
--   enables RLS without policies on them). It OWNS the stream
--   relations (staging, the durable table and its partitions, the _all view,
--   matviews it refreshes): ATTACH/DETACH PARTITION, DROP, SET SCHEMA and
--   REFRESH MATERIALIZED VIEW are owner-only in Postgres. It does not own the
--   schemas, the control tables or graphile_worker's tables.
--
-- A stream created later (sluice stream create, or sluice.create_stream from
-- psql) is handed to the worker role at commit by a deferred trigger, and a
-- partition is always owned by its parent's owner (sluice.ensure_partition).

-- Which roles sluice.create_roles made last (the hand-over reads it).
CREATE TABLE sluice.roles (
  kind text PRIMARY KEY CHECK (kind IN ('producer', 'reader', 'worker')),
  role_name text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE sluice.roles IS 'The roles sluice.create_roles made (sluice roles create): new streams are handed to the worker role';

-- The producer's way to enqueue ingest jobs: one task, no job_key or queue
-- (a job key is global across tasks: a producer could otherwise replace a
-- drain job or a user's job). plpgsql, so it can be created before
-- graphile-worker's schema exists (sluice migrates first).
CREATE FUNCTION sluice.add_ingest_job(p_payload json, p_run_at timestamptz DEFAULT NULL, p_max_attempts int DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  RETURN (graphile_worker.add_job('sluice_ingest', p_payload, run_at => p_run_at, max_attempts => p_max_attempts)).id;
END
$$;
COMMENT ON FUNCTION sluice.add_ingest_job(json, timestamptz, int) IS
  'Enqueue one sluice_ingest job (graphile_worker.add_job for that task only); returns the job id. For roles without graphile_worker access.';

-- Wake a stream's drains (src/drain/drain-kicker.ts): one sluice_drain job per
-- slot, keyed sluice_drain:<stream>:<slot>, keeping a held job's run_at.
CREATE FUNCTION sluice.kick_drains(p_stream text, p_slots int) RETURNS int
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  v_jobs int;
BEGIN
  IF p_slots IS NULL OR p_slots NOT BETWEEN 0 AND 64 THEN
    RAISE EXCEPTION 'sluice.kick_drains: slots must be 0 to 64, got %', p_slots USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF NOT EXISTS (SELECT 1 FROM sluice.streams WHERE name = p_stream) THEN
    RETURN 0;
  END IF;
  SELECT count(*)::int INTO v_jobs FROM graphile_worker.add_jobs(ARRAY(
    SELECT ROW('sluice_drain', json_build_object('stream', p_stream, 'slot', s), NULL, NULL, 5,
               'sluice_drain:' || p_stream || ':' || s, NULL, NULL)::graphile_worker.job_spec
      FROM generate_series(0, p_slots - 1) AS s),
    true);
  RETURN v_jobs;
END
$$;
COMMENT ON FUNCTION sluice.kick_drains(text, int) IS
  'Enqueue the sluice_drain jobs of a stream (one per slot, job_key sluice_drain:<stream>:<slot>, run_at of a held job kept)';

REVOKE EXECUTE ON FUNCTION sluice.add_ingest_job(json, timestamptz, int) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION sluice.kick_drains(text, int) FROM PUBLIC;

-- A partition belongs to its parent's owner, whoever made it (an admin's
-- `sluice partitions`, a worker): the worker role must be able to detach and
-- drop every partition of the tables it owns. Otherwise as in 00005.
CREATE OR REPLACE FUNCTION sluice.ensure_partition(p_stream text, p_month date) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
  v_name text := sluice.partition_name(p_stream, date_trunc('month', p_month)::date);
  v_from text := to_char(date_trunc('month', p_month), 'YYYY-MM-DD') || ' 00:00:00+00';
  v_to text := to_char(date_trunc('month', p_month) + interval '1 month', 'YYYY-MM-DD') || ' 00:00:00+00';
  v_owner oid;
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
  SELECT relowner INTO v_owner FROM pg_class WHERE oid = format('sluice_data.%I', p_stream)::regclass;
  IF v_owner <> (SELECT relowner FROM pg_class WHERE oid = format('sluice_data.%I', v_name)::regclass) THEN
    EXECUTE format('ALTER TABLE sluice_data.%I OWNER TO %I', v_name, pg_get_userbyid(v_owner));
  END IF;
  EXECUTE format('ALTER TABLE sluice_data.%I ATTACH PARTITION sluice_data.%I FOR VALUES FROM (%L) TO (%L)',
                 p_stream, v_name, v_from, v_to);
  RETURN true;
END
$$;

-- Run one statement and note it (create_roles reports what it did). Invoker's
-- rights: it runs nothing its caller could not run directly.
CREATE FUNCTION sluice.roles_run(INOUT p_done text[], p_sql text)
LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE p_sql;
  p_done := p_done || p_sql;
END
$$;

-- Hand a stream's relations to the worker role and grant the producer and the
-- reader what they need on them. Run by create_roles for existing streams and,
-- at commit, by the trigger below for new ones. The caller must be able to SET
-- ROLE to the worker role (create_roles grants it to the role that ran it).
CREATE FUNCTION sluice.grant_stream_roles(p_stream text) RETURNS text[]
LANGUAGE plpgsql AS $$
DECLARE
  v_worker text := (SELECT role_name FROM sluice.roles WHERE kind = 'worker');
  v_producer text := (SELECT role_name FROM sluice.roles WHERE kind = 'producer');
  v_reader text := (SELECT role_name FROM sluice.roles WHERE kind = 'reader');
  v_part regclass;
  v_done text[] := '{}';
BEGIN
  IF v_worker IS NULL OR NOT EXISTS (SELECT 1 FROM sluice.streams WHERE name = p_stream) THEN
    RETURN v_done;
  END IF;
  IF to_regclass(format('sluice_staging.%I', p_stream)) IS NOT NULL THEN
    v_done := sluice.roles_run(v_done, format('ALTER TABLE sluice_staging.%I OWNER TO %I', p_stream, v_worker));
    v_done := sluice.roles_run(v_done, format('GRANT INSERT ON sluice_staging.%I TO %I', p_stream, v_producer));
    -- status and health count staged rows and their age; not the events.
    v_done := sluice.roles_run(v_done, format('GRANT SELECT (received_at) ON sluice_staging.%I TO %I', p_stream, v_reader));
  END IF;
  IF to_regclass(format('sluice_data.%I', p_stream)) IS NOT NULL THEN
    -- ALTER TABLE … OWNER does not recurse to partitions.
    FOR v_part IN SELECT relid FROM pg_partition_tree(format('sluice_data.%I', p_stream)::regclass) ORDER BY level LOOP
      v_done := sluice.roles_run(v_done, format('ALTER TABLE %s OWNER TO %I', v_part, v_worker));
    END LOOP;
  END IF;
  IF to_regclass(format('sluice_data.%I', p_stream || '_all')) IS NOT NULL THEN
    v_done := sluice.roles_run(v_done, format('ALTER VIEW sluice_data.%I OWNER TO %I', p_stream || '_all', v_worker));
  END IF;
  RETURN v_done;
END
$$;

-- Registered matviews are refreshed by the worker: REFRESH is owner-only.
CREATE FUNCTION sluice.grant_matview_roles(p_name text) RETURNS text[]
LANGUAGE plpgsql AS $$
DECLARE
  v_worker text := (SELECT role_name FROM sluice.roles WHERE kind = 'worker');
  v_done text[] := '{}';
BEGIN
  IF v_worker IS NULL OR to_regclass(format('sluice_views.%I', p_name)) IS NULL
     OR NOT EXISTS (SELECT 1 FROM sluice.matviews WHERE name = p_name) THEN
    RETURN v_done;
  END IF;
  RETURN sluice.roles_run(v_done, format('ALTER MATERIALIZED VIEW sluice_views.%I OWNER TO %I', p_name, v_worker));
END
$$;

-- At commit, after create_stream, its indexes and premake (one transaction in
-- sluice stream create), or after sluice matview add.
CREATE FUNCTION sluice.hand_over_to_roles() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  -- create_roles' lock: a stream committed while roles are being created waits for them and is
  -- handed over to them (create_roles cannot see it, and without the wait it would not see the roles).
  PERFORM pg_advisory_xact_lock(hashtext('sluice.create_roles'));
  IF TG_TABLE_NAME = 'streams' THEN
    PERFORM sluice.grant_stream_roles(NEW.name);
  ELSE
    PERFORM sluice.grant_matview_roles(NEW.name);
  END IF;
  RETURN NULL;
END
$$;
CREATE CONSTRAINT TRIGGER streams_hand_over AFTER INSERT ON sluice.streams
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION sluice.hand_over_to_roles();
CREATE CONSTRAINT TRIGGER matviews_hand_over AFTER INSERT ON sluice.matviews
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION sluice.hand_over_to_roles();

-- Create (or bring up to date) the three roles. Idempotent: an existing role is
-- kept and granted again; nothing is revoked. Returns one row per role with
-- whether it was created and the statements run for it.
CREATE FUNCTION sluice.create_roles(p_prefix text DEFAULT 'sluice_')
RETURNS TABLE (kind text, role_name text, created boolean, statements text[])
LANGUAGE plpgsql AS $$
DECLARE
  v_kinds text[] := ARRAY['producer', 'reader', 'worker'];
  v_kind text;
  v_role text;
  v_created boolean;
  v_done text[];
  v_worker text := p_prefix || 'worker';
  v_me text := current_user;
  v_table text;
  v_stream text;
  v_matview text;
BEGIN
  -- Ends with a letter, digit or _; 40 characters leave room for "producer".
  IF p_prefix IS NULL OR p_prefix !~ '^[a-z][a-z0-9_]{0,39}$' OR p_prefix ~ '^pg_' THEN
    RAISE EXCEPTION 'sluice: invalid role prefix %', quote_literal(coalesce(p_prefix, '<null>'))
      USING ERRCODE = 'invalid_name',
            HINT = 'Use 1-40 characters: a lowercase letter, then lowercase letters, digits or _ (not starting with pg_).';
  END IF;
  -- One set of roles at a time: a lock, so two concurrent runs do not both CREATE ROLE.
  PERFORM pg_advisory_xact_lock(hashtext('sluice.create_roles'));

  FOREACH v_kind IN ARRAY v_kinds LOOP
    v_role := p_prefix || v_kind;
    v_created := NOT EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname = v_role);
    v_done := '{}';
    IF v_created THEN
      v_done := sluice.roles_run(v_done, format('CREATE ROLE %I NOLOGIN', v_role));
    ELSIF EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname = v_role AND (r.rolsuper OR r.rolbypassrls)) THEN
      RAISE EXCEPTION 'sluice: role % exists and is a superuser or bypasses RLS: not a least-privilege role', v_role
        USING ERRCODE = 'invalid_role_specification', HINT = 'Choose another --prefix.';
    END IF;
    INSERT INTO sluice.roles (kind, role_name) VALUES (v_kind, v_role)
      ON CONFLICT ON CONSTRAINT roles_pkey DO UPDATE SET role_name = excluded.role_name, created_at = now();
    v_done := sluice.roles_run(v_done, format('GRANT USAGE ON SCHEMA sluice TO %I', v_role));
    v_done := sluice.roles_run(v_done, format('GRANT SELECT ON sluice.streams, sluice.migrations TO %I', v_role));

    IF v_kind = 'producer' THEN
      v_done := sluice.roles_run(v_done, format('GRANT USAGE ON SCHEMA sluice_staging TO %I', v_role));
      -- Rejects are written, never read (ON CONFLICT's arbiter needs its key columns).
      v_done := sluice.roles_run(v_done, format('GRANT INSERT, SELECT (stream, input_key) ON sluice.rejects TO %I', v_role));
      -- A retried flush looks up whether its first attempt committed.
      v_done := sluice.roles_run(v_done, format('GRANT SELECT, INSERT ON sluice.flushes TO %I', v_role));
      v_done := sluice.roles_run(v_done, format('GRANT EXECUTE ON FUNCTION sluice.add_ingest_job(json, timestamptz, int), sluice.kick_drains(text, int) TO %I', v_role));
      v_done := sluice.roles_run(v_done, format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA sluice_staging GRANT INSERT ON TABLES TO %I', v_me, v_role));

    ELSIF v_kind = 'reader' THEN
      IF NOT pg_has_role(v_role, 'pg_monitor', 'MEMBER') THEN
        v_done := sluice.roles_run(v_done, format('GRANT pg_monitor TO %I', v_role));
      END IF;
      -- sluice_data too: status resolves each durable table's name (to_regclass) for its partition estimate.
      v_done := sluice.roles_run(v_done, format('GRANT USAGE ON SCHEMA sluice_staging, sluice_data TO %I', v_role));
      FOREACH v_table IN ARRAY ARRAY['workers', 'drain_stats', 'staging_losses', 'health_reports', 'health_thresholds',
                                     'partition_runs', 'matviews', 'matview_runs', 'roles'] LOOP
        v_done := sluice.roles_run(v_done, format('GRANT SELECT ON sluice.%I TO %I', v_table, v_role));
      END LOOP;
      -- Counts and ages, not the rejected input.
      v_done := sluice.roles_run(v_done, format('GRANT SELECT (id, stream, received_at, source, reason) ON sluice.rejects TO %I', v_role));

    ELSE -- worker
      IF NOT pg_has_role(v_role, 'pg_monitor', 'MEMBER') THEN
        v_done := sluice.roles_run(v_done, format('GRANT pg_monitor TO %I', v_role));
      END IF;
      v_done := sluice.roles_run(v_done, format('GRANT USAGE ON SCHEMA graphile_worker TO %I', v_role));
      v_done := sluice.roles_run(v_done, format('GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA graphile_worker TO %I', v_role));
      v_done := sluice.roles_run(v_done, format('GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA graphile_worker TO %I', v_role));
      v_done := sluice.roles_run(v_done, format('GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA graphile_worker TO %I', v_role));
      -- graphile-worker enables row-level security (with no policy) on its
      -- private tables, so only their owner can use them: a policy for the
      -- worker role alone keeps them closed to every other role.
      FOR v_table IN SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                      WHERE n.nspname = 'graphile_worker' AND c.relkind = 'r' AND c.relrowsecurity ORDER BY c.relname LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_policies p WHERE p.schemaname = 'graphile_worker' AND p.tablename = v_table AND p.policyname = v_role) THEN
          v_done := sluice.roles_run(v_done, format('CREATE POLICY %I ON graphile_worker.%I TO %I USING (true) WITH CHECK (true)', v_role, v_table, v_role));
        END IF;
      END LOOP;
      -- Tables a later graphile-worker migration adds (run by this role).
      v_done := sluice.roles_run(v_done, format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA graphile_worker GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO %I', v_me, v_role));
      v_done := sluice.roles_run(v_done, format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA graphile_worker GRANT USAGE, SELECT ON SEQUENCES TO %I', v_me, v_role));
      v_done := sluice.roles_run(v_done, format('GRANT USAGE ON SCHEMA sluice_staging, sluice_views TO %I', v_role));
      -- Partitions are created in sluice_data and archived into sluice_archive.
      v_done := sluice.roles_run(v_done, format('GRANT USAGE, CREATE ON SCHEMA sluice_data, sluice_archive TO %I', v_role));
      v_done := sluice.roles_run(v_done, format('GRANT SELECT ON ALL TABLES IN SCHEMA sluice TO %I', v_role));
      FOREACH v_table IN ARRAY ARRAY['workers', 'drain_stats', 'rejects', 'staging_exits', 'flushes', 'partition_runs',
                                     'matviews', 'matview_runs', 'health_reports', 'crash_sentinel', 'crash_watch',
                                     'staging_losses'] LOOP
        v_done := sluice.roles_run(v_done, format('GRANT INSERT, UPDATE, DELETE ON sluice.%I TO %I', v_table, v_role));
      END LOOP;
      v_done := sluice.roles_run(v_done, format('GRANT USAGE ON ALL SEQUENCES IN SCHEMA sluice TO %I', v_role));
      v_done := sluice.roles_run(v_done, format('GRANT EXECUTE ON FUNCTION sluice.add_ingest_job(json, timestamptz, int), sluice.kick_drains(text, int) TO %I', v_role));
      -- Whoever creates streams must be able to hand them to the worker role.
      IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = v_me) AND NOT pg_has_role(v_me, v_role, 'MEMBER') THEN
        v_done := sluice.roles_run(v_done, format('GRANT %I TO %I', v_role, v_me));
      END IF;
    END IF;

    kind := v_kind;
    role_name := v_role;
    created := v_created;
    statements := v_done;
    RETURN NEXT;
  END LOOP;

  -- Existing streams and matviews go to the worker role (new ones: the triggers above).
  v_done := '{}';
  FOR v_stream IN SELECT s.name FROM sluice.streams s ORDER BY s.name LOOP
    v_done := v_done || sluice.grant_stream_roles(v_stream);
  END LOOP;
  FOR v_matview IN SELECT m.name FROM sluice.matviews m ORDER BY m.name LOOP
    v_done := v_done || sluice.grant_matview_roles(v_matview);
  END LOOP;
  kind := 'streams';
  role_name := v_worker;
  created := false;
  statements := v_done;
  RETURN NEXT;
END
$$;
COMMENT ON FUNCTION sluice.create_roles(text) IS
  'Create or update the NOLOGIN roles <prefix>producer, <prefix>reader, <prefix>worker (sluice roles create); idempotent';
REVOKE EXECUTE ON FUNCTION sluice.create_roles(text) FROM PUBLIC;
