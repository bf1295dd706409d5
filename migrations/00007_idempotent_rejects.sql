-- Rejects are idempotent per input: a retried sluice_ingest job (its COPY
-- committed, its completion did not), or a file sent twice, records each bad
-- input once. input_key names the input (source, job id and position, or file
-- line and a digest of its text); a NULL key (an input without a stable identity)
-- is never deduplicated.
ALTER TABLE sluice.rejects ADD COLUMN input_key text;
CREATE UNIQUE INDEX rejects_stream_input_key_idx ON sluice.rejects (stream, input_key) WHERE input_key IS NOT NULL;
COMMENT ON COLUMN sluice.rejects.input_key IS
  'Identity of the rejected input (e.g. sql:job:<id>:<n>, file:<line>:<sha1>): the same input is recorded once';

-- The drain's repair asks sluice.ensure_partition (which re-checks under its
-- locks) instead of checking the catalog itself in separate statements: a
-- partition another drainer committed between two such checks once looked
-- "present but not attached", and that month's rows went to the rejects. Rows it
-- moves to the rejects record their exit from staging (the durable ack's ledger, 00004).
CREATE OR REPLACE FUNCTION sluice.repair_missing_partitions(p_stream text, OUT created int, OUT rejected bigint)
LANGUAGE plpgsql AS $$
DECLARE
  v_lo date;
  v_hi date;
  v_month date;
  v_reason text;
  v_count bigint;
BEGIN
  created := 0;
  rejected := 0;
  SELECT w.lo, w.hi INTO v_lo, v_hi FROM sluice.stream_window(p_stream) w;
  PERFORM pg_advisory_xact_lock(hashtext('sluice.repair:' || p_stream));
  FOR v_month IN EXECUTE format(
      'SELECT DISTINCT sluice.utc_month(occurred_at) FROM sluice_staging.%I WHERE occurred_at IS NOT NULL', p_stream)
  LOOP
    v_reason := NULL;
    IF v_month >= v_lo AND v_month < v_hi THEN
      BEGIN
        IF sluice.ensure_partition(p_stream, v_month) THEN
          created := created + 1;
        END IF;
      EXCEPTION WHEN object_not_in_prerequisite_state THEN
        -- A table of that name exists but is not attached (detached by hand).
        v_reason := format('table sluice_data.%s exists but is not attached (detached by hand?): re-attach or rename it to let month %s in',
                           sluice.partition_name(p_stream, v_month), to_char(v_month, 'YYYY-MM'));
      END;
    ELSE
      v_reason := format('occurred_at month %s is outside the stream window [%s, %s): no partition may be created for it',
                         to_char(v_month, 'YYYY-MM'), to_char(v_lo, 'YYYY-MM'), to_char(v_hi, 'YYYY-MM'));
    END IF;
    CONTINUE WHEN v_reason IS NULL;
    EXECUTE format(
      'WITH moved AS (DELETE FROM sluice_staging.%I s WHERE s.occurred_at >= $1 AND s.occurred_at < $2
                      RETURNING row_to_json(s)::text AS raw, s.xmin::text::bigint AS staged_xid),
            rejected AS (INSERT INTO sluice.rejects (stream, source, reason, message, raw)
                         SELECT $3, ''drain'', ''no_partition'', $4, raw FROM moved),
            exits AS (INSERT INTO sluice.staging_exits (stream, xid, rows)
                      SELECT $3, staged_xid, count(*) FROM moved GROUP BY staged_xid)
       SELECT count(*) FROM moved', p_stream)
    INTO v_count
    USING (to_char(v_month, 'YYYY-MM-DD') || ' 00:00:00+00')::timestamptz,
          (to_char(v_month + interval '1 month', 'YYYY-MM-DD') || ' 00:00:00+00')::timestamptz,
          p_stream,
          v_reason;
    rejected := rejected + v_count;
  END LOOP;
END
$$;
