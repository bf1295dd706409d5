/**
 * `sluice bench --scale` (issue #19, "cost as the work grows"): the end-to-end
 * pipeline (one Ingestor → staging, a `sluice worker` child process draining
 * into the durable partitioned table) fed for millions of events, measured per
 * bucket ("per million" by default): durable throughput, lag, worker RSS,
 * bytes per event and autovacuum activity on the durable partitions. Then the
 * health report and the partition list are timed on a stream of 1,000
 * partitions, and every event is checked durable exactly once.
 *
 * The producer stays at most `backlog` events ahead of the drain (it pauses
 * while more of what it pushed is not yet drained, by sluice.drain_stats): a producer at full speed would outrun the drain
 * (ingest is ~2× faster than the durable insert) and lag would only measure
 * the growing queue. With the backlog bounded, throughput is what the drain
 * sustains and lag is what a live stream at that rate sees.
 */
import type { Logger } from '../../logger.js';
import { migrateDatabase } from '../../db/migrate.js';
import { databaseClockOffsetMs } from '../../db/clock.js';
import { openIngestor } from '../../ingest/create-ingestor.js';
import { durableTable, stagingTable } from '../../streams/names.js';
import { sleep } from '../../timing.js';
import { BenchContext, until } from '../bench-context.js';
import { machineInfo, postgresInfo } from '../report.js';
import { BUDGET_16 } from '../scenarios/end-to-end.js';
import { BENCH_SEED } from '../run-bench.js';
import { durableStats, rssMb, walPosition, type DurableStats } from './durable-stats.js';
import { dropManyPartitions, MANY_PARTITIONS_TARGET, timeManyPartitions } from './many-partitions.js';
import { lagOfSamples, type LagSample } from './lag-samples.js';
import { ChunkSource, SCALE_CHUNK, SCALE_MAX_EVENTS } from './scale-workload.js';
import { scaleTargets, type ScaleBucket, type ScaleReport } from './scale-report.js';

export const SCALE_EVENTS_DEFAULT = 10_000_000;
export const SCALE_BUCKET_DEFAULT = 1_000_000;
/**
 * Staged events the producer may run ahead of the drain: one drain batch (the
 * stream default, 10,000 rows). The queue then holds about this many events,
 * so lag ≈ backlog ÷ drain rate: ~0.5 s at 20,000 events/s.
 */
export const SCALE_BACKLOG_DEFAULT = 10_000;
/** One new event in this many is followed from push to durable for the lag figures. */
const LAG_SAMPLE_EVERY = 100;
/** Pushes between two looks at the staging backlog. */
const BACKLOG_CHECK_EVERY = 2_000;
export { SCALE_MAX_EVENTS };

// The backlog from sluice's own counters (rows the drains took out of staging), not by reading staging:
// a count over staging scans its dead tuples too, and polled every few ms under load it took a core
// from the drain it measures (the 3-million runs fell from ~60k to ~21k events/s with it).
const DRAINED = `SELECT coalesce(sum(moved), 0)::float8 AS n FROM sluice.drain_stats WHERE stream = $1`;
const DURABLE_COUNTS = (table: string) => `SELECT count(*)::bigint AS n, count(DISTINCT event_id)::bigint AS distinct_ids FROM ${table}`;

export interface ScaleOptions {
  readonly url: string;
  readonly log: Logger;
  /** Events to push; with durationS, the most to push. */
  readonly events: number;
  /** Push until this many seconds have passed (then finish the bucket in progress as a short bucket). */
  readonly durationS?: number;
  readonly bucket: number;
  readonly backlog?: number;
  /** Partitions of the separate stream the health and partition list timings run on. */
  readonly manyPartitions?: number;
  readonly onBucket?: (bucket: ScaleBucket) => void;
  readonly onPhase?: (phase: string) => void;
}

export class ScaleVerificationError extends Error {}

export async function runScale(options: ScaleOptions): Promise<ScaleReport> {
  const startedAt = new Date();
  const backlog = options.backlog ?? SCALE_BACKLOG_DEFAULT;
  const plan = BUDGET_16;
  await migrateDatabase(options.url, options.log);
  const ctx = new BenchContext(options.url, options.log);
  // A run that fails (a count check, a worker that died) leaves its streams for
  // inspection; the next run drops and recreates them.
  try {
    await ctx.query('CHECKPOINT').catch(() => undefined);
    const stream = await ctx.freshStream('scale');
    const staging = stagingTable(stream.name);
    const durable = durableTable(stream.name);
    const worker = await ctx.startWorker('scale', ['--max-connections', String(plan.budget), '--concurrency', String(plan.concurrency), '--drainers', String(plan.drainers)]);
    const sampler = ctx.sampleConnections(worker.id, 250);
    const ingestor = await openIngestor({ connectionString: ctx.url, stream: stream.name, ack: 'staged', drainSlots: plan.drainers, clientId: 'bench-scale-producer' });
    const clockOffset = await databaseClockOffsetMs(ctx.admin);
    const deadline = options.durationS === undefined ? Infinity : performance.now() + options.durationS * 1000;
    const samples: LagSample[] = [];
    const buckets: Array<Omit<ScaleBucket, 'lag_ms'>> = [];
    const baseMs = Date.now();
    let before: DurableStats = await durableStats(ctx.admin, durable);
    const walStart = await walPosition(ctx.admin);
    let walBefore = walStart;
    let pushed = 0;
    let unique = 0;
    let bucketUnique = 0;
    let bucketStarted = performance.now();
    let waitChunkMs = 0;
    let pausedMs = 0;

    const drainedSoFar = async () => (await ctx.query<{ n: number }>(DRAINED, [stream.name])).rows[0]?.n ?? 0;
    const closeBucket = async () => {
      await ingestor.flush();
      // Drained by the counters (cheap); staging itself is read only now and then, in case a row left it otherwise.
      let polls = 0;
      await until(
        async () =>
          (await drainedSoFar()) >= pushed || (++polls % 100 === 0 && (await ctx.query(`SELECT 1 FROM ${staging} LIMIT 1`)).rowCount === 0),
        'staging to drain',
        600_000,
        5,
      );
      const seconds = (performance.now() - bucketStarted) / 1000;
      const after = await durableStats(ctx.admin, durable);
      const wal = await walPosition(ctx.admin);
      const index = buckets.length;
      const b = {
        bucket: index + 1,
        events_from: index * options.bucket,
        events_to: pushed,
        events: pushed - index * options.bucket,
        unique_events: bucketUnique,
        seconds: +seconds.toFixed(3),
        durable_events_per_s: Math.round(bucketUnique / seconds),
        worker_rss_mb: round1(rssMb(worker.child.pid)),
        bench_rss_mb: round1(process.memoryUsage().rss / 2 ** 20),
        durable_rows: unique,
        table_bytes: after.bytes,
        bytes_per_event: +(after.bytes / Math.max(1, unique)).toFixed(1),
        wal_bytes_per_event: +((wal - walBefore) / Math.max(1, bucketUnique)).toFixed(1),
        autovacuum_count: after.autovacuumCount - before.autovacuumCount,
        autoanalyze_count: after.autoanalyzeCount - before.autoanalyzeCount,
        n_dead_tup: after.nDeadTup,
        n_live_tup: after.nLiveTup,
        partitions: after.partitions,
      };
      buckets.push(b);
      options.onBucket?.({ ...b, lag_ms: undefined });
      before = after;
      walBefore = wal;
      bucketUnique = 0;
      bucketStarted = performance.now();
    };

    options.onPhase?.(`pushing ${options.durationS === undefined ? `${options.events.toLocaleString('en-US')} events` : `for ${options.durationS} s`}`);
    const runStarted = performance.now();
    const chunks = new ChunkSource(options.events, BENCH_SEED, baseMs);
    try {
      for (let chunkIndex = 0; pushed < options.events && performance.now() < deadline; chunkIndex++) {
        const g = performance.now();
        const chunk = await chunks.chunk(chunkIndex);
        waitChunkMs += performance.now() - g;
        if (!chunk) break;
        for (let i = 0; i < chunk.json.length; i++) {
          const json = chunk.json[i] as string;
          const event = JSON.parse(json) as { event_id: string; occurred_at: string };
          if (chunk.first[i]) {
            unique++;
            bucketUnique++;
            if (unique % LAG_SAMPLE_EVERY === 0) {
              samples.push({ bucket: buckets.length, pushedAtMs: Date.now() + clockOffset, eventId: event.event_id, occurredAt: event.occurred_at });
            }
          }
          await ingestor.push(event, json);
          pushed++;
          if (pushed % BACKLOG_CHECK_EVERY === 0) {
            const p = performance.now();
            while (pushed - (await drainedSoFar()) > backlog) await sleep(5);
            pausedMs += performance.now() - p;
          }
          if (pushed % options.bucket === 0) await closeBucket();
          if (pushed % 1_000 === 0 && performance.now() >= deadline) break;
        }
      }
    } finally {
      await chunks.close();
    }
    if (pushed % options.bucket !== 0) await closeBucket();
    const runSeconds = (performance.now() - runStarted) / 1000;
    const peakConnections = await sampler.stop();
    const workerPeakRss = worker.peakRssMb();
    await ingestor.close();
    await worker.stop();

    options.onPhase?.('verifying counts');
    const counts = (await ctx.query<{ n: string; distinct_ids: string }>(DURABLE_COUNTS(durable))).rows[0];
    const durableRows = Number(counts?.n ?? 0);
    const distinct = Number(counts?.distinct_ids ?? 0);
    const left = await ctx.count(staging);
    if (durableRows !== unique || distinct !== unique || left !== 0) {
      throw new ScaleVerificationError(
        `bench --scale: count check failed: ${unique} distinct events pushed, ${durableRows} durable rows, ${distinct} distinct event_ids durable, ${left} left in staging`,
      );
    }
    options.onPhase?.('lag of the sampled events');
    const lags = await lagOfSamples(ctx, durable, samples, buckets.length);
    const withLag: ScaleBucket[] = buckets.map((b, i) => ({ ...b, lag_ms: lags[i] }));
    const final = await durableStats(ctx.admin, durable);
    const walBytes = walBefore - walStart;

    options.onPhase?.(`${options.manyPartitions ?? MANY_PARTITIONS_TARGET} partitions: health and partitions list`);
    const many = await timeManyPartitions(ctx, options.manyPartitions ?? MANY_PARTITIONS_TARGET);
    await dropManyPartitions(ctx);
    await ctx.dropStream(stream.name);

    return {
      kind: 'scale',
      started_at: startedAt.toISOString(),
      duration_s: +((Date.now() - startedAt.getTime()) / 1000).toFixed(1),
      machine: snakeMachine(),
      postgres: await postgresInfo(ctx.admin),
      options: {
        events: options.events,
        duration_s: options.durationS ?? null,
        bucket: options.bucket,
        backlog,
        seed: BENCH_SEED,
        duplicate_rate: 0.01,
        chunk: SCALE_CHUNK,
        lag_sample_every: LAG_SAMPLE_EVERY,
        worker: { max_connections: plan.budget, concurrency: plan.concurrency, drainers: plan.drainers, process: 'sluice worker child process' },
        producer: 'one Ingestor (own connection), JSON in, ack staged; pauses while more than backlog of the events it pushed are not yet drained (sluice.drain_stats)',
      },
      measured: {
        throughput: 'per bucket: distinct events of the bucket ÷ (staging empty after the previous bucket → staging empty after this one)',
        lag: `one new event in ${LAG_SAMPLE_EVERY}: its push (bench clock, set to the database's) → its row's drained_at (the drain transaction's start)`,
        worker_rss: 'VmRSS of the `sluice worker` child process at the end of each bucket (not the bench process; bench_rss_mb is the producer)',
        table_bytes: 'pg_total_relation_size summed over the durable partitions (table, indexes, TOAST); bytes_per_event = that ÷ durable rows so far',
        wal: 'pg_current_wal_lsn() delta over the bucket ÷ its distinct events: the whole cluster\'s WAL (durable rows, graphile-worker jobs, sluice bookkeeping; staging is UNLOGGED), so other work on the same cluster counts too',
        autovacuum: 'pg_stat_user_tables over the durable partitions: autovacuum_count and autoanalyze_count deltas in the bucket, n_dead_tup and n_live_tup at its end',
      },
      buckets: withLag,
      totals: {
        events: pushed,
        unique_events: unique,
        durable_rows: durableRows,
        durable_distinct_event_ids: distinct,
        staging_left: left,
        seconds: +runSeconds.toFixed(2),
        durable_events_per_s: Math.round(unique / runSeconds),
        producer_waited_for_events_seconds: +(waitChunkMs / 1000).toFixed(2),
        producer_paused_seconds: +(pausedMs / 1000).toFixed(2),
        table_bytes: final.bytes,
        bytes_per_event: +(final.bytes / Math.max(1, durableRows)).toFixed(1),
        wal_bytes: walBytes,
        wal_bytes_per_event: +(walBytes / Math.max(1, durableRows)).toFixed(1),
        autovacuum_count: buckets.reduce((n, b) => n + b.autovacuum_count, 0),
        autoanalyze_count: buckets.reduce((n, b) => n + b.autoanalyze_count, 0),
        worker_peak_rss_mb: round1(workerPeakRss),
        peak_connections: peakConnections,
        budget: plan.budget,
      },
      many_partitions: many,
      targets: scaleTargets(withLag, options.bucket),
    };
  } finally {
    await ctx.close();
  }
}

function round1(n: number | undefined): number | null {
  return n === undefined ? null : Math.round(n * 10) / 10;
}

function snakeMachine(): ScaleReport['machine'] {
  const m = machineInfo();
  return { cores: m.cores, cpu: m.cpu, memory_gb: m.memoryGb, node: m.node, platform: m.platform };
}
