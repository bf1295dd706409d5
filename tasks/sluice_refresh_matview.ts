/**
 * Task `sluice_refresh_matview`:
 *   {}                (crontab, every minute) refresh every enabled view that is due;
 *   {"name": "v"}     refresh that view now.
 * On graphile-worker's pool (helpers.withPgClient): inside the worker's
 * connection budget. One refresh at a time per view (advisory try-lock in
 * src/matviews/refresh.ts), so overlapping sweeps of several workers skip
 * a view another is refreshing.
 */
import type { Task } from 'graphile-worker';
import { PermanentJobError, SluiceError } from '../src/errors.js';
import { refreshDueMatviews, refreshMatview } from '../src/matviews/refresh.js';
import type { WorkerContext } from '../src/worker/context.js';
import { retireJob } from '../src/worker/permanent-failure.js';

/** A job naming a view that is not registered (or cannot be): no retry can fix it. */
const PERMANENT_CODES = new Set(['unknown_matview', 'invalid_matview_name']);

export function sluiceRefreshMatviewTask(ctx: WorkerContext): Task {
  return async (raw, helpers) => {
    const name = (raw as { name?: unknown } | null)?.name;
    try {
      await helpers.withPgClient(async (client) => {
        if (typeof name === 'string') await refreshMatview(client, name, ctx.log);
        else await refreshDueMatviews(client, ctx.log, ctx.shutdownSignal);
      });
    } catch (err) {
      // Retired after the client went back to the pool: a pool of 2 has no second connection to spare.
      if (err instanceof SluiceError && PERMANENT_CODES.has(err.code)) throw await retireJob(helpers, new PermanentJobError(err.message, { cause: err }));
      throw err;
    }
  };
}
