/**
 * Task `sluice_ingest`: apps enqueue events with SQL
 *   SELECT graphile_worker.add_job('sluice_ingest', '{"stream":"events","events":[…]}');
 * The rows go into the worker's Ingestor; the job completes only once they are
 * committed (staged, or durable with "ack":"durable"), so concurrent jobs share
 * one COPY. Unknown stream or malformed payload: permanent failure with the reason.
 */
import { createHash } from 'node:crypto';
import type { JobHelpers, Task } from 'graphile-worker';
import { coerceError, PermanentJobError, SluiceError, SQLSTATE, sqlState } from '../src/errors.js';
import { rawJsonOf } from '../src/db/json-types.js';
import { reparseJsonExact, stringifyJson } from '../src/codec/exact-json.js';
import { parseIngestPayloadItem, type IngestPayloadItem } from '../src/ingest/ingest-payload.js';
import type { IngestReceipt } from '../src/ingest/ingestor.js';
import type { WorkerContext } from '../src/worker/context.js';
import { retireJob } from '../src/worker/permanent-failure.js';
import { drainUntilSettled } from '../src/drain/drain-runner.js';

const PERMANENT_CODES = new Set(['invalid_payload', 'unknown_stream', 'invalid_stream_name']);

function isPermanent(err: unknown): boolean {
  return err instanceof SluiceError && PERMANENT_CODES.has(err.code);
}

async function ingestItem(ctx: WorkerContext, item: IngestPayloadItem, inputKeyOf: (index: number) => string): Promise<IngestReceipt> {
  const ingestor = await ctx.ingest.get(item.stream);
  try {
    // A shutdown aborts a durable wait: the job fails and is retried; its rows stay staged for the next worker.
    const receipt = ingestor.ingest(item.events, undefined, item.ack, ctx.shutdownSignal, inputKeyOf);
    if (item.ack === 'durable') await drainUntilSettled(ctx, ingestor.stream, receipt);
    return await receipt;
  } catch (err) {
    // A dropped or re-created stream surfaces as a missing table: reload its definition next time.
    if (sqlState((err as { cause?: unknown }).cause) === SQLSTATE.UNDEFINED_TABLE) ctx.ingest.evict(item.stream);
    throw err;
  }
}

/**
 * Identity of event n of a job's entry, should it be rejected: a retried job (its COPY committed,
 * its completion lost) records each reject once. The entry's digest, not its position, because a
 * retried batch job keeps only its failed entries.
 */
function rejectKeys(jobId: string, entry: unknown): (index: number) => string {
  let digest: string | undefined;
  return (index) => {
    digest ??= createHash('sha1').update(stringifyJson(entry, { withinNumericLimits: false }) ?? '').digest('hex');
    return `sql:job:${jobId}:${digest}:${index}`;
  };
}

export function sluiceIngestTask(ctx: WorkerContext): Task {
  return async (payload: unknown, helpers: JobHelpers) => {
    // node-pg parsed the payload with JSON.parse; when its text held numbers a double
    // changes, the pool kept that text (src/db/json-types.ts): read it again exactly.
    const raw = rawJsonOf(payload);
    let exact: unknown = payload;
    if (raw !== undefined) {
      try {
        exact = reparseJsonExact(raw);
      } catch (err) {
        // Only a nesting deeper than the stack allows gets here; retrying cannot help.
        throw await retireJob(helpers, new PermanentJobError(`sluice_ingest: payload could not be read with exact numbers: ${coerceError(err).message}`, { cause: err }));
      }
    }
    const entries = Array.isArray(exact) ? (exact as unknown[]) : [exact];
    ctx.ingest.jobStarted(entries.length);
    let settled: PromiseSettledResult<IngestReceipt>[];
    try {
      settled = await Promise.allSettled(entries.map(async (entry) => ingestItem(ctx, parseIngestPayloadItem(entry), rejectKeys(helpers.job.id, entry))));
    } finally {
      ctx.ingest.jobFinished(entries.length);
    }
    const failures = settled.flatMap((s, i) => (s.status === 'rejected' ? [{ index: i, error: coerceError(s.reason) }] : []));
    const accepted = settled.reduce((n, s) => n + (s.status === 'fulfilled' ? s.value.accepted : 0), 0);
    const rejected = settled.reduce((n, s) => n + (s.status === 'fulfilled' ? s.value.rejected : 0), 0);
    if (rejected > 0) helpers.logger.info(`sluice_ingest: ${accepted} accepted, ${rejected} rejected (see sluice.rejects)`);
    if (failures.length === 0) return;

    const message = failures.map((f) => (entries.length > 1 ? `entry ${f.index}: ${f.error.message}` : f.error.message)).join('; ');
    if (failures.every((f) => isPermanent(f.error))) {
      const reason = await retireJob(helpers, new PermanentJobError(message, { cause: failures[0]?.error }));
      if (!Array.isArray(payload)) throw reason;
    }
    if (!Array.isArray(payload)) throw new Error(message);
    // Batch job: graphile-worker keeps only the failed entries in the payload.
    return settled.map((s) => (s.status === 'fulfilled' ? Promise.resolve() : Promise.reject(coerceError(s.reason))));
  };
}
