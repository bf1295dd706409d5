-- The durable acknowledgement's ledgers. Staging has no indexes (by design), so
-- "have this flush's rows left staging?" must not be answered by scanning it:
--
-- * sluice.staging_exits: every statement that deletes rows from staging (the
--   drain, its refused-row isolation, the missing-partition repair) records, in
--   the same transaction, how many rows of each flush transaction (the rows'
--   xmin) it took out. A flush of N rows has left staging once its exits sum to
--   N: an index lookup per waiting flush, whatever the size of staging.
--   UNLOGGED like staging itself: after a crash both are empty, and the ack
--   falls back to checking the durable table's keys.
-- * sluice.flushes: one row per transactional flush, written in the flush's own
--   transaction under an id the client chose, so a flush retried after a lost
--   COMMIT reply learns that its first attempt committed instead of writing
--   its rejects again.

CREATE UNLOGGED TABLE sluice.staging_exits (
  stream text NOT NULL,
  -- xmin of the rows taken out (the flush transaction's 32-bit id, as a number)
  xid bigint NOT NULL,
  rows int NOT NULL CHECK (rows > 0),
  at timestamptz NOT NULL DEFAULT now()
) WITH (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 10000);
CREATE INDEX staging_exits_stream_xid_idx ON sluice.staging_exits (stream, xid);
CREATE INDEX staging_exits_at_idx ON sluice.staging_exits USING brin (at);
COMMENT ON TABLE sluice.staging_exits IS
  'Rows taken out of staging per flush transaction (xmin), so a durable ack never scans staging; pruned after an hour';

CREATE TABLE sluice.flushes (
  id uuid PRIMARY KEY,
  stream text NOT NULL,
  xid bigint,
  rows int NOT NULL,
  rejected int NOT NULL,
  -- lines Postgres refused during the flush: [{"index": n, "message": "..."}]
  refused jsonb NOT NULL DEFAULT '[]'::jsonb,
  committed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX flushes_committed_at_idx ON sluice.flushes USING brin (committed_at);
COMMENT ON TABLE sluice.flushes IS
  'One row per transactional flush, keyed by a client-chosen id: a retried flush checks it before writing again; pruned after a day';

-- The partition repair's staging exits are recorded by its version in migration 00007.
