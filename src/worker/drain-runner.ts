/**
 * Running drains on a worker's dedicated drain connections: for the
 * `sluice_drain` task, and for ingest jobs that wait on a durable ack — those
 * help drain their own stream instead of only waiting, so they cannot sit in
 * every job slot while the drain jobs that would release them queue behind.
 */
import { isTransientError, sleep, coerceError } from '../errors.js';
import { drainUntilEmpty, type DrainRunResult } from '../drain/drain-loop.js';
import { DURABLE_POLL_MS } from '../ingest/durable-tracker.js';
import type { StreamDefinition } from '../streams/registry.js';
import type { WorkerContext } from './context.js';

/** One drain run on a free drain connection (waits for one); undefined if `signal` aborted first. */
export async function drainWithWorkerConnection(
  ctx: WorkerContext,
  stream: StreamDefinition,
  options: { readonly maxMs: number; readonly signal: AbortSignal },
): Promise<DrainRunResult | undefined> {
  const connection = await ctx.drainers.acquire(options.signal);
  if (!connection) return undefined;
  try {
    return await drainUntilEmpty(() => connection.get(options.signal), {
      stream,
      batchRows: ctx.config.drainBatchRows ?? stream.drainBatchRows,
      drainer: `${ctx.workerId}/${connection.appName.split('/').pop()}`,
      maxMs: options.maxMs,
      signal: options.signal,
      log: ctx.log,
    });
  } catch (err) {
    if (isTransientError(err)) connection.markBroken();
    throw err;
  } finally {
    ctx.drainers.release(connection);
  }
}

/** Drain `stream` in short runs until `settled` settles or the worker shuts down. No-op on an ingest-only worker. */
export async function drainUntilSettled(ctx: WorkerContext, stream: StreamDefinition, settled: Promise<unknown>): Promise<void> {
  if (ctx.drainers.size === 0) return;
  const stop = new AbortController();
  const onShutdown = () => stop.abort();
  ctx.shutdownSignal.addEventListener('abort', onShutdown, { once: true });
  void settled.then(onShutdown, onShutdown);
  try {
    while (!stop.signal.aborted) {
      await drainWithWorkerConnection(ctx, stream, { maxMs: 1_000, signal: stop.signal }).catch((err: unknown) =>
        ctx.log.warn({ stream: stream.name, err: coerceError(err).message }, 'drain: helping a durable ack failed; retrying'),
      );
      await sleep(DURABLE_POLL_MS, stop.signal);
    }
  } finally {
    ctx.shutdownSignal.removeEventListener('abort', onShutdown);
  }
}
