/**
 * A batch of the Ingestor: encoded COPY lines, the raw input kept for their
 * rejects, and rejects, written to staging in one transaction; and the
 * segments by which ingest() callers find their own lines in it.
 */
import { randomUUID } from 'node:crypto';
import { CopyBuffer } from './copy-buffer.js';
import type { WriteResult } from './copy-writer.js';
import type { IngestReceipt, IngestRejection } from './ingestor-types.js';
import type { RejectRow } from './rejects.js';

export class Deferred<T> {
  readonly promise: Promise<T>;
  resolve!: (value: T) => void;
  reject!: (err: Error) => void;
  constructor() {
    this.promise = new Promise<T>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
    // Callers may never await a batch nobody waits on; keep Node quiet about it.
    this.promise.catch(() => undefined);
  }
}

export class Batch {
  /** Kept across retries of this batch: see copy-writer's sluice.flushes. */
  readonly flushId = randomUUID();
  readonly copy = new CopyBuffer();
  readonly raws: Array<string | undefined> = [];
  readonly rejects: RejectRow[] = [];
  /**
   * (event_id, occurred_at) as encoded, for the durable ack: of every line from
   * `keysFrom` on, the line where the first caller wanting the durable ack
   * placed an event (earlier lines are staged-ack callers': nobody confirms
   * them). A batch nobody wants durable keeps none (undefined).
   */
  keysFrom: number | undefined;
  readonly eventIds: string[] = [];
  readonly occurredAts: string[] = [];
  /** Bytes this batch holds in memory: COPY text, raw input kept for rejects, rejects. */
  bytes = 0;
  /** ingest() calls waiting on this batch. */
  waiting = 0;
  /** Its age (or an explicit flush) made it due, even if not full. */
  due = false;
  /** Some caller wants the durable ack: fetch the commit's transaction id. */
  wantXid = false;
  readonly done = new Deferred<WriteResult>();
  /**
   * Set when the batch committed with a transaction id (some caller wanted the
   * durable ack): resolves, once its rows left staging, with the lines that are
   * not in the durable table. Computed once per batch, shared by its callers.
   */
  confirmation: Promise<number[]> | undefined;

  /** Rows and rejects: both count against the buffer. */
  get held(): number {
    return this.copy.count + this.rejects.length;
  }

  /** Written (or failed for good): nothing reads its text again, only its line numbers and keys. */
  releaseText(): void {
    this.copy.release();
    this.raws.length = 0;
    this.rejects.length = 0;
  }
}

/** One ingest() call's accepted lines inside one batch. */
export interface Segment {
  readonly batch: Batch;
  /** Line index range [from, to) of this call's accepted rows inside the batch. */
  from: number;
  to: number;
  /** For each line in the range: index of the event in the caller's array. */
  readonly eventIndexes: number[];
}

/** Extend the caller's segments with the event it just placed (line -1: a reject, no line). */
export function trackSegment(segments: Segment[], batch: Batch, line: number, eventIndex: number): void {
  let segment = segments[segments.length - 1];
  if (!segment || segment.batch !== batch) {
    const start = line >= 0 ? line : batch.copy.count;
    segment = { batch, from: start, to: start, eventIndexes: [] };
    segments.push(segment);
    batch.waiting++;
  }
  if (line >= 0) {
    segment.to = line + 1;
    segment.eventIndexes.push(eventIndex);
  }
}

/** Wait until each segment's batch is written; a caller stops counting as waiting on a batch once it is. */
export function awaitCommitted(segments: readonly Segment[]): Promise<Array<{ segment: Segment; result: WriteResult }>> {
  return Promise.all(
    segments.map(async (segment) => {
      try {
        return { segment, result: await segment.batch.done.promise };
      } finally {
        segment.batch.waiting--;
      }
    }),
  );
}

/** An ingest() call's receipt: its events rejected before the COPY, and those Postgres refused in it, by position. */
export function receiptOf(
  events: number,
  rejections: IngestRejection[],
  committed: ReadonlyArray<{ segment: Segment; result: WriteResult }>,
): IngestReceipt {
  for (const { segment, result } of committed) rejections.push(...refusedInSegment(segment, result));
  rejections.sort((a, b) => a.index - b.index);
  return { accepted: events - rejections.length, rejected: rejections.length, rejections };
}

/** The caller's events among the lines Postgres refused in the batch, as its receipt names them. */
function refusedInSegment(segment: Segment, result: WriteResult): IngestRejection[] {
  return result.refused
    .filter((r) => r.index >= segment.from && r.index < segment.to)
    .map((r) => ({ index: segment.eventIndexes[r.index - segment.from] ?? -1, reason: 'copy_rejected' as const, message: r.message }));
}
