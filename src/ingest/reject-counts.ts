/**
 * Counting the rejects one Ingestor produced, by reason, in memory: `sluice
 * ingest` prints them as its summary. Not read back from sluice.rejects: other
 * producers write to the same stream at the same time (a second `sluice ingest`
 * of the same stream, jobs, clients), and their rejects are not this run's.
 */
import type { RejectReason } from './event-encoder.js';

export interface RejectCount {
  readonly reason: RejectReason;
  readonly count: number;
  /** One of the messages (the first seen). */
  readonly example: string;
}

export class RejectTally {
  private readonly byReason = new Map<RejectReason, { count: number; example: string }>();

  add(reason: RejectReason, message: string): void {
    const entry = this.byReason.get(reason);
    if (entry) entry.count++;
    else this.byReason.set(reason, { count: 1, example: message });
  }

  /** By reason, most first (then by reason, for a stable order). */
  counts(): RejectCount[] {
    return [...this.byReason].map(([reason, e]) => ({ reason, count: e.count, example: e.example })).sort(byCount);
  }
}

function byCount(a: RejectCount, b: RejectCount): number {
  return b.count - a.count || a.reason.localeCompare(b.reason);
}

/** Counts of several Ingestors (a stream's definition changed mid-run: its replaced Ingestors), added up. */
export function addRejectCounts(...lists: ReadonlyArray<readonly RejectCount[]>): RejectCount[] {
  const sum = new Map<RejectReason, { count: number; example: string }>();
  for (const list of lists) {
    for (const r of list) {
      const entry = sum.get(r.reason);
      if (entry) entry.count += r.count;
      else sum.set(r.reason, { count: r.count, example: r.example });
    }
  }
  return [...sum].map(([reason, e]) => ({ reason, count: e.count, example: e.example })).sort(byCount);
}

/** `after` minus `before` (counts taken from the same Ingestor earlier): what happened in between. */
export function rejectCountsSince(before: readonly RejectCount[], after: readonly RejectCount[]): RejectCount[] {
  const earlier = new Map(before.map((r) => [r.reason, r.count]));
  return after.map((r) => ({ ...r, count: r.count - (earlier.get(r.reason) ?? 0) })).filter((r) => r.count > 0);
}
