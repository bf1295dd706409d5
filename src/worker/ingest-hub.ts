/**
 * The worker's Ingestors, one per stream, all sharing the worker's dedicated
 * flush connections. It also decides when waiting jobs flush early: a
 * `sluice_ingest` job completes only after its rows are committed, so when
 * every running ingest job is waiting (on the open batch or on one being
 * written), nothing more can arrive before a flush and waiting for the flush
 * age would only add latency.
 */
import type pg from 'pg';
import type { Logger } from '../logger.js';
import type { SluiceConfig } from '../config.js';
import type { ConnectionSet } from '../db/connections.js';
import type { DrainKicker } from '../drain/drain-kicker.js';
import { Ingestor } from '../ingest/ingestor.js';
import type { RejectSource } from '../ingest/rejects.js';
import { requireStream } from '../streams/registry.js';

/** Below this many rows a COPY is too quick for splitting a cohort of jobs to pay off. */
const PIPELINE_MIN_ROWS = 1_000;

export interface IngestHubOptions {
  readonly pool: pg.Pool;
  readonly flushers: ConnectionSet;
  readonly kicker: DrainKicker;
  readonly config: SluiceConfig;
  readonly log: Logger;
  readonly source: RejectSource;
}

export class IngestHub {
  private readonly ingestors = new Map<string, Promise<Ingestor>>();
  /** The same Ingestors once loaded, for synchronous checks. */
  private readonly loaded = new Map<string, Ingestor>();
  private running = 0;
  private checkScheduled = false;

  constructor(private readonly options: IngestHubOptions) {}

  /** The stream's Ingestor; rejects with SluiceError('unknown_stream' | 'invalid_stream_name'). */
  get(stream: string): Promise<Ingestor> {
    let ingestor = this.ingestors.get(stream);
    if (!ingestor) {
      ingestor = requireStream(this.options.pool, stream).then(
        (definition) =>
          new Ingestor({
            stream: definition,
            source: this.options.source,
            ack: 'staged',
            flushers: this.options.flushers,
            kicker: this.options.kicker,
            flushRows: this.options.config.flushRows,
            flushBytes: this.options.config.flushBytes,
            flushAgeMs: this.options.config.flushAgeMs,
            bufferRows: this.options.config.bufferRows,
            log: this.options.log,
            onWait: () => this.onJobWaiting(stream),
          }),
      );
      this.ingestors.set(stream, ingestor);
      ingestor.then(
        (i) => this.loaded.set(stream, i),
        () => this.ingestors.delete(stream),
      );
    }
    return ingestor;
  }

  /** Forget a stream (e.g. it was dropped or re-created); the next job loads it afresh. */
  evict(stream: string): void {
    const ingestor = this.ingestors.get(stream);
    this.ingestors.delete(stream);
    this.loaded.delete(stream);
    void ingestor?.then((i) => i.close()).catch(() => undefined);
  }

  /** A job with `waits` ingest() calls (payload items) started. */
  jobStarted(waits: number): void {
    this.running += waits;
  }

  jobFinished(waits: number): void {
    this.running -= waits;
    this.checkEagerFlush();
  }

  /**
   * Pipelining for big jobs: when the flusher is idle and half the running jobs
   * already wait on an open batch of some size, write it now; the other half
   * encodes into the next batch meanwhile, so Postgres' COPY work and this
   * process' encoding overlap instead of alternating.
   */
  private onJobWaiting(stream: string): void {
    const ingestor = this.loaded.get(stream);
    if (ingestor && ingestor.idle && ingestor.openRows >= PIPELINE_MIN_ROWS && ingestor.waitingOnOpen * 2 >= this.running) {
      ingestor.flushWaiting();
      return;
    }
    this.checkEagerFlush();
  }

  /**
   * Decide on the next turn of the event loop, not now: graphile-worker starts
   * the jobs of a freed cohort one after another within the current turn, and
   * deciding on the first one would flush it alone.
   */
  private checkEagerFlush(): void {
    if (this.checkScheduled) return;
    this.checkScheduled = true;
    setImmediate(() => {
      this.checkScheduled = false;
      if (this.running === 0) return;
      // Jobs waiting on a batch already being written count too: sealing the open
      // batch now queues it right behind, so COPYs and job dispatch overlap.
      let waiting = 0;
      for (const i of this.loaded.values()) waiting += i.waitingCalls;
      if (waiting >= this.running) for (const i of this.loaded.values()) i.flushWaiting();
    });
  }

  stats(): Promise<Record<string, ReturnType<Ingestor['stats']>>> {
    return Promise.all(
      [...this.ingestors.entries()].map(async ([name, p]) => [name, (await p.catch(() => undefined))?.stats()] as const),
    ).then((entries) => Object.fromEntries(entries.filter((e) => e[1] !== undefined)) as Record<string, ReturnType<Ingestor['stats']>>);
  }

  async close(): Promise<void> {
    const all = [...this.ingestors.values()];
    this.ingestors.clear();
    this.loaded.clear();
    await Promise.all(all.map((p) => p.then((i) => i.close()).catch(() => undefined)));
  }
}
