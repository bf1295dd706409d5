/**
 * Wake the drainers after a flush: enqueue `sluice_drain` jobs, one per drain
 * slot, keyed `sluice_drain:<stream>:<slot>`. graphile-worker's job_key makes
 * this storm-proof: a waiting job is updated in place; a running one keeps
 * running and exactly one follow-up is queued, so rows committed before the
 * kick are always seen by a drain that starts after it.
 *
 * Kicks keep the run_at of a waiting job (add_jobs' job_key_preserve_run_at):
 * a drain held after a failure it cannot classify re-queues itself for when the
 * hold ends, and a flush must not pull it forward (see drain/drain-backoff.ts).
 *
 * Kicks are throttled per stream (leading + trailing edge), so a flush every
 * millisecond still costs at most one add_jobs call per interval, and the
 * last flush is always followed by a kick.
 */
import type { Logger } from '../logger.js';

/**
 * A judgement, not measured: at most ten add_jobs calls a second per stream,
 * while a drain already running picks up new rows without a kick (it lingers,
 * see drain-loop.ts) — the kick only matters for an idle stream.
 */
export const KICK_MIN_INTERVAL_MS = 100;

/**
 * Through sluice.kick_drains (migrations/00014, SECURITY DEFINER): the same
 * add_jobs call, which also works for a producer role that has no access to
 * graphile_worker's tables (the TypeScript client kicks after its flushes).
 */
export const KICK_DRAINS_SQL = `SELECT sluice.kick_drains($1::text, $2::int) AS jobs`;

export type Execute = (text: string, values: unknown[]) => Promise<unknown>;

export function drainJobKey(stream: string, slot: number): string {
  return `sluice_drain:${stream}:${slot}`;
}

export class DrainKicker {
  private readonly lastKick = new Map<string, number>();
  private readonly trailing = new Map<string, NodeJS.Timeout>();
  private readonly inFlight = new Set<Promise<void>>();
  private closed = false;

  constructor(
    private readonly execute: Execute,
    private readonly slots: number,
    private readonly log: Logger,
    private readonly minIntervalMs = KICK_MIN_INTERVAL_MS,
  ) {}

  kick(stream: string): void {
    if (this.closed || this.trailing.has(stream)) return;
    const since = Date.now() - (this.lastKick.get(stream) ?? -Infinity);
    if (since >= this.minIntervalMs) {
      this.fire(stream);
      return;
    }
    this.trailing.set(
      stream,
      setTimeout(() => {
        this.trailing.delete(stream);
        this.fire(stream);
      }, this.minIntervalMs - since),
    );
  }

  private fire(stream: string): void {
    this.lastKick.set(stream, Date.now());
    const done = this.execute(KICK_DRAINS_SQL, [stream, this.slots])
      .then(() => undefined)
      .catch((err: Error) => {
        // Not fatal: the crontab sweep drains what a missed kick left behind.
        this.log.warn({ stream, err: err.message }, 'drain: could not enqueue drain jobs; the minute sweep will pick the rows up');
      });
    this.inFlight.add(done);
    void done.finally(() => this.inFlight.delete(done));
  }

  /** Fire pending trailing kicks now and wait for every kick in flight. */
  async close(): Promise<void> {
    const pending = [...this.trailing.keys()];
    for (const timer of this.trailing.values()) clearTimeout(timer);
    this.trailing.clear();
    for (const stream of pending) this.fire(stream);
    this.closed = true;
    await Promise.all([...this.inFlight]);
  }
}
