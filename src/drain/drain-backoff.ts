/**
 * Per-stream backoff for drain failures the drain cannot classify: not a row
 * the durable table refuses (those are isolated and rejected), not a missing
 * partition (repaired), not a transient conflict or a lost connection
 * (retried). E.g. XX000 from a broken trigger, 58030 an I/O error, 42501 a
 * revoked privilege. Retrying those every few milliseconds fixes nothing and
 * bloats the durable table's indexes with every failed insert, so the stream
 * is held: exponential from 1 s, capped at 5 min, reset by the first success.
 *
 * One instance per worker process; the not-before time also travels in the
 * database as the `run_at` of the re-queued drain job (see tasks/sluice_drain),
 * which flush kicks preserve, so another worker does not start early either.
 */

export const DRAIN_BACKOFF_BASE_MS = 1_000;
export const DRAIN_BACKOFF_CAP_MS = 5 * 60_000;

export interface DrainHold {
  /** Failures in a row. */
  readonly failures: number;
  /** Epoch ms before which the stream is not drained. */
  readonly notBefore: number;
  readonly sqlstate: string | undefined;
  readonly message: string;
}

/** The nth failure in a row waits in [d/2, d], d = min(cap, base · 2^(n−1)): jittered, never near zero. */
export function drainBackoffMs(failures: number, baseMs = DRAIN_BACKOFF_BASE_MS, capMs = DRAIN_BACKOFF_CAP_MS): number {
  const ceiling = Math.min(capMs, baseMs * 2 ** Math.max(0, failures - 1));
  return Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
}

export class DrainBackoff {
  private readonly holds = new Map<string, DrainHold>();

  constructor(
    private readonly baseMs = DRAIN_BACKOFF_BASE_MS,
    private readonly capMs = DRAIN_BACKOFF_CAP_MS,
    private readonly now: () => number = Date.now,
  ) {}

  /** Milliseconds until `stream` may be drained again (0: now). */
  remainingMs(stream: string): number {
    const hold = this.holds.get(stream);
    return hold ? Math.max(0, hold.notBefore - this.now()) : 0;
  }

  current(stream: string): DrainHold | undefined {
    return this.holds.get(stream);
  }

  /** Record a failure; returns the new hold. */
  failed(stream: string, sqlstate: string | undefined, message: string): DrainHold {
    const failures = (this.holds.get(stream)?.failures ?? 0) + 1;
    const hold: DrainHold = { failures, notBefore: this.now() + drainBackoffMs(failures, this.baseMs, this.capMs), sqlstate, message };
    this.holds.set(stream, hold);
    return hold;
  }

  /** A drain run completed: the stream is healthy again. */
  succeeded(stream: string): void {
    this.holds.delete(stream);
  }
}
