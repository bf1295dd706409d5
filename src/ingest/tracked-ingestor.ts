/**
 * An Ingestor that knows whether a push() or ingest() call still uses it. When
 * a stream's definition changes, its holder (the worker's IngestHub, the
 * TypeScript client) routes new calls to a new Ingestor and closes the old one
 * only once the calls it was handed are done: closing earlier would refuse
 * their remaining events or abort their durable waits.
 */
import { Ingestor } from './ingestor.js';
import type { IngestorStats } from './ingestor.js';

export class TrackedIngestor extends Ingestor {
  private calls = 0;
  /** Called when the last running push()/ingest() call finishes. */
  onIdle: (() => void) | undefined;

  override async ingest(...args: Parameters<Ingestor['ingest']>): ReturnType<Ingestor['ingest']> {
    this.calls++;
    try {
      return await super.ingest(...args);
    } finally {
      this.callDone();
    }
  }

  override push(...args: Parameters<Ingestor['push']>): ReturnType<Ingestor['push']> {
    // Not full: the event is placed synchronously, before push() first awaits, so nothing is
    // left to track (the hot path of every client push stays one async call deep).
    if (!this.full) return super.push(...args);
    return this.trackedPush(...args);
  }

  private async trackedPush(...args: Parameters<Ingestor['push']>): ReturnType<Ingestor['push']> {
    this.calls++;
    try {
      return await super.push(...args);
    } finally {
      this.callDone();
    }
  }

  get inUse(): boolean {
    return this.calls > 0;
  }

  private callDone(): void {
    if (--this.calls === 0) this.onIdle?.();
  }
}

/**
 * Retire `ingestor` (flushing what it holds, letting its durable confirmations
 * finish: Ingestor.retire) as soon as no call uses it — not before the next
 * macrotask, so a caller that was handed it a moment ago and calls it from a
 * promise continuation is counted first. Resolves when closed.
 */
export function closeWhenIdle(ingestor: TrackedIngestor): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let started = false;
    const attempt = () => {
      if (started || ingestor.inUse) return;
      started = true;
      ingestor.onIdle = undefined;
      ingestor.retire().then(resolve, reject);
    };
    ingestor.onIdle = attempt;
    setImmediate(attempt);
  });
}

/** Counters of several Ingestors of one stream, added up. */
export function addStats(a: IngestorStats, b: IngestorStats): IngestorStats {
  return {
    accepted: a.accepted + b.accepted,
    rejected: a.rejected + b.rejected,
    batches: a.batches + b.batches,
    buffered: a.buffered + b.buffered,
    bufferedBytes: a.bufferedBytes + b.bufferedBytes,
  };
}
