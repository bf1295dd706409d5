/**
 * Refreshing registered matviews: REFRESH MATERIALIZED VIEW CONCURRENTLY
 * (readers keep reading; plain only for the first, unpopulated refresh or with
 * allow_blocking), one at a time per view (advisory try-lock), under the
 * view's own statement_timeout, skipped when the sources' change counters
 * (sluice.matview_watermark: n_tup_ins + n_tup_upd + n_tup_del over the base
 * tables the view reads, through views and partitions) equal those of the last
 * refresh. The watermark is read before the refresh, so a write it misses
 * (pg_stat counters arrive within about a second) only causes one more refresh
 * later, never a skipped one. Failures back off exponentially (capped) and
 * show in `sluice matview list`; every attempt is a row in sluice.matview_runs.
 */
import type pg from 'pg';
import { DDL_LOCK_TIMEOUT, withTransaction } from '../db/transaction.js';
import { coerceError } from '../errors.js';
import type { Logger } from '../logger.js';
import { getMatview, matviewRelation, type MatviewRow } from './matview-registry.js';

const FAILURE_BACKOFF_CAP_S = 3600;
/** Run records kept per view. */
export const MATVIEW_RUNS_KEPT_DAYS = 7;

const TRY_LOCK = `SELECT pg_try_advisory_xact_lock(hashtext('sluice.matview:' || $1::text)) AS locked`;
const STATE = `
SELECT c.relispopulated AS populated, sluice.matview_watermark(c.oid) ::text AS watermark
  FROM pg_class c WHERE c.oid = to_regclass($1) AND c.relkind = 'm'`;
const SET_TIMEOUT = `SELECT set_config('statement_timeout', $1::text, true)`;
const RECORD_RUN = `
INSERT INTO sluice.matview_runs (name, started_at, duration_ms, status, mode, rows, watermark, error)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`;
const RECORD_SUCCESS = `
UPDATE sluice.matviews
   SET last_started_at = $2::timestamptz, last_duration_ms = $3::int, last_status = $4::text, last_error = NULL,
       last_rows = coalesce($5::bigint, last_rows), watermark = coalesce($6::bigint, watermark),
       last_refreshed_at = CASE WHEN $4::text = 'refreshed' THEN clock_timestamp() ELSE last_refreshed_at END,
       failures = 0, next_attempt_at = $2::timestamptz + make_interval(secs => every_s)
 WHERE name = $1`;
const RECORD_FAILURE = `
UPDATE sluice.matviews
   SET last_started_at = $2::timestamptz, last_duration_ms = $3::int, last_status = 'failed', last_error = $4::text, failures = failures + 1,
       next_attempt_at = clock_timestamp() + make_interval(secs => least($5::int, every_s * 2 ^ least(failures, 16))::int)
 WHERE name = $1`;
const DUE = `SELECT name FROM sluice.matviews WHERE enabled AND next_attempt_at <= now() ORDER BY next_attempt_at, name`;
const PRUNE_RUNS = `DELETE FROM sluice.matview_runs WHERE started_at < now() - make_interval(days => $1::int)`;

export type RefreshStatus = 'refreshed' | 'skipped' | 'failed' | 'busy';

export interface RefreshResult {
  readonly name: string;
  readonly status: RefreshStatus;
  readonly mode?: 'concurrently' | 'plain';
  readonly rows?: number;
  readonly durationMs: number;
  readonly error?: string;
}

/**
 * Refresh one view now (`force`: even when its sources are unchanged).
 * `busy`: another session is refreshing it (nothing recorded).
 */
export async function refreshMatview(client: pg.ClientBase, name: string, log: Logger, options: { force?: boolean } = {}): Promise<RefreshResult> {
  const view = await getMatview(client, name);
  const relation = matviewRelation(name);
  const started = new Date();
  let outcome: Omit<RefreshResult, 'name' | 'durationMs'> & { watermark?: string };
  try {
    outcome = await withTransaction(
      client,
      async (c) => {
        if (!(await c.query<{ locked: boolean }>(TRY_LOCK, [name])).rows[0]?.locked) return { status: 'busy' as const };
        const state = (await c.query<{ populated: boolean; watermark: string }>(STATE, [relation])).rows[0];
        if (!state) throw new Error(`materialized view ${relation} does not exist (dropped by hand?): re-create it or \`sluice matview drop ${name}\``);
        if (!options.force && state.populated && view.watermark !== null && state.watermark === view.watermark) {
          return { status: 'skipped' as const, watermark: state.watermark };
        }
        const mode = state.populated && !view.allow_blocking ? ('concurrently' as const) : ('plain' as const);
        await c.query(SET_TIMEOUT, [`${view.statement_timeout_ms}ms`]);
        await c.query(`REFRESH MATERIALIZED VIEW ${mode === 'concurrently' ? 'CONCURRENTLY ' : ''}${relation}`);
        return { status: 'refreshed' as const, mode, watermark: state.watermark };
      },
      { isolation: 'READ COMMITTED', lockTimeout: DDL_LOCK_TIMEOUT },
    );
    // Counted after the commit: REFRESH's lock on the view (ACCESS EXCLUSIVE for a plain one: readers wait)
    // is gone by then, so a count over a big view keeps nobody waiting. (REFRESH reports no row count.)
    if (outcome.status === 'refreshed') outcome = { ...outcome, rows: Number((await client.query<{ n: string }>(`SELECT count(*) AS n FROM ${relation}`)).rows[0]?.n ?? 0) };
    if (outcome.status === 'refreshed' || outcome.status === 'skipped') await record(client, view, started, { ...outcome, status: outcome.status });
  } catch (err) {
    const error = coerceError(err).message;
    const durationMs = Date.now() - started.getTime();
    await client.query(RECORD_FAILURE, [name, started, durationMs, error, FAILURE_BACKOFF_CAP_S]);
    await client.query(RECORD_RUN, [name, started, durationMs, 'failed', null, null, null, error]);
    log.warn({ matview: name, err: error, failures: view.failures + 1 }, 'matview: refresh failed; retrying with backoff');
    return { name, status: 'failed', durationMs, error };
  }
  const result: RefreshResult = { name, status: outcome.status, mode: outcome.mode, rows: outcome.rows, durationMs: Date.now() - started.getTime() };
  if (result.status !== 'busy') log.info({ matview: name, status: result.status, mode: result.mode, rows: result.rows, duration_ms: result.durationMs }, 'matview: refresh');
  return result;
}

async function record(
  db: pg.ClientBase,
  view: MatviewRow,
  started: Date,
  outcome: { status: 'refreshed' | 'skipped'; mode?: string; rows?: number; watermark?: string },
): Promise<void> {
  const durationMs = Date.now() - started.getTime();
  await db.query(RECORD_SUCCESS, [view.name, started, durationMs, outcome.status, outcome.rows ?? null, outcome.watermark ?? null]);
  await db.query(RECORD_RUN, [view.name, started, durationMs, outcome.status, outcome.mode ?? null, outcome.rows ?? null, outcome.watermark ?? null, null]);
}

/** The sweep: refresh every enabled view that is due, one after another; a failure does not stop the others. */
export async function refreshDueMatviews(client: pg.ClientBase, log: Logger, signal?: AbortSignal): Promise<RefreshResult[]> {
  const results: RefreshResult[] = [];
  for (const { name } of (await client.query<{ name: string }>(DUE)).rows) {
    if (signal?.aborted) break;
    results.push(await refreshMatview(client, name, log));
  }
  await client.query(PRUNE_RUNS, [MATVIEW_RUNS_KEPT_DAYS]);
  return results;
}
