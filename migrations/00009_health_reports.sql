-- Health reports (issue 16): what `sluice_health_check` (crontab, every 5
-- minutes) found, kept --health-retention-days (default 30) and pruned by that
-- task; and threshold overrides a DBA sets with plain SQL.

CREATE TABLE sluice.health_reports (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  taken_at timestamptz NOT NULL DEFAULT now(),
  status text NOT NULL CHECK (status IN ('ok', 'warn', 'critical')),
  duration_ms int NOT NULL CHECK (duration_ms >= 0),
  -- [{check, target, severity, value, threshold, message, advice}], worst first;
  -- ok findings are summarised one per check so 30 days of reports stay small.
  findings jsonb NOT NULL CHECK (jsonb_typeof(findings) = 'array')
);
CREATE INDEX health_reports_taken_at_idx ON sluice.health_reports (taken_at);
COMMENT ON TABLE sluice.health_reports IS
  'sluice health reports: overall status and findings (vacuum, freeze, xmin horizon, connections, pipeline), one per run';

-- Only overrides: defaults live in src/health/thresholds.ts and docs/health.md.
-- An unknown name is reported by the next health check, not silently ignored.
CREATE TABLE sluice.health_thresholds (
  name text PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9_]{0,62}$'),
  value double precision NOT NULL CHECK (value >= 0),
  note text,
  set_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE sluice.health_thresholds IS
  'Overrides of sluice health thresholds (name → value); see docs/health.md for names and defaults';
