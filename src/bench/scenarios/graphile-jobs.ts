/**
 * graphile-worker used directly, in its own schema so it never touches
 * sluice's queue: one job per event (each inserting its row), with
 * graphile-worker's default settings and with its best batching settings,
 * and its no-op job throughput with the settings sluice's worker uses.
 */
import { run, runMigrations, type Runner, type Task } from 'graphile-worker';
import { toGraphileLogger } from '../../graphile-logger.js';
import { durableTable, quoteIdent } from '../../streams/names.js';
import type { GeneratedEvent } from '../../workload/event-generator.js';
import type { BenchContext } from '../bench-context.js';
import { result, verify, type Scenario } from '../scenario.js';

export const GW_SCHEMA = 'sluice_bench_gw';

export interface GraphileSettings {
  readonly concurrency: number;
  readonly maxPoolSize?: number;
  readonly localQueueSize?: number;
  readonly completeJobBatchDelay?: number;
}

/** graphile-worker 0.18 defaults: 1 job at a time, pool of 10, no local queue, no batched completion. */
export const GRAPHILE_DEFAULTS: GraphileSettings = { concurrency: 1 };
/** Its documented high-throughput knobs (worker.graphile.org/docs/performance#batching). */
export const GRAPHILE_BEST: GraphileSettings = { concurrency: 16, maxPoolSize: 17, localQueueSize: 500, completeJobBatchDelay: 0 };

/** Enqueue `payloads` for `task` in one transaction (untimed), run them, and time commit → last completion. */
export async function timeGraphileJobs(
  ctx: BenchContext,
  schema: string,
  task: string,
  payloads: readonly unknown[],
  executor: Task,
  settings: GraphileSettings,
): Promise<number> {
  await runMigrations({ connectionString: ctx.url, schema, logger: toGraphileLogger(ctx.log) });
  // Clear leftovers through graphile-worker's public API (nothing runs yet, so nothing is locked).
  const gw = quoteIdent(schema);
  await ctx.query(`SELECT count(*) FROM ${gw}.complete_jobs(ARRAY(SELECT id FROM ${gw}.jobs))`);
  let completed = 0;
  let resolveDone!: () => void;
  const done = new Promise<void>((resolve) => (resolveDone = resolve));
  const runner: Runner = await run({
    connectionString: ctx.url,
    schema,
    concurrency: settings.concurrency,
    noHandleSignals: true,
    logger: toGraphileLogger(ctx.log),
    taskList: {
      [task]: async (payload, helpers) => {
        await executor(payload, helpers);
        if (++completed === payloads.length) resolveDone();
      },
    },
    preset: {
      worker: {
        concurrentJobs: settings.concurrency,
        ...(settings.maxPoolSize ? { maxPoolSize: settings.maxPoolSize } : {}),
        ...(settings.localQueueSize ? { localQueue: { size: settings.localQueueSize } } : {}),
        ...(settings.completeJobBatchDelay !== undefined ? { completeJobBatchDelay: settings.completeJobBatchDelay } : {}),
      },
    },
  });
  const started = await ctx.enqueueJobs(schema, task, payloads);
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    done,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`bench: ${task} jobs did not finish within 10 minutes (${completed}/${payloads.length})`)), 600_000);
    }),
  ]).finally(() => clearTimeout(timer));
  // Completion is acknowledged once graphile-worker deletes the job rows.
  const deadline = Date.now() + 60_000;
  for (;;) {
    const { rows } = await ctx.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${gw}.jobs`);
    if (rows[0]?.n === 0 || Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 10));
  }
  const ms = performance.now() - started;
  await runner.stop();
  return ms;
}

function jobPerEvent(id: string, title: string, settings: GraphileSettings): Scenario {
  return {
    id,
    title,
    group: 'alternative',
    async run({ ctx, fsyncBoundWorkload: jobs }) {
      const stream = await ctx.freshStream(id.slice(-12));
      const sql = `INSERT INTO ${durableTable(stream.name)} (event_id, occurred_at, type, user_id, payload, received_at)
                   VALUES ($1, $2, $3, $4, $5, now()) ON CONFLICT DO NOTHING`;
      const ms = await timeGraphileJobs(ctx, GW_SCHEMA, 'insert_event', jobs.events, async (payload, helpers) => {
        const e = payload as GeneratedEvent;
        await helpers.query(sql, [e.event_id, e.occurred_at, e.type, e.user_id, JSON.stringify({ value: e.value })]);
      }, settings);
      const actual = await ctx.countThenDrop(durableTable(stream.name), stream.name);
      return result(this, {
        rows: jobs.events.length,
        ms,
        verified: verify(jobs.unique, actual, 'distinct rows durable'),
        options: { ...settings, schema: GW_SCHEMA, enqueue: 'all jobs in one transaction before timing (untimed)', timed: 'commit → last job completed and deleted' },
      });
    },
  };
}

export const jobPerEventDefault = jobPerEvent('alt_gw_job_per_event_default', 'graphile-worker job per event, default settings', GRAPHILE_DEFAULTS);
export const jobPerEventBest = jobPerEvent('alt_gw_job_per_event_best', 'graphile-worker job per event, best settings', GRAPHILE_BEST);

/** graphile-worker's own no-op throughput with the settings sluice's worker runs (the add_job target's baseline). */
export function noopJobs(settings: GraphileSettings): Scenario {
  return {
    id: 'alt_gw_noop_sluice_settings',
    title: 'graphile-worker no-op jobs, same settings as the sluice worker',
    group: 'alternative',
    async run({ ctx, jobWorkload: jobs }) {
      let ran = 0;
      const ms = await timeGraphileJobs(ctx, GW_SCHEMA, 'noop', jobs.events.map((_, i) => ({ i })), async () => {
        ran++;
      }, settings);
      return result(this, {
        rows: jobs.events.length,
        ms,
        verified: verify(jobs.events.length, ran, 'jobs run'),
        options: { ...settings, schema: GW_SCHEMA },
      });
    },
  };
}
