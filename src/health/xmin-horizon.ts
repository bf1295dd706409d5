/**
 * xmin horizon holders: what keeps vacuum from removing dead tuples or
 * advancing relfrozenxid, each named by type with its age: long transactions,
 * sessions idle in transaction, prepared transactions, replication slots
 * (xmin, catalog_xmin, inactive, retained WAL) and standbys with
 * hot_standby_feedback. Sessions are those of this database: since PG14 other
 * databases' sessions do not hold this database's horizon.
 */
import { count, duration, grade, worst, type Finding } from './finding.js';
import { summaryFinding, type HealthCheck } from './context.js';

const SESSIONS = `
SELECT pid, usename::text, application_name, client_addr::text AS client_addr, state,
       extract(epoch FROM now() - xact_start)::float8 AS xact_age_s,
       extract(epoch FROM now() - state_change)::float8 AS state_age_s,
       age(backend_xmin)::float8 AS xmin_age, age(backend_xid)::float8 AS xid_age,
       left(query, 120) AS query
  FROM pg_stat_activity
 WHERE pid <> pg_backend_pid() AND datname = current_database()
   AND backend_type = 'client backend' AND xact_start IS NOT NULL`;

const PREPARED = `
SELECT gid, owner::text, database::text, age(transaction)::float8 AS xid_age,
       extract(epoch FROM now() - prepared)::float8 AS age_s
  FROM pg_prepared_xacts ORDER BY prepared`;

// pg_current_wal_lsn() fails on a standby; there the receive position stands in.
const SLOTS = `
SELECT slot_name::text, slot_type, database::text, active,
       age(xmin)::float8 AS xmin_age, age(catalog_xmin)::float8 AS catalog_xmin_age,
       pg_wal_lsn_diff(CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn() ELSE pg_current_wal_lsn() END,
                       restart_lsn)::float8 AS retained_bytes,
       wal_status
  FROM pg_replication_slots ORDER BY slot_name`;

const STANDBYS = `
SELECT pid, application_name, client_addr::text AS client_addr, state, age(backend_xmin)::float8 AS xmin_age
  FROM pg_stat_replication WHERE backend_xmin IS NOT NULL`;

interface SessionRow {
  pid: number;
  usename: string | null;
  application_name: string;
  client_addr: string | null;
  state: string | null;
  xact_age_s: number;
  state_age_s: number | null;
  xmin_age: number | null;
  xid_age: number | null;
  query: string | null;
}

function holds(r: { xmin_age: number | null; xid_age: number | null }): string {
  const parts = [];
  if (r.xid_age !== null) parts.push(`its xid is ${count(r.xid_age)} transactions old`);
  if (r.xmin_age !== null) parts.push(`its xmin is ${count(r.xmin_age)} transactions old`);
  return parts.length > 0 ? `holds the xmin horizon (${parts.join(', ')})` : 'holds no xmin right now (but its locks and snapshot-to-be)';
}

function who(r: SessionRow): string {
  return `user ${r.usename ?? '?'}, application_name '${r.application_name}'${r.client_addr ? `, from ${r.client_addr}` : ''}`;
}

export const xminHorizonCheck: HealthCheck = {
  name: 'xmin_horizon',
  async run(ctx) {
    const th = ctx.thresholds;
    const findings: Finding[] = [];

    const sessions = await ctx.db.query<SessionRow>(SESSIONS);
    for (const r of sessions.rows) {
      const idle = r.state?.startsWith('idle in transaction') ?? false;
      if (idle) {
        const age = r.state_age_s ?? 0;
        const severity = grade(age, th.idle_xact_warn_s, th.idle_xact_critical_s);
        if (severity === 'ok') continue;
        findings.push({
          check: 'xmin_horizon.idle_in_transaction',
          target: `session pid ${r.pid}`,
          severity,
          value: Math.round(age),
          threshold: th.idle_xact_warn_s,
          message: `idle in transaction for ${duration(age)} (transaction open ${duration(r.xact_age_s)}; ${who(r)}); ${holds(r)}; last statement: ${r.query ?? '?'}`,
          advice: `fix the client to commit or roll back; SELECT pg_terminate_backend(${r.pid}); set idle_in_transaction_session_timeout`,
        });
      } else {
        const severity = grade(r.xact_age_s, th.long_xact_warn_s, th.long_xact_critical_s);
        if (severity === 'ok') continue;
        findings.push({
          check: 'xmin_horizon.long_transaction',
          target: `session pid ${r.pid}`,
          severity,
          value: Math.round(r.xact_age_s),
          threshold: th.long_xact_warn_s,
          message: `transaction open for ${duration(r.xact_age_s)} (${r.state ?? '?'}; ${who(r)}); ${holds(r)}; statement: ${r.query ?? '?'}`,
          advice: `SELECT pg_cancel_backend(${r.pid}) (or pg_terminate_backend); bound it with statement_timeout / transaction_timeout (PG17+)`,
        });
      }
    }

    const prepared = await ctx.db.query<{ gid: string; owner: string; database: string; xid_age: number; age_s: number }>(PREPARED);
    for (const p of prepared.rows) {
      const severity = grade(p.age_s, th.prepared_xact_warn_s, th.prepared_xact_critical_s);
      if (severity === 'ok') continue;
      findings.push({
        check: 'xmin_horizon.prepared_transaction',
        target: `prepared transaction '${p.gid}'`,
        severity,
        value: Math.round(p.age_s),
        threshold: th.prepared_xact_warn_s,
        message: `prepared transaction '${p.gid}' (database ${p.database}, owner ${p.owner}) prepared ${duration(p.age_s)} ago holds the xmin horizon (xid ${count(p.xid_age)} transactions old) and its locks until resolved`,
        advice: `have its transaction manager resolve it, or by hand in database ${p.database}: COMMIT PREPARED '${p.gid}' / ROLLBACK PREPARED '${p.gid}'`,
      });
    }

    const slots = await ctx.db.query<{
      slot_name: string;
      slot_type: string;
      database: string | null;
      active: boolean;
      xmin_age: number | null;
      catalog_xmin_age: number | null;
      retained_bytes: number | null;
      wal_status: string | null;
    }>(SLOTS);
    for (const s of slots.rows) {
      const retainedMb = (s.retained_bytes ?? 0) / (1024 * 1024);
      const xminAge = Math.max(s.xmin_age ?? 0, s.catalog_xmin_age ?? 0);
      const severity = worst([
        s.active ? 'ok' : 'critical', // pgmonitor PGReplicationSlotsInactive
        grade(retainedMb, th.slot_retained_warn_mb, th.slot_retained_critical_mb),
        grade(xminAge, th.horizon_xid_age_warn, th.horizon_xid_age_critical),
      ]);
      const horizon = [
        s.xmin_age !== null ? `xmin ${count(s.xmin_age)} transactions old` : undefined,
        s.catalog_xmin_age !== null ? `catalog_xmin ${count(s.catalog_xmin_age)} transactions old` : undefined,
      ].filter(Boolean);
      findings.push({
        check: 'xmin_horizon.replication_slot',
        target: `slot ${s.slot_name}`,
        severity,
        value: xminAge,
        threshold: th.horizon_xid_age_warn,
        message:
          `${s.slot_type} replication slot ${s.slot_name}${s.database ? ` (database ${s.database})` : ''} is ${s.active ? 'active' : 'INACTIVE'}, ` +
          `retains ${retainedMb.toFixed(1)} MB of WAL (wal_status ${s.wal_status ?? '?'})` +
          (horizon.length > 0 ? ` and holds the horizon: ${horizon.join(', ')}` : ''),
        advice: s.active
          ? 'check the consumer keeps up (pg_stat_replication / its subscriber)'
          : `reconnect its consumer, or if it is abandoned: SELECT pg_drop_replication_slot('${s.slot_name}'); set max_slot_wal_keep_size`,
      });
    }

    const standbys = await ctx.db.query<{ pid: number; application_name: string; client_addr: string | null; state: string; xmin_age: number }>(STANDBYS);
    for (const r of standbys.rows) {
      const severity = grade(r.xmin_age, th.horizon_xid_age_warn, th.horizon_xid_age_critical);
      findings.push({
        check: 'xmin_horizon.standby_feedback',
        target: `standby ${r.application_name || r.client_addr || `pid ${r.pid}`}`,
        severity,
        value: r.xmin_age,
        threshold: th.horizon_xid_age_warn,
        message: `standby '${r.application_name}'${r.client_addr ? ` at ${r.client_addr}` : ''} (${r.state}) sends hot_standby_feedback: its xmin is ${count(r.xmin_age)} transactions old`,
        advice: 'look for long queries on that standby; consider max_standby_streaming_delay instead of hot_standby_feedback',
      });
    }

    if (!findings.some((f) => f.severity !== 'ok')) {
      findings.push(summaryFinding('xmin_horizon', 'database', `no xmin horizon holder over its threshold (${sessions.rows.length} open transaction(s) in this database)`));
    }
    return findings;
  },
};
