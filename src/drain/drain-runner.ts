/**
 * Running drains on a worker's dedicated drain connections: for the
 * `sluice_drain` task, and for ingest jobs that wait on a durable ack — those
 * help drain their own stream instead of only waiting, so they cannot sit in
 * every job slot while the drain jobs that would release them queue behind.
 *
 * A run that fails on an error the drain cannot classify holds its stream
 * (see drain/drain-backoff.ts) instead of failing the job: graphile-worker's
 * own retry delay would be undone by the next flush's kick.
 */
import { coerceError, isTransientError, sqlState } from '../errors.js';
import { sleep } from '../timing.js';
import type { Logger } from '../logger.js';
import type { ConnectionSet } from '../db/connections.js';
import { DrainBackoff } from './drain-backoff.js';
import { drainUntilEmpty, type DrainRunResult } from './drain-loop.js';
import { DURABLE_POLL_MS } from '../ingest/durable-tracker.js';
import type { StreamDefinition } from '../streams/registry.js';

/** What a drain run needs from the worker running it (a WorkerContext is one). */
export interface DrainRunnerContext {
  readonly workerId: string;
  readonly config: { readonly drainBatchRows?: number | undefined };
  readonly log: Logger;
  readonly drainers: ConnectionSet;
  readonly shutdownSignal: AbortSignal;
}

export type DrainOutcome =
  | { readonly status: 'drained'; readonly run: DrainRunResult }
  /** The stream is held after a failure it cannot classify: try again in `retryInMs`. */
  | { readonly status: 'held'; readonly retryInMs: number }
  /** `signal` aborted before a drain connection was free. */
  | { readonly status: 'aborted' };

const backoffs = new WeakMap<DrainRunnerContext, DrainBackoff>();

/** The worker's per-stream drain backoff (shared by its drain jobs and durable-ack helpers). */
export function drainBackoffOf(ctx: DrainRunnerContext): DrainBackoff {
  let backoff = backoffs.get(ctx);
  if (!backoff) backoffs.set(ctx, (backoff = new DrainBackoff()));
  return backoff;
}

/** One drain run on a free drain connection (waits for one), unless the stream is held. */
export async function drainWithWorkerConnection(
  ctx: DrainRunnerContext,
  stream: StreamDefinition,
  options: { readonly maxMs: number; readonly signal: AbortSignal },
): Promise<DrainOutcome> {
  const backoff = drainBackoffOf(ctx);
  if (backoff.remainingMs(stream.name) > 0) return { status: 'held', retryInMs: backoff.remainingMs(stream.name) };
  const connection = await ctx.drainers.acquire(options.signal);
  if (!connection) return { status: 'aborted' };
  try {
    // Another slot may have failed while this one waited for its connection.
    if (backoff.remainingMs(stream.name) > 0) return { status: 'held', retryInMs: backoff.remainingMs(stream.name) };
    const run = await drainUntilEmpty(() => connection.get(options.signal), {
      stream,
      batchRows: ctx.config.drainBatchRows ?? stream.drainBatchRows,
      drainer: `${ctx.workerId}/${connection.appName.split('/').pop()}`,
      maxMs: options.maxMs,
      signal: options.signal,
      log: ctx.log,
    });
    backoff.succeeded(stream.name);
    return { status: 'drained', run };
  } catch (err) {
    if (isTransientError(err)) {
      connection.markBroken();
      throw err;
    }
    const message = coerceError(err).message;
    const hold = backoff.failed(stream.name, sqlState(err), message);
    const retryInMs = Math.max(0, hold.notBefore - Date.now());
    ctx.log.warn(
      { stream: stream.name, sqlstate: hold.sqlstate, err: message, failures: hold.failures, retry_in_ms: retryInMs },
      'drain: failed on an error it cannot classify; holding the stream before the next try',
    );
    return { status: 'held', retryInMs };
  } finally {
    ctx.drainers.release(connection);
  }
}

/** Drain `stream` in short runs until `settled` settles or the worker shuts down. No-op on an ingest-only worker. */
export async function drainUntilSettled(ctx: DrainRunnerContext, stream: StreamDefinition, settled: Promise<unknown>): Promise<void> {
  if (ctx.drainers.size === 0) return;
  const stop = new AbortController();
  const onShutdown = () => stop.abort();
  ctx.shutdownSignal.addEventListener('abort', onShutdown, { once: true });
  void settled.then(onShutdown, onShutdown);
  try {
    while (!stop.signal.aborted) {
      const outcome = await drainWithWorkerConnection(ctx, stream, { maxMs: 1_000, signal: stop.signal }).catch((err: unknown) => {
        ctx.log.warn({ stream: stream.name, err: coerceError(err).message }, 'drain: helping a durable ack failed; retrying');
        return undefined;
      });
      await sleep(outcome?.status === 'held' ? outcome.retryInMs : DURABLE_POLL_MS, stop.signal);
    }
  } finally {
    ctx.shutdownSignal.removeEventListener('abort', onShutdown);
  }
}

/**
 * How long a graceful stop inside a host's graphile-worker may spend draining
 * what it staged. Under graphile-worker's own 5 s abort timeout for jobs, so a
 * stop stays about as quick as the host's.
 */
export const STOP_DRAIN_MAX_MS = 3_000;

/** After cancelling at the deadline, how long to wait for the drain to give its connection back. */
const STOP_DRAIN_CANCEL_GRACE_MS = 1_000;

/** Cancel the statements of these sessions (the worker's drain connections; same role, so no extra grant). */
export const CANCEL_BACKENDS_SQL = `SELECT count(*) FILTER (WHERE pg_cancel_backend(pid))::int AS cancelled FROM unnest($1::int[]) AS pid`;

type Queryable = { query(text: string, values?: unknown[]): Promise<unknown> };

/**
 * Before a graceful stop: drain these streams on the worker's own drain
 * connections, within `maxMs` in all. A host's `graphile-worker --once` ends
 * when it finds no job, and the kick for its last flush may come just after
 * (kicks are throttled, and enqueued after the flush commits): without this
 * the last rows it staged would wait for the next run. Rows left (time spent,
 * a stream held, a batch cancelled at the deadline) stay staged and
 * acknowledged as such, for the next drain.
 *
 * A batch can wait on a lock up to the drain's statement timeout (60 s): at
 * the deadline its statement is cancelled through `pool`, so the stop keeps
 * to `maxMs` whatever another session holds.
 */
export async function drainBeforeStop(
  ctx: DrainRunnerContext,
  pool: Queryable,
  streams: readonly StreamDefinition[],
  maxMs = STOP_DRAIN_MAX_MS,
): Promise<{ readonly moved: number; readonly left: readonly string[] }> {
  if (ctx.drainers.size === 0) return { moved: 0, left: streams.map((s) => s.name) };
  const deadline = Date.now() + maxMs;
  const signal = AbortSignal.timeout(maxMs);
  let moved = 0;
  const drained = new Set<string>();
  const run = (async () => {
    for (const stream of streams) {
      const remainingMs = deadline - Date.now();
      if (remainingMs <= 0 || signal.aborted) return;
      const outcome = await drainWithWorkerConnection(ctx, stream, { maxMs: remainingMs, signal }).catch((err: unknown) => {
        ctx.log.warn({ stream: stream.name, err: coerceError(err).message }, 'drain: the drain before stopping failed; the rows stay staged');
        return undefined;
      });
      if (outcome?.status === 'drained') {
        moved += outcome.run.moved;
        if (!outcome.run.more) drained.add(stream.name);
      }
    }
  })();
  const timedOut = new Promise<'deadline'>((resolve) => signal.addEventListener('abort', () => resolve('deadline'), { once: true }));
  if ((await Promise.race([run.then(() => 'done' as const), timedOut])) === 'deadline') {
    const pids = ctx.drainers.connections.flatMap((c) => (c.backendPid === undefined ? [] : [c.backendPid]));
    await pool.query(CANCEL_BACKENDS_SQL, [pids]).catch((err: Error) =>
      ctx.log.warn({ err: err.message }, 'drain: could not cancel the drain before stopping; its statement ends at the drain statement timeout'),
    );
    await Promise.race([run, sleep(STOP_DRAIN_CANCEL_GRACE_MS)]);
  }
  return { moved, left: streams.map((s) => s.name).filter((name) => !drained.has(name)) };
}
