/**
 * Task `sluice_drain`:
 *   {"stream": "events", "slot": 0}  drain one stream on one of this worker's
 *                                     dedicated drain connections until staging
 *                                     is empty or the time budget is spent;
 *   {"sweep": true}                   (crontab, every minute) kick drains for
 *                                     every stream with staged rows.
 */
import type { JobHelpers, Task } from 'graphile-worker';
import { drainJobKey } from '../src/drain/drain-kicker.js';
import { sweepStagedStreams } from '../src/drain/sweep.js';
import { drainWithWorkerConnection } from '../src/worker/drain-runner.js';
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
      const kicked = await sweepStagedStreams(ctx.pool, ctx.kicker);
      if (kicked.length) helpers.logger.debug(`sluice_drain sweep: kicked ${kicked.join(', ')}`);
      return;
    }
    const streamName = String(payload.stream);
    const slot = Number.isInteger(payload.slot) ? (payload.slot as number) : 0;
    const stream = await getStream(ctx.pool, streamName);
    if (!stream) {
      helpers.logger.warn(`sluice_drain: stream ${streamName} no longer exists; nothing to drain`);
      return;
    }
    const run = await drainWithWorkerConnection(ctx, stream, { maxMs: ctx.config.drainJobMaxMs, signal: ctx.shutdownSignal });
    // undefined: shutting down before a connection was free; the rows stay staged for the next worker.
    const more = run !== undefined && run.more && !ctx.shutdownSignal.aborted;
    // Time budget spent with rows left: hand the slot back and queue a follow-up.
    if (more) await helpers.addJob('sluice_drain', { stream: streamName, slot }, { jobKey: drainJobKey(streamName, slot), maxAttempts: 5 });
  };
}
