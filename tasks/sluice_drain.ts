/**
 * Task `sluice_drain`:
 *   {"stream": "events", "slot": 0}  drain one stream on one of this worker's
 *                                     dedicated drain connections until staging
 *                                     is empty or the time budget is spent
 *                                     (held after an unclassified failure: the
 *                                     job re-queues itself for when the hold ends);
 *   {"sweep": true}                   (crontab, every minute) prune drain counters
 *                                     and ack ledgers, and kick drains for every
 *                                     stream with staged rows.
 */
import type { JobHelpers, Task } from 'graphile-worker';
import { drainJobKey } from '../src/drain/drain-kicker.js';
import { sweepStagedStreams } from '../src/drain/sweep.js';
import { pruneStatsAndLedgers } from '../src/maintenance/prune.js';
import { drainWithWorkerConnection } from '../src/drain/drain-runner.js';
import { getStream } from '../src/streams/registry.js';
import type { WorkerContext } from '../src/worker/context.js';

interface DrainPayload {
  stream?: unknown;
  slot?: unknown;
  sweep?: unknown;
}

export function sluiceDrainTask(ctx: WorkerContext): Task {
  return async (raw: unknown, helpers: JobHelpers) => {
    const payload = (raw ?? {}) as DrainPayload;
    if (payload.sweep || payload.stream === undefined) {
      // The sweep first: it is the safety net for lost kicks, and housekeeping must not stand in its way.
      const kicked = await sweepStagedStreams(ctx.pool, ctx.kicker);
      if (kicked.length) helpers.logger.debug(`sluice_drain sweep: kicked ${kicked.join(', ')}`);
      await pruneStatsAndLedgers(ctx.pool);
      return;
    }
    const streamName = String(payload.stream);
    const slot = Number.isInteger(payload.slot) ? (payload.slot as number) : 0;
    const stream = await getStream(ctx.pool, streamName);
    if (!stream) {
      helpers.logger.warn(`sluice_drain: stream ${streamName} no longer exists; nothing to drain`);
      return;
    }
    const outcome = await drainWithWorkerConnection(ctx, stream, { maxMs: ctx.config.drainJobMaxMs, signal: ctx.shutdownSignal });
    const requeue = (runAt?: Date) =>
      helpers.addJob('sluice_drain', { stream: streamName, slot }, { jobKey: drainJobKey(streamName, slot), maxAttempts: 5, runAt });
    // Held after an unclassified failure: come back when the hold ends. The job
    // completes (a thrown error's retry delay would be reset by the next flush's
    // kick); the kicks preserve this future run_at (drain-kicker.ts).
    if (outcome.status === 'held') {
      await requeue(new Date(Date.now() + outcome.retryInMs));
      return;
    }
    // aborted: shutting down before a connection was free; the rows stay staged for the next worker.
    // Time budget spent with rows left: hand the slot back and queue a follow-up.
    if (outcome.status === 'drained' && outcome.run.more && !ctx.shutdownSignal.aborted) await requeue();
  };
}
