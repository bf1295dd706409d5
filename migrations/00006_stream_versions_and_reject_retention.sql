-- Stream definitions that follow changes, and a retention for rejects (issue 13, items 3 and 6).
--
-- * Every stream row carries a version drawn from one global sequence, set by a
--   trigger on every INSERT and every UPDATE that changes the row. Running
--   workers (and long-lived clients) poll the versions of the streams they have
--   loaded and reload a definition whose version moved. A global sequence means
--   a dropped and re-created stream never gets back a version it had before, so
--   "same name, same version" really means "same definition".
-- * sluice.rejects gets an index on received_at: the maintenance task prunes
--   rejects older than the retention in bounded chunks, oldest first.

CREATE SEQUENCE sluice.stream_versions AS bigint;
COMMENT ON SEQUENCE sluice.stream_versions IS 'Source of sluice.streams.version: never reused, also across drop and re-create';

ALTER TABLE sluice.streams ADD COLUMN version bigint NOT NULL DEFAULT nextval('sluice.stream_versions');
COMMENT ON COLUMN sluice.streams.version IS
  'Changes on every change of the row (trigger streams_version): workers reload a definition whose version moved';

CREATE FUNCTION sluice.next_stream_version() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  -- Whatever the statement set: a hand-written UPDATE cannot pin or reuse a version.
  NEW.version := nextval('sluice.stream_versions');
  RETURN NEW;
END
$$;

CREATE TRIGGER streams_version_on_insert BEFORE INSERT ON sluice.streams
  FOR EACH ROW EXECUTE FUNCTION sluice.next_stream_version();
-- A no-op UPDATE (same values) keeps the version: nothing to reload.
CREATE TRIGGER streams_version_on_update BEFORE UPDATE ON sluice.streams
  FOR EACH ROW WHEN (OLD IS DISTINCT FROM NEW) EXECUTE FUNCTION sluice.next_stream_version();

CREATE INDEX rejects_received_at_idx ON sluice.rejects (received_at);
