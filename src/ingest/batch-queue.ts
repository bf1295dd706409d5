/**
 * When batches go out: the open batch takes events until it is full (rows,
 * bytes or rejects) or its age is up; full batches are sealed and written as
 * dedicated connections come free. While every connection is busy the open
 * batch keeps growing (fewer, larger COPYs under load), within bounds.
 */
import { Batch } from './batch.js';

/**
 * While a COPY is in flight, the open batch may grow to this many times
 * flushRows (fewer, larger COPYs under load)... Set while profiling `sluice
 * bench` (commit "Tuning from bench profiles"); no other factor was measured,
 * so 10 is a judgement: with the defaults it makes a grown batch 50,000 rows,
 * the --buffer-rows bound back-pressure holds anyway.
 */
const GROW_WHILE_BUSY = 10;
/**
 * ...but to no more than this many times flushBytes: big events must not make
 * one giant batch. A judgement, not measured: with the defaults one batch's
 * text stays at 8 MiB, a quarter of --buffer-bytes.
 */
const GROW_BYTES_WHILE_BUSY = 2;
/** A batch is due once it holds this many rejects, whatever else it holds. */
const REJECTS_PER_BATCH = 1_000;

export interface BatchQueueOptions {
  readonly flushRows: number;
  readonly flushBytes: number;
  readonly flushAgeMs: number;
  /** How many batches may be written at once (the dedicated connections). */
  readonly writers: () => number;
  /** Write one batch; the queue starts the next when it settles. */
  readonly write: (batch: Batch) => Promise<void>;
}

export class BatchQueue {
  private openBatch: Batch | undefined;
  private readonly sealed: Batch[] = [];
  /** Every batch not yet written (open, sealed or being written). */
  readonly outstanding = new Set<Batch>();
  private ageTimer: NodeJS.Timeout | undefined;
  private active = 0;

  constructor(private readonly options: BatchQueueOptions) {}

  get open(): Batch | undefined {
    return this.openBatch;
  }

  /** No COPY in flight or queued. */
  get idle(): boolean {
    return this.active === 0 && this.sealed.length === 0;
  }

  /** The batch taking events now (opened on demand, with its age timer). */
  current(): Batch {
    if (this.openBatch) return this.openBatch;
    const batch = new Batch();
    this.openBatch = batch;
    this.outstanding.add(batch);
    this.ageTimer = setTimeout(() => {
      this.ageTimer = undefined;
      batch.due = true;
      this.pump();
    }, this.options.flushAgeMs);
    return batch;
  }

  /** After adding to `batch`: seal it now if full and a connection is free; while all are busy, keep growing it, within bounds. */
  sealIfFull(batch: Batch): void {
    if (!this.isFull(batch)) return;
    const busy = this.active >= this.options.writers();
    if (
      !busy ||
      batch.copy.count >= this.options.flushRows * GROW_WHILE_BUSY ||
      batch.bytes >= this.options.flushBytes * GROW_BYTES_WHILE_BUSY ||
      batch.rejects.length >= REJECTS_PER_BATCH
    ) {
      this.seal();
    }
  }

  /** Seal the open batch now (an explicit flush, or callers waiting on it). */
  seal(): void {
    const batch = this.takeOpen();
    if (!batch) return;
    this.sealed.push(batch);
    this.pump();
  }

  /** A written (or failed) batch leaves the queue. */
  done(batch: Batch): void {
    this.outstanding.delete(batch);
  }

  stop(): void {
    if (this.ageTimer) clearTimeout(this.ageTimer);
    this.ageTimer = undefined;
  }

  private isFull(batch: Batch): boolean {
    return batch.copy.count >= this.options.flushRows || batch.bytes >= this.options.flushBytes || batch.rejects.length >= REJECTS_PER_BATCH;
  }

  private takeOpen(): Batch | undefined {
    const batch = this.openBatch;
    this.openBatch = undefined;
    this.stop();
    return batch;
  }

  /** Start writes while connections are free: sealed batches first, then the open one if it is due or full. */
  private pump(): void {
    while (this.active < this.options.writers()) {
      let batch = this.sealed.shift();
      if (!batch && this.openBatch && (this.openBatch.due || this.isFull(this.openBatch))) batch = this.takeOpen();
      if (!batch) return;
      this.active++;
      void this.options.write(batch).finally(() => {
        this.active--;
        this.pump();
      });
    }
  }
}
