/**
 * `sluice demo`: the whole pipeline on one screen. Migrate, start a worker,
 * ingest generated events (1% re-sends, a few invalid ones) through the
 * TypeScript Ingestor and a few through SQL add_job, wait until everything is
 * durable, then report what happened — and check it: the exit code is
 * non-zero when a count does not add up.
 */
import { sluiceTaskList } from '../../tasks/index.js';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import type { SluiceConfig } from '../config.js';
import type { Logger } from '../logger.js';
import { applicationName } from '../db/connections.js';
import { planConnections } from '../db/budget.js';
import { migrateDatabase } from '../db/migrate.js';
import { ConnectionSampler } from '../db/connection-sampler.js';
import { sleep } from '../timing.js';
import { createIngestor } from '../ingest/create-ingestor.js';
import { runWorker } from '../worker/run-worker.js';
import { generateEvents } from '../workload/event-generator.js';

export interface DemoOptions {
  readonly config: SluiceConfig;
  readonly connectionString: string;
  readonly log: Logger;
  readonly events: number;
  readonly signal?: AbortSignal;
  readonly onPhase?: (phase: string) => void;
  readonly timeoutMs?: number;
}

export interface DemoReport {
  readonly runId: string;
  readonly generated: number;
  readonly unique: number;
  readonly resends: number;
  readonly invalidSent: number;
  readonly sqlJobs: number;
  readonly sqlEvents: number;
  readonly stagedMs: number;
  readonly durableMs: number;
  readonly durableRows: number;
  readonly expectedDurable: number;
  readonly duplicatesCollapsed: number;
  readonly rejects: Array<{ reason: string; count: number; example: string }>;
  readonly peakConnections: number;
  readonly budget: number;
  readonly plan: ReturnType<typeof planConnections>;
  readonly stagingLeft: number;
  readonly ok: boolean;
  readonly problems: string[];
}

const STREAM = 'events';
const SQL_JOBS = 10;
const SQL_EVENTS_PER_JOB = 10;

/** Inputs sluice must refuse, one per validation rule, each with its expected reason. */
function invalidEvents(runId: string, now: number): Array<{ event: unknown; reason: string }> {
  const id = () => '00000000-0000-4000-8000-' + randomBytes(6).toString('hex');
  const at = new Date(now).toISOString();
  return [
    { event: ['not', 'an', 'object'], reason: 'not_an_object' },
    { event: { occurred_at: at, demo_run: runId }, reason: 'missing_event_id' },
    { event: { event_id: 'not-a-uuid', occurred_at: at, demo_run: runId }, reason: 'invalid_event_id' },
    { event: { event_id: id(), demo_run: runId }, reason: 'missing_occurred_at' },
    { event: { event_id: id(), occurred_at: 'yesterday at noon', demo_run: runId }, reason: 'invalid_occurred_at' },
    { event: { event_id: id(), occurred_at: '1999-12-31T23:59:59Z', demo_run: runId }, reason: 'occurred_at_out_of_window' },
    { event: { event_id: id(), occurred_at: at, demo_run: runId, note: 'NUL \u0000 inside' }, reason: 'invalid_payload' },
    { event: { event_id: id(), occurred_at: at, demo_run: runId, blob: 'x'.repeat(70_000) }, reason: 'event_too_large' },
  ];
}

export async function runDemo(options: DemoOptions): Promise<DemoReport> {
  const { log, connectionString } = options;
  const runId = randomBytes(3).toString('hex');
  const config = { ...options.config, workerId: `demo-${runId}` };
  const phase = options.onPhase ?? (() => undefined);
  const problems: string[] = [];

  phase('migrating');
  await migrateDatabase(connectionString, log);
  // Named apart from the worker (sluice/demo-<id>/…), so sampling the worker's connections does not count it.
  const observer = new pg.Client({ connectionString, application_name: applicationName(`demo-${runId}-observer`, 'control') });
  await observer.connect();
  const startedAt = (await observer.query<{ now: Date }>('SELECT now()')).rows[0]?.now ?? new Date();

  phase('starting a worker');
  const worker = await runWorker({ config, connectionString, log, tasks: sluiceTaskList });
  const sampler = new ConnectionSampler(observer, worker.id, 50);

  try {
    const now = Date.now();
    const { events, unique } = generateEvents({ count: options.events, seed: Number.parseInt(runId, 16), extra: { demo_run: runId } });
    const invalid = invalidEvents(runId, now);

    phase(`ingesting ${events.length.toLocaleString('en-US')} events`);
    const ingestStarted = Date.now();
    const ingestor = await createIngestor({
      connectionString,
      stream: STREAM,
      ack: 'staged',
      clientId: `demo-${runId}-app`,
      drainSlots: config.drainers,
      log,
    });
    const invalidEvery = Math.max(1, Math.floor(events.length / invalid.length));
    let next = 0;
    for (let i = 0; i < events.length; i++) {
      if (options.signal?.aborted) break;
      if (i % invalidEvery === 0 && next < invalid.length) await ingestor.push(invalid[next++]?.event);
      await ingestor.push(events[i]);
    }
    while (next < invalid.length) await ingestor.push(invalid[next++]?.event);
    await ingestor.close();
    const stagedMs = Date.now() - ingestStarted;

    phase('enqueueing SQL add_job events');
    const sql = generateEvents({ count: SQL_JOBS * SQL_EVENTS_PER_JOB, seed: Number.parseInt(runId, 16) + 1, duplicateRate: 0, extra: { demo_run: runId, via: 'sql' } });
    for (let j = 0; j < SQL_JOBS; j++) {
      const batch = sql.events.slice(j * SQL_EVENTS_PER_JOB, (j + 1) * SQL_EVENTS_PER_JOB);
      await observer.query(`SELECT graphile_worker.add_job('sluice_ingest', $1::json)`, [JSON.stringify({ stream: STREAM, events: batch })]);
    }

    phase('waiting until everything is durable');
    const expectedDurable = unique + sql.unique;
    const deadline = Date.now() + (options.timeoutMs ?? 120_000);
    let durableRows = 0;
    let stagingLeft = -1;
    for (;;) {
      const staged = await observer.query<{ n: number }>(`SELECT count(*)::int AS n FROM sluice_staging.events WHERE payload->>'demo_run' = $1`, [runId]);
      const pending = await observer.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM graphile_worker.jobs WHERE task_identifier = 'sluice_ingest' AND attempts < max_attempts`,
      );
      stagingLeft = staged.rows[0]?.n ?? 0;
      if (stagingLeft === 0 && (pending.rows[0]?.n ?? 0) === 0) {
        durableRows = (await observer.query<{ n: number }>(`SELECT count(*)::int AS n FROM sluice_data.events WHERE payload->>'demo_run' = $1`, [runId]))
          .rows[0]?.n ?? 0;
        if (durableRows >= expectedDurable) break;
      }
      if (Date.now() > deadline || options.signal?.aborted) {
        problems.push(`stopped waiting: ${stagingLeft} rows still staged`);
        break;
      }
      await sleep(100);
    }
    const durableMs = Date.now() - ingestStarted;

    const rejects = (
      await observer.query<{ reason: string; count: number; example: string }>(
        `SELECT reason, count(*)::int AS count, min(message) AS example FROM sluice.rejects
          WHERE stream = $1 AND received_at >= $2 AND (raw LIKE '%' || $3 || '%' OR reason = 'not_an_object')
          GROUP BY reason ORDER BY reason`,
        [STREAM, startedAt, runId],
      )
    ).rows;

    const collapsed = await observer.query<{ n: number }>(
      `SELECT coalesce(sum(moved - inserted), 0)::int AS n FROM sluice.drain_stats WHERE stream = $1 AND drainer LIKE $2`,
      [STREAM, `${worker.id}/%`],
    );
    if (durableRows !== expectedDurable) problems.push(`expected ${expectedDurable} durable rows, found ${durableRows}`);
    for (const { reason } of invalid) {
      if (!rejects.some((r) => r.reason === reason)) problems.push(`expected a reject with reason ${reason}`);
    }
    const peakConnections = sampler.peak;
    if (peakConnections > config.maxConnections) problems.push(`peak connections ${peakConnections} exceeded the budget ${config.maxConnections}`);

    return {
      runId,
      generated: events.length,
      unique,
      resends: events.length - unique,
      invalidSent: invalid.length,
      sqlJobs: SQL_JOBS,
      sqlEvents: sql.events.length,
      stagedMs,
      durableMs,
      durableRows,
      expectedDurable,
      duplicatesCollapsed: collapsed.rows[0]?.n ?? 0,
      rejects,
      peakConnections,
      budget: config.maxConnections,
      plan: worker.plan,
      stagingLeft,
      ok: problems.length === 0,
      problems,
    };
  } finally {
    await sampler.stop().catch(() => undefined);
    phase('stopping the worker');
    await worker.stop('demo finished');
    await observer.end();
  }
}
