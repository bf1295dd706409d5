-- Recovery from a killed worker (issue 17):
--
-- * A registration whose worker has no session left on this database is dead
--   now, not after its stale window: kill -9 closes the worker's sockets and
--   Postgres ends its backends at once. Absence of sessions proves death only
--   for a worker that heartbeated since this server started: every session
--   ends in a Postgres restart, and a live worker needs a moment to reconnect.
-- * Each registration records the graphile-worker pool ids its worker locks
--   jobs under (graphile-worker picks them itself: locked_by = 'pool-<hex>').
--   A live worker releases a dead worker's jobs with
--   graphile_worker.force_unlock_workers(those ids), so they run again within
--   seconds instead of after graphile-worker's 4-hour lock timeout.
-- * A sentinel row in an UNLOGGED table tells whether crash recovery has reset
--   the unlogged tables (staging among them) since the sentinel was written.

ALTER TABLE sluice.workers ADD COLUMN job_lock_ids text[] NOT NULL DEFAULT '{}';
COMMENT ON COLUMN sluice.workers.job_lock_ids IS
  'graphile-worker locked_by values (worker pool ids) of this worker; force-unlocked once the worker is dead';

-- Sessions of worker p_id on this database: application_name sluice/<id>/<role>
-- (ids are at most 40 characters, so the name is never truncated).
CREATE FUNCTION sluice.worker_session_count(p_id text) RETURNS int
LANGUAGE sql STABLE AS $$
  SELECT count(*)::int FROM pg_stat_activity
   WHERE datname = current_database()
     AND left(application_name, length(p_id) + 8) = 'sluice/' || p_id || '/'
$$;

-- The one definition of a live registration, with the session evidence.
CREATE FUNCTION sluice.worker_is_live(p_id text, p_heartbeat_at timestamptz, p_stale_after_ms int, p_observer_stale_after_ms int)
RETURNS boolean
LANGUAGE sql STABLE AS $$
  SELECT sluice.worker_is_live(p_heartbeat_at, p_stale_after_ms, p_observer_stale_after_ms)
     AND (p_heartbeat_at < pg_postmaster_start_time() OR sluice.worker_session_count(p_id) > 0)
$$;

-- The sentinel: crash recovery empties every unlogged table (staging among
-- them), so a sentinel gone while its logged twin says it was armed means
-- staging was emptied by a crash (or a restore) since it was armed.
CREATE UNLOGGED TABLE sluice.crash_sentinel (
  id boolean PRIMARY KEY DEFAULT true CHECK (id),
  armed_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE sluice.crash_watch (
  id boolean PRIMARY KEY DEFAULT true CHECK (id),
  armed_at timestamptz NOT NULL
);
COMMENT ON TABLE sluice.crash_watch IS 'Logged twin of the unlogged sluice.crash_sentinel: when it was last armed';

CREATE TABLE sluice.staging_losses (
  id bigserial PRIMARY KEY,
  detected_at timestamptz NOT NULL DEFAULT now(),
  detected_by text NOT NULL,
  server_started_at timestamptz NOT NULL,
  -- when the sentinel that vanished had been armed: staged acks since then and
  -- not yet drained at the crash were lost
  armed_at timestamptz NOT NULL
);
COMMENT ON TABLE sluice.staging_losses IS
  'Crash recoveries that emptied UNLOGGED staging: events acknowledged as staged but not yet drained were lost there';

-- Arm the sentinel, or find it gone: returns true (and records the loss) when
-- staging was emptied since it was last armed. Called by workers at start and
-- after each heartbeat; the lock keeps concurrent callers to one record.
CREATE FUNCTION sluice.check_crash_sentinel(p_observer text) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
  v_armed timestamptz;
BEGIN
  IF EXISTS (SELECT 1 FROM sluice.crash_sentinel) THEN
    RETURN false;
  END IF;
  PERFORM pg_advisory_xact_lock(hashtext('sluice.crash_sentinel'));
  IF EXISTS (SELECT 1 FROM sluice.crash_sentinel) THEN
    RETURN false; -- armed again by the caller we waited for
  END IF;
  SELECT armed_at INTO v_armed FROM sluice.crash_watch;
  INSERT INTO sluice.crash_sentinel DEFAULT VALUES;
  INSERT INTO sluice.crash_watch (armed_at) VALUES (now())
    ON CONFLICT (id) DO UPDATE SET armed_at = excluded.armed_at;
  IF v_armed IS NULL THEN
    RETURN false; -- first arming
  END IF;
  INSERT INTO sluice.staging_losses (detected_by, server_started_at, armed_at)
  VALUES (p_observer, pg_postmaster_start_time(), v_armed);
  RETURN true;
END
$$;
