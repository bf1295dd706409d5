/**
 * The Ingestor: validates events, buffers them, and flushes with COPY into
 * the stream's UNLOGGED staging table on dedicated connections, by size
 * (rows or bytes) or by age. `push()` applies back-pressure when too much is
 * held; `ingest()`/`flush()` resolve once rows are committed:
 *
 * - ack "staged": committed in staging (fast; lost if Postgres crashes before the drain);
 * - ack "durable": additionally drained into the logged, partitioned table (durable-acks.ts).
 *
 * Rejected events go to sluice.rejects in the same transaction as the batch
 * they arrived with, so an acknowledgement always covers both. Batches and
 * their callers' segments: batch.ts; placing events: intake.ts; the retrying
 * write: batch-flusher.ts.
 */
import type { StreamDefinition } from '../streams/registry.js';
import { EventEncoder, type RejectReason } from './event-encoder.js';
import { stagingCopyTarget, type CopyTarget, type WriteResult } from './copy-writer.js';
import { awaitCommitted, receiptOf, trackSegment, type Batch, type Segment } from './batch.js';
import { BatchQueue } from './batch-queue.js';
import { BufferGauge } from './buffer-gauge.js';
import { flushBatch } from './batch-flusher.js';
import { DurableAcks } from './durable-acks.js';
import type { AckLevel, IngestorOptions, IngestReceipt, IngestRejection, IngestorStats } from './ingestor-types.js';
import { Intake, type Placed } from './intake.js';
import type { InputKey } from './rejects.js';
import type { RejectCount } from './reject-counts.js';

export type { AckLevel, IngestorOptions, IngestReceipt, IngestRejection, IngestorStats } from './ingestor-types.js';

/**
 * push() lets the event loop run (socket I/O, COPY progress) after this many
 * events. A judgement, not tuned: encoding costs ~3 µs an event
 * (docs/benchmarks.md), so push() holds the loop ~3 ms at most between yields.
 */
const YIELD_EVERY = 1_000;

export class Ingestor {
  readonly stream: StreamDefinition;
  private readonly encoder: EventEncoder;
  private readonly target: CopyTarget;
  private readonly acks: DurableAcks;
  private readonly queue: BatchQueue;
  private readonly gauge: BufferGauge;
  private closed = false;
  private sinceYield = 0;
  private waiting = 0;
  /** The first batch that failed for good: flush() and close() report it. */
  private failure: Error | undefined;
  private readonly intake: Intake;

  constructor(private readonly options: IngestorOptions) {
    this.stream = options.stream;
    this.encoder = new EventEncoder(options.stream, options.clock);
    this.target = stagingCopyTarget(options.stream.name, this.encoder.copyColumns, options.source);
    this.gauge = new BufferGauge(options.bufferRows, options.bufferBytes);
    this.queue = new BatchQueue({
      flushRows: options.flushRows,
      flushBytes: options.flushBytes,
      flushAgeMs: options.flushAgeMs,
      writers: () => options.flushers.size,
      write: (batch) => this.write(batch),
    });
    this.intake = new Intake(this.encoder, this.queue, this.gauge);
    this.acks = new DurableAcks({
      stream: options.stream.name,
      connections: options.flushers,
      log: options.log,
      onStall: () => options.kicker?.kick(options.stream.name),
      holdRows: options.ack === 'durable',
      release: (rows) => this.gauge.release(rows, 0),
    });
  }

  get ack(): AckLevel {
    return this.options.ack;
  }

  stats(): IngestorStats {
    return { ...this.intake.counters, buffered: this.gauge.heldRows, bufferedBytes: this.gauge.heldBytes };
  }

  /** What this Ingestor rejected so far, by reason (as counted in stats().rejected). */
  rejectCounts(): RejectCount[] {
    return this.intake.tally.counts();
  }

  /**
   * Buffer one event. Resolves as soon as it is buffered — or, when the
   * buffer is full, once a flush made room (back-pressure). Use flush() or
   * ingest() to learn when rows are committed.
   */
  async push(event: unknown, raw?: string): Promise<void> {
    while (this.full) await this.waitForSpace();
    this.offer(event, raw);
    // A tight loop of resolved awaits never yields to I/O: let the COPY in flight progress, so encoding and Postgres overlap.
    if (++this.sinceYield >= YIELD_EVERY) {
      this.sinceYield = 0;
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
  }

  /**
   * Validate and buffer events, then resolve when every one of them is
   * committed (per this Ingestor's ack level), with what was rejected and why.
   * `raws` (optional) carries the original text of each event for rejects.
   */
  async ingest(
    events: readonly unknown[],
    raws?: ReadonlyArray<string | undefined>,
    ack: AckLevel = this.options.ack,
    signal?: AbortSignal,
    /** The identity of event i, should it be rejected (see RejectRow.inputKey). */
    inputKeyOf?: (index: number) => string,
  ): Promise<IngestReceipt> {
    const durable = ack === 'durable';
    const segments: Segment[] = [];
    const rejections: IngestRejection[] = [];
    for (let i = 0; i < events.length; i++) {
      while (this.full) await this.waitForSpace();
      const placed = this.offer(events[i], raws?.[i], durable, inputKeyOf && (() => inputKeyOf(i)));
      if (placed.rejection) rejections.push({ index: i, reason: placed.rejection.reason, message: placed.rejection.message });
      trackSegment(segments, placed.batch, placed.line, i);
    }
    return receiptOf(events.length, rejections, await this.awaitSegments(segments, durable, signal));
  }

  /**
   * Seal what is buffered and resolve when everything pushed so far is
   * committed (per the ack level). Throws if any batch failed since the
   * Ingestor was created: those events were never acknowledged.
   */
  async flush(): Promise<void> {
    const durable = this.options.ack === 'durable';
    if (durable && this.queue.open) this.queue.open.wantXid = true;
    const batches = [...this.queue.outstanding];
    this.queue.seal();
    await Promise.allSettled(batches.map((b) => b.done.promise));
    if (this.failure) throw this.failure;
    // Every committed batch still being confirmed, not only those this call sealed: a batch
    // whose COPY committed earlier has left `outstanding` but may still be staged.
    if (durable) await this.acks.settle();
  }

  /**
   * Close a replaced Ingestor (its stream's definition moved on): like close(),
   * but first let every durable confirmation already under way finish, so a
   * flush() or ingest() waiting on one is not aborted by the swap. A failure
   * (an event that did not become durable) is thrown, to reach the holder.
   */
  async retire(): Promise<void> {
    try {
      if (!this.closed) await this.flush();
      await this.acks.settle();
    } finally {
      await this.close();
    }
  }

  /** Stop taking events, flush everything, then fail any wait still pending. Connections belong to the caller. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      while (this.queue.outstanding.size > 0) await this.flush();
      if (this.failure) throw this.failure;
    } finally {
      this.queue.stop();
      this.acks.close();
    }
  }

  /**
   * Validate and place one event without waiting (callers check `full`).
   * Returns the batch it went into and its line, or line -1 and the Rejection.
   */
  offer(event: unknown, raw?: string, durable = this.options.ack === 'durable', inputKey?: InputKey): Placed {
    this.assertOpen();
    return this.intake.offer(event, raw, durable, inputKey);
  }

  /** Record input that never became an event (e.g. unparsable JSON) as a reject in the next batch. */
  rejectInput(reason: RejectReason, message: string, raw: string, inputKey?: string): void {
    this.assertOpen();
    this.intake.rejectInput(reason, message, raw, inputKey);
  }

  private assertOpen(): void {
    if (this.closed) throw new Error(`ingestor for stream ${this.stream.name} is closed`);
  }

  /** True when push() would wait: too many rows (and rejects) or too many bytes held; waitForSpace() resolves when it is not. */
  get full(): boolean {
    return this.gauge.full;
  }
  waitForSpace(): Promise<void> {
    return this.gauge.waitForSpace();
  }

  /** For the worker's early flush (IngestHub): ingest() calls waiting on any batch, and on the open one; rows in it; no COPY in flight or queued. */
  get waitingCalls(): number {
    return this.waiting;
  }
  get waitingOnOpen(): number {
    return this.queue.open?.waiting ?? 0;
  }
  get openRows(): number {
    return this.queue.open?.copy.count ?? 0;
  }
  get idle(): boolean {
    return this.queue.idle;
  }

  /** Seal the open batch now if some ingest() call waits on it (instead of waiting for its age). */
  flushWaiting(): void {
    if (this.queue.open && this.queue.open.waiting > 0) this.queue.seal();
  }

  private async awaitSegments(segments: Segment[], durable: boolean, signal?: AbortSignal): Promise<Array<{ segment: Segment; result: WriteResult }>> {
    this.waiting++;
    let results: Array<{ segment: Segment; result: WriteResult }>;
    try {
      if (segments.some((s) => s.batch === this.queue.open)) this.options.onWait?.();
      results = await awaitCommitted(segments);
    } finally {
      this.waiting--;
    }
    if (durable) await Promise.all(results.map(({ segment }) => this.acks.confirmSegment(segment, signal)));
    return results;
  }

  private async write(batch: Batch): Promise<void> {
    const held = batch.held;
    let stillHeld = 0;
    try {
      const result = await flushBatch(batch, { target: this.target, flushers: this.options.flushers, log: this.options.log, maxAttempts: this.options.maxWriteAttempts });
      this.intake.written(result);
      if (result.xid) stillHeld = this.acks.start(batch, { ...result, xid: result.xid });
      batch.done.resolve(result);
      if (result.written > 0) this.options.kicker?.kick(this.stream.name);
    } catch (err) {
      this.failure ??= err as Error;
      batch.done.reject(err as Error);
    } finally {
      this.queue.done(batch);
      this.gauge.release(held - stillHeld, batch.bytes);
      batch.releaseText();
    }
  }
}
