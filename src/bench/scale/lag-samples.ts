/**
 * Push → durable lag of the sampled events: each sample's push instant (the
 * bench's clock, set to the database's) against its durable row's drained_at,
 * looked up by the primary key (occurred_at, event_id) in batches.
 */
import type { BenchContext } from '../bench-context.js';

export interface LagSample {
  /** 0-based bucket the event was pushed in. */
  readonly bucket: number;
  readonly pushedAtMs: number;
  readonly eventId: string;
  readonly occurredAt: string;
}

export interface LagFigures {
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
  readonly samples: number;
}

const LOOKUP_BATCH = 10_000;

const DRAINED_AT = (table: string) => `
SELECT s.i::int AS i, (extract(epoch FROM d.drained_at) * 1000)::float8 AS drained_ms
  FROM unnest($1::timestamptz[], $2::uuid[]) WITH ORDINALITY AS s(occurred_at, event_id, i)
  JOIN ${table} d ON d.occurred_at = s.occurred_at AND d.event_id = s.event_id`;

/** Nearest-rank percentile of sorted values. */
function percentile(sorted: readonly number[], q: number): number {
  if (!sorted.length) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] as number;
}

/** Lag figures per bucket (undefined for a bucket without samples); a sample never found durable throws. */
export async function lagOfSamples(ctx: BenchContext, table: string, samples: readonly LagSample[], buckets: number): Promise<Array<LagFigures | undefined>> {
  const lags: number[][] = Array.from({ length: buckets }, () => []);
  for (let from = 0; from < samples.length; from += LOOKUP_BATCH) {
    const batch = samples.slice(from, from + LOOKUP_BATCH);
    const { rows } = await ctx.query<{ i: number; drained_ms: number }>(DRAINED_AT(table), [batch.map((s) => s.occurredAt), batch.map((s) => s.eventId)]);
    if (rows.length !== batch.length) throw new Error(`bench --scale: ${batch.length - rows.length} sampled events not found durable`);
    for (const r of rows) {
      const s = batch[r.i - 1] as LagSample;
      lags[s.bucket]?.push(r.drained_ms - s.pushedAtMs);
    }
  }
  return lags.map((l) => {
    if (!l.length) return undefined;
    const sorted = l.sort((a, b) => a - b);
    return { p50: Math.round(percentile(sorted, 0.5)), p99: Math.round(percentile(sorted, 0.99)), max: Math.round(sorted[sorted.length - 1] as number), samples: sorted.length };
  });
}
