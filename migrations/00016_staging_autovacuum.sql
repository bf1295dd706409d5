-- Staging tables are queues: every row is inserted once and deleted by the
-- drain, so dead tuples pile up at the ingest rate while live rows stay few.
-- Autovacuum's default trigger (50 + 20 % of reltuples) is tiny here, and its
-- cost throttling makes a visit long. Tuned as queue tables (the advice pgmq
-- and PGQ give): a fixed trigger of 10,000 dead tuples, no scale factor, and
-- no cost delay (UNLOGGED: a vacuum of staging writes no WAL). The health
-- check judges staging by whether autovacuum keeps visiting it (docs/health.md).

CREATE FUNCTION sluice.tune_staging_autovacuum(p_stream text) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
  IF to_regclass(format('sluice_staging.%I', p_stream)) IS NULL THEN
    RETURN false;
  END IF;
  -- SHARE UPDATE EXCLUSIVE: producers and drains keep going.
  EXECUTE format('ALTER TABLE sluice_staging.%I SET (autovacuum_vacuum_scale_factor = 0, '
                 'autovacuum_vacuum_threshold = 10000, autovacuum_vacuum_cost_delay = 0)', p_stream);
  RETURN true;
EXCEPTION WHEN insufficient_privilege THEN
  -- Owned by a role this one cannot act as (the worker role of sluice roles create): leave it, say so.
  RAISE WARNING 'sluice: could not tune autovacuum on sluice_staging.% (%): run as its owner: SELECT sluice.tune_staging_autovacuum(%)',
    p_stream, SQLERRM, quote_literal(p_stream);
  RETURN false;
END
$$;
COMMENT ON FUNCTION sluice.tune_staging_autovacuum(text) IS
  'Set queue-table autovacuum settings on a stream''s staging table (scale factor 0, threshold 10000, no cost delay)';

-- At commit of a new stream, once create_stream has made its tables. The name
-- sorts before streams_hand_over, so it runs while the creator still owns them.
CREATE FUNCTION sluice.streams_tune_staging() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM sluice.tune_staging_autovacuum(NEW.name);
  RETURN NULL;
END
$$;
CREATE CONSTRAINT TRIGGER streams_autovacuum_staging AFTER INSERT ON sluice.streams
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION sluice.streams_tune_staging();

SELECT sluice.tune_staging_autovacuum(name) FROM sluice.streams ORDER BY name;
