-- Count the loss where it can be counted (issue 17, defect 6). Crash recovery
-- empties UNLOGGED staging and resets the statistics with it, so what staging
-- held must be noted beforehand, in a LOGGED table: each sentinel check (every
-- worker heartbeat) records each stream's staged rows as the statistics see
-- them (n_live_tup; at most one write per 2 s, whoever checks). Finding the
-- sentinel gone, the check records those figures with the loss: an estimate
-- (rows staged or drained between the last look and the crash are not in it),
-- dated, per stream.
--
-- check_crash_sentinel becomes SECURITY DEFINER (it only ever records what it
-- finds, so anyone may call it): the worker role of `sluice roles create`
-- needs no grant on the new table. Its two helpers are not callable directly.

-- fillfactor 10: a few rows updated every couple of seconds. With pages kept
-- mostly empty, each access prunes the HOT chains, so dead tuples do not pile up
-- between autovacuum visits (69 dead per 3 live after 300 updates at the default
-- fillfactor, 9 at 10), which the health check would rightly call critical.
CREATE TABLE sluice.staging_watch (
  stream text PRIMARY KEY,
  staged_rows bigint NOT NULL,
  observed_at timestamptz NOT NULL
) WITH (fillfactor = 10);
COMMENT ON TABLE sluice.staging_watch IS
  'Rows staged per stream at the last sentinel check (logged: it outlives the crash that empties staging)';

ALTER TABLE sluice.staging_losses
  ADD COLUMN staged_estimate bigint,
  ADD COLUMN estimate_observed_at timestamptz,
  ADD COLUMN estimate_by_stream jsonb;
COMMENT ON COLUMN sluice.staging_losses.staged_estimate IS
  'Rows staging held at the last look before the crash (estimate_observed_at): about what was lost; NULL when never looked';

CREATE FUNCTION sluice.watch_staging() RETURNS void
LANGUAGE sql AS $$
  INSERT INTO sluice.staging_watch AS w (stream, staged_rows, observed_at)
  SELECT s.name, coalesce(st.n_live_tup, 0), now()
    FROM sluice.streams s
    LEFT JOIN pg_stat_all_tables st ON st.relid = to_regclass(format('sluice_staging.%I', s.name))
  ON CONFLICT (stream) DO UPDATE SET staged_rows = excluded.staged_rows, observed_at = excluded.observed_at
   WHERE w.observed_at < now() - interval '2 seconds';
  DELETE FROM sluice.staging_watch w WHERE NOT EXISTS (SELECT 1 FROM sluice.streams s WHERE s.name = w.stream);
$$;

CREATE FUNCTION sluice.record_staging_loss(p_observer text, p_armed_at timestamptz) RETURNS void
LANGUAGE sql AS $$
  INSERT INTO sluice.staging_losses (detected_by, server_started_at, armed_at, staged_estimate, estimate_observed_at, estimate_by_stream)
  SELECT p_observer, pg_postmaster_start_time(), p_armed_at,
         sum(w.staged_rows), max(w.observed_at), jsonb_object_agg(w.stream, w.staged_rows) FILTER (WHERE w.stream IS NOT NULL)
    FROM sluice.staging_watch w
   WHERE w.observed_at < pg_postmaster_start_time();
  -- Those rows are gone: the next look starts from what staging holds now.
  DELETE FROM sluice.staging_watch;
$$;

REVOKE EXECUTE ON FUNCTION sluice.watch_staging(), sluice.record_staging_loss(text, timestamptz) FROM PUBLIC;

CREATE OR REPLACE FUNCTION sluice.check_crash_sentinel(p_observer text) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  v_armed timestamptz;
BEGIN
  IF EXISTS (SELECT 1 FROM sluice.crash_sentinel) THEN
    PERFORM sluice.watch_staging();
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
    PERFORM sluice.watch_staging(); -- first arming: the first look too, not a heartbeat later
    RETURN false;
  END IF;
  PERFORM sluice.record_staging_loss(p_observer, v_armed);
  PERFORM sluice.watch_staging(); -- what staging holds now, after the crash
  RETURN true;
END
$$;
