/**
 * The Ingestor: validates events, buffers them, and flushes with COPY into
 * the stream's UNLOGGED staging table on dedicated connections, by size
 * (rows or bytes) or by age. `push()` applies back-pressure when too many
 * rows wait; `ingest()`/`flush()` resolve once rows are committed:
 *
 * - ack "staged": committed in staging (fast; lost if Postgres crashes before the drain);
 * - ack "durable": additionally drained into the logged, partitioned table.
 *
 * Rejected events go to sluice.rejects in the same transaction as the batch
 * they arrived with, so an acknowledgement always covers both.
 */
import type { Logger } from '../logger.js';
import { backoffMs, coerceError, isTransientError, sleep } from '../errors.js';
import type { ConnectionSet } from '../db/connections.js';
import type { DrainKicker } from '../drain/drain-kicker.js';
import { quoteIdent, stagingTable } from '../streams/names.js';
import type { StreamDefinition } from '../streams/registry.js';
import { EventEncoder, Rejection, rawText, type RejectReason } from './event-encoder.js';
import { writeBatch, type CopyTarget, type WriteResult } from './copy-writer.js';
import { CopyBuffer } from './copy-buffer.js';
import { DurableTracker } from './durable-tracker.js';
import type { RejectRow, RejectSource } from './rejects.js';

export type AckLevel = 'staged' | 'durable';

export interface IngestorOptions {
  readonly stream: StreamDefinition;
  readonly source: RejectSource;
  readonly ack: AckLevel;
  /** Dedicated COPY connections (possibly shared with other streams' Ingestors). */
  readonly flushers: ConnectionSet;
  readonly kicker?: DrainKicker;
  readonly flushRows: number;
  readonly flushBytes: number;
  readonly flushAgeMs: number;
  readonly bufferRows: number;
  readonly log: Logger;
  /**
   * Called whenever an ingest() call starts waiting for its rows to commit;
   * the worker uses it to flush at once when every running job is waiting
   * (nothing more can arrive until they complete). See flushWaiting().
   */
  readonly onWait?: () => void;
  /** Attempts for a batch that fails on a lost connection before its callers see the error. */
  readonly maxWriteAttempts?: number;
}

export interface IngestRejection {
  /** Position of the event in the array given to ingest(). */
  readonly index: number;
  readonly reason: RejectReason;
  readonly message: string;
}

export interface IngestReceipt {
  readonly accepted: number;
  readonly rejected: number;
  readonly rejections: readonly IngestRejection[];
}

export interface IngestorStats {
  readonly accepted: number;
  readonly rejected: number;
  readonly batches: number;
  readonly buffered: number;
}

class Deferred<T> {
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
  readonly copy = new CopyBuffer();
  readonly raws: Array<string | undefined> = [];
  readonly rejects: RejectRow[] = [];
  waiting = 0;
  /** Its age (or an explicit flush) made it due, even if not full. */
  due = false;
  /** Some caller wants the durable ack: fetch the commit's transaction id. */
  wantXid = false;
  readonly openedAt = Date.now();
  readonly done = new Deferred<WriteResult>();

  get size(): number {
    return this.copy.count + this.rejects.length;
  }
}

interface Segment {
  batch: Batch;
  /** Line index range [from, to) of this call's accepted rows inside the batch. */
  from: number;
  to: number;
  /** For each line in the range: index of the event in the caller's array. */
  eventIndexes: number[];
}

const DEFAULT_MAX_WRITE_ATTEMPTS = 10;
/** While a COPY is in flight, the open batch may grow to this many times flushRows (fewer, larger COPYs under load). */
const GROW_WHILE_BUSY = 10;
/** push() lets the event loop run (socket I/O, COPY progress) after this many events. */
const YIELD_EVERY = 1_000;

export class Ingestor {
  readonly stream: StreamDefinition;
  private readonly encoder: EventEncoder;
  private readonly target: CopyTarget;
  private readonly durable: DurableTracker;
  private open: Batch | undefined;
  private readonly sealed: Batch[] = [];
  private readonly outstanding = new Set<Batch>();
  private ageTimer: NodeJS.Timeout | undefined;
  private active = 0;
  private buffered = 0;
  private spaceWaiters: Array<() => void> = [];
  private closed = false;
  private sinceYield = 0;
  private waiting = 0;
  /** The first batch that failed for good: flush() and close() report it. */
  private failure: Error | undefined;
  private counters = { accepted: 0, rejected: 0, batches: 0 };

  constructor(private readonly options: IngestorOptions) {
    this.stream = options.stream;
    this.encoder = new EventEncoder(options.stream);
    const columns = this.encoder.copyColumns;
    this.target = {
      stream: options.stream.name,
      copySql: `COPY ${stagingTable(options.stream.name)} (${columns.map(quoteIdent).join(', ')}) FROM STDIN`,
      columns,
      source: options.source,
    };
    this.durable = new DurableTracker(options.stream.name, options.flushers, options.log);
  }

  get ack(): AckLevel {
    return this.options.ack;
  }

  stats(): IngestorStats {
    return { ...this.counters, buffered: this.buffered };
  }

  /**
   * Buffer one event. Resolves as soon as it is buffered — or, when the
   * buffer is full, once a flush made room (back-pressure). Use flush() or
   * ingest() to learn when rows are committed.
   */
  async push(event: unknown, raw?: string): Promise<void> {
    while (this.buffered >= this.options.bufferRows) await this.waitForSpace();
    this.offer(event, raw);
    // A tight push loop never yields to I/O on its own (awaiting a resolved promise
    // runs only microtasks): give the COPY in flight a turn now and then, so encoding
    // and Postgres work overlap instead of alternating.
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
  ): Promise<IngestReceipt> {
    const durable = ack === 'durable';
    const segments: Segment[] = [];
    const rejections: IngestRejection[] = [];
    for (let i = 0; i < events.length; i++) {
      while (this.buffered >= this.options.bufferRows) await this.waitForSpace();
      const placed = this.offer(events[i], raws?.[i], durable);
      if (placed.rejection) rejections.push({ index: i, reason: placed.rejection.reason, message: placed.rejection.message });
      this.track(segments, placed.batch, placed.line, i);
    }
    const results = await this.awaitSegments(segments, durable, signal);
    for (const { segment, result } of results) {
      for (const r of result.refused) {
        if (r.index >= segment.from && r.index < segment.to) {
          rejections.push({ index: segment.eventIndexes[r.index - segment.from] ?? -1, reason: 'copy_rejected', message: r.message });
        }
      }
    }
    rejections.sort((a, b) => a.index - b.index);
    return { accepted: events.length - rejections.length, rejected: rejections.length, rejections };
  }

  /**
   * Seal what is buffered and resolve when everything pushed so far is
   * committed (per the ack level). Throws if any batch failed since the
   * Ingestor was created: those events were never acknowledged.
   */
  async flush(): Promise<void> {
    const durable = this.options.ack === 'durable';
    if (durable && this.open) this.open.wantXid = true;
    const batches = [...this.outstanding];
    this.sealOpen();
    const results = await Promise.all(batches.map(async (b) => ({ batch: b, result: await b.done.promise })));
    if (durable) await Promise.all(results.map(({ batch, result }) => this.confirmDurable(batch, result)));
    if (this.failure) throw this.failure;
  }

  /** Stop taking events, flush everything, then fail any wait still pending. Connections belong to the caller. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      while (this.outstanding.size > 0) await this.flush();
      if (this.failure) throw this.failure;
    } finally {
      if (this.ageTimer) clearTimeout(this.ageTimer);
      this.durable.close();
    }
  }

  /** Wait until a committed batch is durable (see DurableTracker); no-op for batches that wrote no rows. */
  private async confirmDurable(batch: Batch, result: WriteResult, signal?: AbortSignal): Promise<void> {
    if (!result.xid) return;
    const refused = new Set(result.refused.map((r) => r.index));
    const eventIds: string[] = [];
    const occurredAts: string[] = [];
    for (let i = 0; i < batch.copy.count; i++) {
      if (refused.has(i)) continue;
      const line = batch.copy.line(i);
      const first = line.indexOf('\t');
      const second = line.indexOf('\t', first + 1);
      eventIds.push(line.slice(0, first));
      occurredAts.push(line.slice(first + 1, second));
    }
    await this.durable.wait(result.xid, { eventIds, occurredAts }, signal);
  }

  /**
   * Validate and place one event without waiting (callers check `full`).
   * Returns the batch it went into and its line, or line -1 and the Rejection.
   */
  offer(event: unknown, raw?: string, durable = this.options.ack === 'durable'): { batch: Batch; line: number; rejection?: Rejection } {
    if (this.closed) throw new Error(`ingestor for stream ${this.stream.name} is closed`);
    const batch = this.openBatch();
    if (durable) batch.wantXid = true;
    const encoded = this.encoder.encode(event);
    if (encoded instanceof Rejection) {
      batch.rejects.push({ reason: encoded.reason, message: encoded.message, raw: rawText(event, raw) });
      this.counters.rejected++;
      return { batch, line: -1, rejection: encoded };
    }
    const line = batch.copy.count;
    batch.copy.append(encoded);
    batch.raws.push(raw);
    this.buffered++;
    this.counters.accepted++;
    if (batch.copy.count >= this.options.flushRows || batch.copy.bytes >= this.options.flushBytes) {
      // Seal now if a connection is free; while COPYs are in flight, keep growing (up to a bound).
      if (this.active < this.options.flushers.size || batch.copy.count >= this.options.flushRows * GROW_WHILE_BUSY) this.sealOpen();
    }
    return { batch, line };
  }

  /** Record input that never became an event (e.g. unparsable JSON) as a reject in the next batch. */
  rejectInput(reason: RejectReason, message: string, raw: string): void {
    if (this.closed) throw new Error(`ingestor for stream ${this.stream.name} is closed`);
    this.openBatch().rejects.push({ reason, message, raw: rawText(undefined, raw) });
    this.counters.rejected++;
  }

  /** True when push() would wait. */
  get full(): boolean {
    return this.buffered >= this.options.bufferRows;
  }

  waitForSpace(): Promise<void> {
    if (!this.full) return Promise.resolve();
    return new Promise((resolve) => this.spaceWaiters.push(resolve));
  }

  /** ingest() calls currently waiting for their rows to commit (on any batch). */
  get waitingCalls(): number {
    return this.waiting;
  }

  /** ingest() calls waiting on the open batch (not yet being written). */
  get waitingOnOpen(): number {
    return this.open?.waiting ?? 0;
  }

  /** Rows in the open batch. */
  get openRows(): number {
    return this.open?.copy.count ?? 0;
  }

  /** No COPY in flight or queued. */
  get idle(): boolean {
    return this.active === 0 && this.sealed.length === 0;
  }

  /** Seal the open batch now if some ingest() call waits on it (instead of waiting for its age). */
  flushWaiting(): void {
    if (this.open && this.open.waiting > 0) this.sealOpen();
  }

  private track(segments: Segment[], batch: Batch, line: number, eventIndex: number): void {
    let segment = segments[segments.length - 1];
    if (!segment || segment.batch !== batch) {
      segment = { batch, from: line >= 0 ? line : batch.copy.count, to: line >= 0 ? line : batch.copy.count, eventIndexes: [] };
      segments.push(segment);
      batch.waiting++;
    }
    if (line >= 0) {
      segment.to = line + 1;
      segment.eventIndexes.push(eventIndex);
    }
  }

  private async awaitSegments(
    segments: Segment[],
    durable: boolean,
    signal?: AbortSignal,
  ): Promise<Array<{ segment: Segment; result: WriteResult }>> {
    this.waiting++;
    let results: Array<{ segment: Segment; result: WriteResult }>;
    try {
      if (segments.some((s) => s.batch === this.open)) this.options.onWait?.();
      results = await Promise.all(
        segments.map(async (segment) => {
          try {
            return { segment, result: await segment.batch.done.promise };
          } finally {
            segment.batch.waiting--;
          }
        }),
      );
    } finally {
      this.waiting--;
    }
    if (durable) await Promise.all(results.map(({ segment, result }) => this.confirmDurable(segment.batch, result, signal)));
    return results;
  }

  private openBatch(): Batch {
    if (this.open) return this.open;
    const batch = new Batch();
    this.open = batch;
    this.outstanding.add(batch);
    this.ageTimer = setTimeout(() => {
      this.ageTimer = undefined;
      batch.due = true;
      this.pump();
    }, this.options.flushAgeMs);
    return batch;
  }

  private sealOpen(): void {
    const batch = this.open;
    if (!batch) return;
    this.open = undefined;
    if (this.ageTimer) {
      clearTimeout(this.ageTimer);
      this.ageTimer = undefined;
    }
    this.sealed.push(batch);
    this.pump();
  }

  /** Start COPYs while connections are free: sealed batches first, then the open one if it is due or full. */
  private pump(): void {
    while (this.active < this.options.flushers.size) {
      let batch = this.sealed.shift();
      if (!batch && this.open && (this.open.due || this.open.copy.count >= this.options.flushRows || this.open.copy.bytes >= this.options.flushBytes)) {
        batch = this.open;
        this.open = undefined;
        if (this.ageTimer) {
          clearTimeout(this.ageTimer);
          this.ageTimer = undefined;
        }
      }
      if (!batch) return;
      this.active++;
      void this.writeWithRetries(batch).finally(() => {
        this.active--;
        this.pump();
      });
    }
  }

  private async writeWithRetries(batch: Batch): Promise<void> {
    const maxAttempts = this.options.maxWriteAttempts ?? DEFAULT_MAX_WRITE_ATTEMPTS;
    const started = Date.now();
    try {
      for (let attempt = 0; ; attempt++) {
        const connection = await this.options.flushers.acquire();
        if (!connection) throw new Error('sluice: flush connections are closed');
        try {
          const client = await connection.get();
          const result = await writeBatch(client, this.target, batch, batch.wantXid);
          this.options.flushers.release(connection);
          this.counters.batches++;
          this.options.log.debug(
            { stream: this.stream.name, rows: result.written, rejected: result.rejected, duration_ms: Date.now() - started },
            'ingest: flushed batch',
          );
          if (result.refused.length) {
            this.counters.accepted -= result.refused.length;
            this.counters.rejected += result.refused.length;
            this.options.log.warn({ stream: this.stream.name, refused: result.refused.length }, 'ingest: Postgres refused rows; isolated them into sluice.rejects');
          }
          batch.done.resolve(result);
          if (result.written > 0) this.options.kicker?.kick(this.stream.name);
          return;
        } catch (err) {
          this.options.flushers.release(connection);
          if (!isTransientError(err) || attempt + 1 >= maxAttempts) throw err;
          connection.markBroken();
          const delay = backoffMs(attempt, 100, 5_000);
          this.options.log.warn(
            { stream: this.stream.name, attempt: attempt + 1, delay_ms: delay, err: coerceError(err).message },
            'ingest: flush failed on a transient error, retrying the batch',
          );
          await sleep(delay);
        }
      }
    } catch (err) {
      const error = coerceError(err);
      this.options.log.error({ stream: this.stream.name, rows: batch.copy.count, err: error.message }, 'ingest: flush failed; the batch was not acknowledged');
      const failed = new Error(`sluice: flush to stream ${this.stream.name} failed: ${error.message}; ${batch.copy.count} event(s) were not stored`, { cause: error });
      this.failure ??= failed;
      batch.done.reject(failed);
    } finally {
      this.outstanding.delete(batch);
      this.buffered -= batch.copy.count;
      if (!this.full && this.spaceWaiters.length) {
        const waiters = this.spaceWaiters;
        this.spaceWaiters = [];
        for (const wake of waiters) wake();
      }
    }
  }
}
