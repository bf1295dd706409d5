/**
 * Task `sluice_rotate_partitions` (crontab, hourly): rotate every stream's
 * partitions (src/partitions/rotate.ts: finalize interrupted detaches,
 * premake, retention) at the worker's clock (+ --clock-offset-ms), and prune
 * sluice.rejects past --rejects-retention-days (in bounded chunks, see
 * pruneRejects). A run that left a step blocked queues a retry with backoff
 * ({"retry": n}) instead of waiting for the next hour.
 */
import type { Task } from 'graphile-worker';
import { coerceError } from '../src/errors.js';
import { pruneRejects } from '../src/maintenance/prune.js';
import { rotateStreams } from '../src/partitions/rotate.js';
import { listStreams } from '../src/streams/registry.js';
import { drainWithWorkerConnection } from '../src/drain/drain-runner.js';
import type { WorkerContext } from '../src/worker/context.js';

/** Retries of a blocked rotation: 1, 2, 4 … minutes, at most 30. */
const RETRY_BASE_MS = 60_000;
const RETRY_CAP_MS = 30 * 60_000;
const MAX_RETRIES = 6;
/** The pre-retention drain of a stream gets this long (then leftovers are rejected with a reason). */
const RETENTION_DRAIN_MAX_MS = 30_000;

export function sluiceRotatePartitionsTask(ctx: WorkerContext): Task {
  return async (raw, helpers) => {
    const retry = Number((raw as { retry?: unknown } | null)?.retry ?? 0) || 0;
    const now = new Date(Date.now() + ctx.config.clockOffsetMs);
    const reports = await helpers.withPgClient(async (client) =>
      rotateStreams(client, ctx.pool, await listStreams(client), {
        now,
        runner: ctx.workerId,
        log: ctx.log,
        signal: ctx.shutdownSignal,
        drainStream:
          ctx.drainers.size > 0
            ? async (stream) => {
                await drainWithWorkerConnection(ctx, stream, { maxMs: RETENTION_DRAIN_MAX_MS, signal: ctx.shutdownSignal }).catch((err: unknown) =>
                  ctx.log.warn({ stream: stream.name, err: coerceError(err).message }, 'partitions: drain before retention failed; staged rows of expiring months will be rejected'),
                );
              }
            : undefined,
      }),
    );
    const blocked = reports.some((r) => r.skipped.some((s) => s.reason.startsWith('blocked')) || r.error !== undefined);
    if (blocked && retry < MAX_RETRIES) {
      const delay = Math.min(RETRY_CAP_MS, RETRY_BASE_MS * 2 ** retry);
      await helpers.addJob('sluice_rotate_partitions', { retry: retry + 1 }, { jobKey: 'sluice_rotate_partitions_retry', runAt: new Date(Date.now() + delay) });
    }
    // On the pool, one chunk per checkout: a long prune does not hold a connection throughout.
    const pruned = await pruneRejects(ctx.pool, ctx.config.rejectsRetentionDays, { signal: ctx.shutdownSignal });
    if (pruned > 0) ctx.log.info({ pruned, retention_days: ctx.config.rejectsRetentionDays }, 'maintenance: pruned old rejects');
  };
}
