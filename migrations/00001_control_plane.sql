-- sluice control plane: the stream registry, rejects, the worker budget
-- registry and drain counters. Data lives in sluice_staging / sluice_data.

CREATE SCHEMA IF NOT EXISTS sluice;
CREATE SCHEMA IF NOT EXISTS sluice_staging;
CREATE SCHEMA IF NOT EXISTS sluice_data;

COMMENT ON SCHEMA sluice IS 'sluice control plane (streams, rejects, workers, stats)';
COMMENT ON SCHEMA sluice_staging IS 'sluice staging: UNLOGGED, index-free tables that take the firehose';
COMMENT ON SCHEMA sluice_data IS 'sluice durable data: logged, indexed, partitioned by month';

CREATE TABLE sluice.streams (
  name text PRIMARY KEY
    CONSTRAINT streams_name_format CHECK (name ~ '^[a-z][a-z0-9_]{0,47}$' AND name !~ '_all$' AND name !~ '_p[0-9]{6}$'),
  -- declared columns, in table order: [{"name": "...", "type": "..."}]
  columns jsonb NOT NULL DEFAULT '[]'::jsonb CHECK (jsonb_typeof(columns) = 'array'),
  -- declared indexes as created: [{"name": "...", "columns": [...], "predicate": "..."}]
  indexes jsonb NOT NULL DEFAULT '[]'::jsonb CHECK (jsonb_typeof(indexes) = 'array'),
  staging_table text NOT NULL,
  durable_table text NOT NULL,
  premake_months int NOT NULL DEFAULT 3 CHECK (premake_months BETWEEN 1 AND 36),
  retention_months int CHECK (retention_months BETWEEN 1 AND 1200),
  retention_mode text NOT NULL DEFAULT 'detach' CHECK (retention_mode IN ('detach', 'drop')),
  -- how far back (in months) a late event may land; older ones are rejected
  max_past_months int NOT NULL DEFAULT 12 CHECK (max_past_months BETWEEN 0 AND 1200),
  drain_batch_rows int NOT NULL DEFAULT 10000 CHECK (drain_batch_rows BETWEEN 1 AND 1000000),
  max_event_bytes int NOT NULL DEFAULT 65536 CHECK (max_event_bytes BETWEEN 64 AND 268435456),
  require_event_id boolean NOT NULL DEFAULT true,
  created_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE sluice.streams IS 'One row per stream: its declared shape and its partition/drain settings';

CREATE TABLE sluice.rejects (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  stream text NOT NULL,
  received_at timestamptz NOT NULL DEFAULT now(),
  source text NOT NULL CHECK (source IN ('sql', 'http', 'file', 'client', 'drain')),
  reason text NOT NULL,
  message text NOT NULL,
  raw text NOT NULL
);
CREATE INDEX rejects_stream_received_at_idx ON sluice.rejects (stream, received_at);
COMMENT ON TABLE sluice.rejects IS 'Events sluice refused, with a machine-readable reason, a message and the raw input';

CREATE TABLE sluice.workers (
  id text PRIMARY KEY,
  host text NOT NULL,
  pid int NOT NULL,
  version text NOT NULL,
  started_at timestamptz NOT NULL DEFAULT now(),
  heartbeat_at timestamptz NOT NULL DEFAULT now(),
  budget int NOT NULL CHECK (budget > 0),
  -- the connection plan: {"pool": n, "flushers": n, "drainers": n, "total": n}
  plan jsonb NOT NULL,
  stats jsonb NOT NULL DEFAULT '{}'::jsonb
);
COMMENT ON TABLE sluice.workers IS 'Connection budget registry: one row per running worker; a stale heartbeat means dead';

CREATE TABLE sluice.drain_stats (
  stream text NOT NULL,
  -- 10-second buckets (date_bin): fine enough for "rows in the last minute"
  bucket timestamptz NOT NULL,
  drainer text NOT NULL,
  batches int NOT NULL DEFAULT 0,
  moved bigint NOT NULL DEFAULT 0,
  inserted bigint NOT NULL DEFAULT 0,
  max_lag_ms bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (stream, bucket, drainer)
);
COMMENT ON TABLE sluice.drain_stats IS 'Drain counters per 10-second bucket, one row per drainer so concurrent drainers never contend';
