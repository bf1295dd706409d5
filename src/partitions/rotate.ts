/**
 * Partition rotation of one stream, per the plan (plan.ts): finalize detaches
 * an interrupted run left pending, premake missing months, then retention:
 * staged rows of expiring months are drained (the caller's hook) or rejected
 * (reason past_retention), the partition is detached CONCURRENTLY, then
 * dropped, kept detached or moved to sluice_archive per retention_mode.
 *
 * One rotation per stream at a time (session advisory try-lock: a second
 * runner skips and records why). Every DDL step runs under lock_timeout with
 * its blockers reported (ddl-guard.ts) and a few retries with backoff; a step
 * still blocked is skipped and retried by the next run. Each run is recorded
 * in sluice.partition_runs.
 */
import type pg from 'pg';
import { withTransaction } from '../db/transaction.js';
import { coerceError } from '../errors.js';
import type { Logger } from '../logger.js';
import { backoffMs, sleep } from '../timing.js';
import { durableTable, quoteIdent, stagingTable } from '../streams/names.js';
import type { StreamDefinition } from '../streams/registry.js';
import { readPartitions } from './catalog.js';
import { LockBlocked, withLockGuard, type Blocker } from './ddl-guard.js';
import { monthLabel, monthStartDate } from './months.js';
import { planPartitions, type PartitionPlan, type PlannedPartition, type PlanSettings } from './plan.js';

/** Lock wait per DDL attempt in a scheduled rotation (milliseconds). */
export const ROTATION_LOCK_TIMEOUT_MS = 5_000;
/** Attempts per blocked step within one run (then the next run retries). */
export const ROTATION_ATTEMPTS = 3;
/** Rotation runs kept in sluice.partition_runs. */
export const PARTITION_RUNS_RETENTION_DAYS = 30;

const TRY_LOCK = `SELECT pg_try_advisory_lock(hashtext('sluice.rotate:' || $1::text)) AS locked`;
const UNLOCK = `SELECT pg_advisory_unlock(hashtext('sluice.rotate:' || $1::text))`;
const ENSURE_PARTITION = `SELECT sluice.ensure_partition($1::text, $2::date) AS created`;
const INSERT_RUN = `INSERT INTO sluice.partition_runs (stream, runner, clock_at) VALUES ($1, $2, $3) RETURNING id::text AS id`;
const FINISH_RUN = `
UPDATE sluice.partition_runs
   SET finished_at = clock_timestamp(), created = $2, detached = $3, finalized = $4, dropped = $5, archived = $6,
       rejected = $7, skipped = $8::jsonb, blockers = $9::jsonb, error = $10
 WHERE id = $1::bigint`;
const INSERT_SKIPPED_RUN = `
INSERT INTO sluice.partition_runs (stream, runner, clock_at, finished_at, skipped)
VALUES ($1, $2, $3, clock_timestamp(), $4::jsonb) RETURNING id::text AS id`;
const PRUNE_RUNS = `DELETE FROM sluice.partition_runs WHERE started_at < now() - make_interval(days => $1::int)`;
const ARCHIVED_EXISTS = `SELECT to_regclass(format('sluice_archive.%I', $1::text)) IS NOT NULL AS taken`;

/** Staged rows of a month about to be detached go to sluice.rejects (and the durable ack's ledger, as the drain's repair does). */
function rejectStagedMonthSql(stream: string): string {
  return `
WITH moved AS (DELETE FROM ${stagingTable(stream)} s WHERE s.occurred_at >= $1::timestamptz AND s.occurred_at < $2::timestamptz
               RETURNING row_to_json(s)::text AS raw, s.xmin::text::bigint AS staged_xid),
     rejected AS (INSERT INTO sluice.rejects (stream, source, reason, message, raw)
                  SELECT $3, 'drain', 'past_retention', $4, raw FROM moved),
     exits AS (INSERT INTO sluice.staging_exits (stream, xid, rows)
               SELECT $3, staged_xid, count(*) FROM moved GROUP BY staged_xid)
SELECT count(*)::int AS n FROM moved`;
}

const detachSql = (stream: string, part: string) =>
  `ALTER TABLE ${durableTable(stream)} DETACH PARTITION sluice_data.${quoteIdent(part)} CONCURRENTLY`;
const finalizeSql = (stream: string, part: string) =>
  `ALTER TABLE ${durableTable(stream)} DETACH PARTITION sluice_data.${quoteIdent(part)} FINALIZE`;
const dropSql = (part: string) => `DROP TABLE sluice_data.${quoteIdent(part)}`;
const archiveSql = (part: string) => `ALTER TABLE sluice_data.${quoteIdent(part)} SET SCHEMA sluice_archive`;

export interface SkippedStep {
  readonly step: string;
  readonly partition?: string;
  readonly reason: string;
}

export interface RotationReport {
  readonly stream: string;
  readonly runId: string | undefined;
  readonly clockAt: string;
  readonly dryRun: boolean;
  readonly plan: PartitionPlan | undefined;
  readonly created: string[];
  readonly detached: string[];
  readonly finalized: string[];
  readonly dropped: string[];
  readonly archived: string[];
  /** Staged rows of expiring months moved to sluice.rejects (reason past_retention). */
  rejected: number;
  readonly skipped: SkippedStep[];
  readonly blockers: Blocker[];
  error: string | undefined;
}

export interface RotateOptions {
  /** The clock the plan uses (tests and --now move it). */
  readonly now: Date;
  readonly runner: string;
  readonly log: Logger;
  readonly dryRun?: boolean;
  readonly lockTimeoutMs?: number;
  readonly attempts?: number;
  /** Drain the stream's staging before its expiring months go (detach/archive modes keep those rows). */
  readonly drainStream?: (stream: StreamDefinition) => Promise<void>;
  readonly signal?: AbortSignal;
}

export function planSettings(stream: StreamDefinition): PlanSettings {
  return {
    name: stream.name,
    premakeMonths: stream.premakeMonths,
    retentionMonths: stream.retentionMonths,
    retentionMode: stream.retentionMode,
    maxPastMonths: stream.maxPastMonths,
  };
}

/** The plan for a stream at `now`, from the catalog. */
export async function planStream(db: pg.Pool | pg.ClientBase, stream: StreamDefinition, now: Date): Promise<PartitionPlan> {
  return planPartitions(planSettings(stream), await readPartitions(db, stream.name), now);
}

/**
 * Rotate one stream. `client` is a connection outside any transaction (DETACH
 * CONCURRENTLY needs autocommit; the advisory lock is held by its session);
 * `observer` is another connection or a pool, used to see who blocks a step.
 */
export async function rotateStream(
  client: pg.ClientBase,
  observer: pg.Pool | pg.ClientBase,
  stream: StreamDefinition,
  options: RotateOptions,
): Promise<RotationReport> {
  const report: RotationReport = {
    stream: stream.name,
    runId: undefined,
    clockAt: options.now.toISOString(),
    dryRun: options.dryRun ?? false,
    plan: undefined,
    created: [],
    detached: [],
    finalized: [],
    dropped: [],
    archived: [],
    rejected: 0,
    skipped: [],
    blockers: [],
    error: undefined,
  };
  if (options.dryRun) {
    return { ...report, plan: await planStream(client, stream, options.now) };
  }
  const locked = (await client.query<{ locked: boolean }>(TRY_LOCK, [stream.name])).rows[0]?.locked;
  if (!locked) {
    report.skipped.push({ step: 'lock', reason: 'another rotation of this stream is running (advisory lock held)' });
    const { rows } = await client.query<{ id: string }>(INSERT_SKIPPED_RUN, [stream.name, options.runner, options.now, JSON.stringify(report.skipped)]);
    options.log.info({ stream: stream.name }, 'partitions: another worker is rotating this stream; skipped');
    return { ...report, runId: rows[0]?.id };
  }
  let runId: string | undefined;
  try {
    runId = (await client.query<{ id: string }>(INSERT_RUN, [stream.name, options.runner, options.now])).rows[0]?.id;
    await new Rotation(client, observer, stream, options, report).run();
  } catch (err) {
    report.error = coerceError(err).message;
    options.log.error({ stream: stream.name, err: report.error }, 'partitions: rotation failed; the next run retries');
  } finally {
    if (runId !== undefined) {
      await client
        .query(FINISH_RUN, [
          runId,
          report.created,
          report.detached,
          report.finalized,
          report.dropped,
          report.archived,
          report.rejected,
          JSON.stringify(report.skipped),
          JSON.stringify(report.blockers),
          report.error ?? null,
        ])
        .catch((err: Error) => options.log.warn({ stream: stream.name, err: err.message }, 'partitions: could not record the run'));
    }
    await client.query(UNLOCK, [stream.name]).catch(() => undefined);
  }
  const r = { ...report, runId };
  options.log.info(
    {
      stream: stream.name,
      clock_at: r.clockAt,
      created: r.created.length,
      detached: r.detached.length,
      finalized: r.finalized.length,
      dropped: r.dropped.length,
      archived: r.archived.length,
      rejected: r.rejected,
      skipped: r.skipped.length,
      blockers: r.blockers.length,
    },
    'partitions: rotation done',
  );
  return r;
}

class Rotation {
  private readonly lockTimeoutMs: number;
  private readonly attempts: number;

  constructor(
    private readonly client: pg.ClientBase,
    private readonly observer: pg.Pool | pg.ClientBase,
    private readonly stream: StreamDefinition,
    private readonly options: RotateOptions,
    private readonly report: RotationReport,
  ) {
    this.lockTimeoutMs = options.lockTimeoutMs ?? ROTATION_LOCK_TIMEOUT_MS;
    this.attempts = options.attempts ?? ROTATION_ATTEMPTS;
  }

  async run(): Promise<void> {
    const name = this.stream.name;
    let plan = await planStream(this.client, this.stream, this.options.now);
    // Interrupted detaches first: their partitions are invisible to new queries but still block re-planning.
    for (const part of plan.finalize) {
      if (await this.step('finalize', part, () => this.client.query(finalizeSql(name, part.name)))) this.report.finalized.push(part.name);
    }
    if (plan.finalize.length > 0) plan = await planStream(this.client, this.stream, this.options.now);
    (this.report as { plan: PartitionPlan }).plan = plan;

    for (const part of plan.premakeBlocked) {
      this.report.skipped.push({ step: 'premake', partition: part.name, reason: `table sluice_data.${part.name} exists but is not attached (detached by hand?)` });
    }
    for (const part of plan.premake) {
      const created = await this.step('premake', part, () =>
        withTransaction(this.client, async (c) => (await c.query<{ created: boolean }>(ENSURE_PARTITION, [name, monthStartDate(part.month)])).rows[0]?.created, {
          isolation: 'READ COMMITTED',
        }),
      );
      if (created) this.report.created.push(part.name);
    }

    if (plan.expire.length > 0 && plan.mode !== 'drop' && this.options.drainStream) {
      // detach/archive keep the partition's rows: let staged rows of those months reach it first.
      await this.options.drainStream(this.stream);
    }
    for (const part of plan.expire) {
      if (this.options.signal?.aborted) break;
      await this.rejectStaged(part);
      if (!(await this.detach(part))) continue;
      this.report.detached.push(part.name);
      await this.dispose(part);
    }
    for (const part of plan.dispose) {
      if (this.options.signal?.aborted) break;
      await this.dispose(part);
    }
  }

  /** Rows still staged for a month about to go: rejected with a reason, never lost silently. */
  private async rejectStaged(part: PlannedPartition): Promise<void> {
    const from = `${monthStartDate(part.month)}T00:00:00Z`;
    const to = `${monthStartDate(part.month + 1)}T00:00:00Z`;
    const message = `occurred_at month ${monthLabel(part.month)} is past the stream's retention (${this.stream.retentionMonths} months): its partition ${part.name} was being detached`;
    const { rows } = await this.client.query<{ n: number }>(rejectStagedMonthSql(this.stream.name), [from, to, this.stream.name, message]);
    const n = rows[0]?.n ?? 0;
    if (n > 0) {
      this.report.rejected += n;
      this.options.log.warn({ stream: this.stream.name, partition: part.name, rejected: n }, 'partitions: staged rows of an expiring month rejected (past_retention)');
    }
  }

  /** DETACH CONCURRENTLY; when a timed-out attempt left it pending, FINALIZE on the retry. */
  private async detach(part: PlannedPartition): Promise<boolean> {
    const done = await this.step('detach', part, async () => {
      const rows = await readPartitionState(this.client, this.stream.name, part.name);
      if (rows === 'detached') return true;
      if (rows === 'detach_pending') await this.client.query(finalizeSql(this.stream.name, part.name));
      else await this.client.query(detachSql(this.stream.name, part.name));
      return true;
    });
    return done ?? false;
  }

  private async dispose(part: PlannedPartition): Promise<void> {
    const mode = planSettings(this.stream).retentionMode;
    if (mode === 'drop') {
      if (await this.step('drop', part, () => this.client.query(dropSql(part.name)))) this.report.dropped.push(part.name);
    } else if (mode === 'archive') {
      const taken = (await this.client.query<{ taken: boolean }>(ARCHIVED_EXISTS, [part.name])).rows[0]?.taken;
      if (taken) {
        this.report.skipped.push({ step: 'archive', partition: part.name, reason: `sluice_archive.${part.name} already exists; left detached in sluice_data` });
        return;
      }
      if (await this.step('archive', part, () => this.client.query(archiveSql(part.name)))) this.report.archived.push(part.name);
    }
  }

  /**
   * One DDL step under lock_timeout, retried with backoff while blocked. Returns
   * the step's result, or undefined when it stayed blocked (recorded as skipped
   * with its blockers) — the next run retries it.
   */
  private async step<T>(step: string, part: PlannedPartition, fn: () => Promise<T>): Promise<T | undefined> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await withLockGuard(this.client, this.observer, `${step} ${part.name}`, this.lockTimeoutMs, fn);
      } catch (err) {
        if (!(err instanceof LockBlocked)) throw err;
        this.report.blockers.push(...err.blockers);
        this.options.log.warn(
          { stream: this.stream.name, step, partition: part.name, attempt, blockers: err.blockers },
          'partitions: step blocked by other sessions (lock_timeout); not queueing behind them',
        );
        if (attempt >= this.attempts || this.options.signal?.aborted) {
          const who = err.blockers.map((b) => `pid ${b.pid} (${b.application_name || 'no application_name'}, ${b.state ?? '?'}, since ${b.query_start ?? '?'})`);
          this.report.skipped.push({ step, partition: part.name, reason: `blocked after ${attempt} attempts${who.length ? ` by ${who.join('; ')}` : ''}; retried next run` });
          return undefined;
        }
        await sleep(backoffMs(attempt, 200, 5_000), this.options.signal);
      }
    }
  }
}

async function readPartitionState(client: pg.ClientBase, stream: string, part: string): Promise<'attached' | 'detach_pending' | 'detached'> {
  const found = (await readPartitions(client, stream)).find((p) => p.name === part && p.schema === 'sluice_data');
  if (!found || found.state === 'archived') return 'detached';
  return found.state;
}

export async function prunePartitionRuns(db: pg.Pool | pg.ClientBase, days = PARTITION_RUNS_RETENTION_DAYS): Promise<number> {
  return (await db.query(PRUNE_RUNS, [days])).rowCount ?? 0;
}

export interface RotateAllOptions extends RotateOptions {
  /** Only these streams (default: all). */
  readonly streams?: readonly string[];
}

/** Rotate every stream (or the named ones) in turn on one connection; prunes old run records. */
export async function rotateStreams(
  client: pg.ClientBase,
  observer: pg.Pool | pg.ClientBase,
  streams: readonly StreamDefinition[],
  options: RotateAllOptions,
): Promise<RotationReport[]> {
  const reports: RotationReport[] = [];
  for (const stream of streams) {
    if (options.streams && !options.streams.includes(stream.name)) continue;
    if (options.signal?.aborted) break;
    reports.push(await rotateStream(client, observer, stream, options));
  }
  // On the rotation's own connection: when it came from a small pool, the pool may have no other to give.
  if (!options.dryRun) await prunePartitionRuns(client);
  return reports;
}
