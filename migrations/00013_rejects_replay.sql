-- Replaying rejects (issue 17, "Rejects"): `sluice rejects replay` re-validates a
-- reject's raw input and stages it again, exactly once.
--
-- * replayed_at: set in the same transaction as the staging write, while the
--   replay holds the row FOR UPDATE (SKIP LOCKED): a crash rolls both back, a
--   second replay skips the locked row or, once committed, no longer selects it.
--   A replayed reject is kept (it is the record of what happened) until the
--   retention prunes it by received_at, like any other reject.
-- * A replay that fails again keeps the row a reject: reason and message are
--   updated in place to what the new attempt found, replay_attempts counts the
--   attempts, first_reason keeps the reason first recorded. raw is never changed
--   by sluice (an operator may fix it by hand with an UPDATE before replaying).
ALTER TABLE sluice.rejects
  ADD COLUMN replayed_at timestamptz,
  ADD COLUMN replayed_by text,
  ADD COLUMN replay_attempts int NOT NULL DEFAULT 0 CONSTRAINT rejects_replay_attempts_check CHECK (replay_attempts >= 0),
  ADD COLUMN last_replay_at timestamptz,
  ADD COLUMN first_reason text;

COMMENT ON COLUMN sluice.rejects.replayed_at IS
  'When `sluice rejects replay` staged this input again (same transaction as the staging write); NULL: not replayed';
COMMENT ON COLUMN sluice.rejects.replayed_by IS 'Who replayed it (cli/<worker id> of the replaying command)';
COMMENT ON COLUMN sluice.rejects.replay_attempts IS 'Replays that looked at this reject (successful or not)';
COMMENT ON COLUMN sluice.rejects.last_replay_at IS 'When the last replay attempt looked at this reject';
COMMENT ON COLUMN sluice.rejects.first_reason IS
  'The reason first recorded, kept when a failed replay updated reason/message in place; NULL: reason never changed';

-- Replay selects pending rejects by stream and reason in id order, in chunks;
-- `rejects list --pending` and the summary read the same rows. Partial: replayed
-- rows (the bulk, after a big replay) cost nothing here.
CREATE INDEX rejects_pending_idx ON sluice.rejects (stream, reason, id) WHERE replayed_at IS NULL;
