/** Task `sluice_rotate_partitions` (crontab, hourly): premake future month partitions for every stream. */
import type { Task } from 'graphile-worker';
import { premakeAllStreams } from '../src/partitions/premake.js';
import type { WorkerContext } from '../src/worker/context.js';

export function sluiceRotatePartitionsTask(ctx: WorkerContext): Task {
  return async (_payload, helpers) => {
    await helpers.withPgClient((client) => premakeAllStreams(client, ctx.log));
  };
}
