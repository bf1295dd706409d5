/**
 * The worker's Ingestors, one per stream, all sharing the worker's dedicated
 * flush connections. It also decides when waiting jobs flush early: a
 * `sluice_ingest` job completes only after its rows are committed, so when
 * every running ingest job is waiting (on the open batch or on one being
 * written), nothing more can arrive before a flush and waiting for the flush
 * age would only add latency.
 *
 * Definitions follow changes: every STREAM_REFRESH_MS the hub compares the
 * versions of its loaded streams with sluice.streams and swaps in a new
 * Ingestor for a stream that changed (the old one closes once idle).
 */
import type pg from 'pg';
import type { Logger } from '../logger.js';
import type { SluiceConfig } from '../config.js';
import type { ConnectionSet } from '../db/connections.js';
import type { DrainKicker } from '../drain/drain-kicker.js';
import { coerceError } from '../errors.js';
import type { Ingestor } from '../ingest/ingestor.js';
import { addStats, closeWhenIdle, TrackedIngestor } from '../ingest/tracked-ingestor.js';
import type { RejectSource } from '../ingest/rejects.js';
import { requireStream, STREAM_REFRESH_MS, streamVersions, type StreamDefinition } from '../streams/registry.js';
import { databaseClock, databaseClockOffsetMs } from '../db/clock.js';

/** Below this many rows a COPY is too quick for splitting a cohort of jobs to pay off. */
const PIPELINE_MIN_ROWS = 1_000;

/** The poll that bounds staleness (one query for all loaded streams, on the pool: no extra connection in the budget). */
export { STREAM_REFRESH_MS } from '../streams/registry.js';

export interface IngestHubOptions {
  readonly pool: pg.Pool;
  readonly flushers: ConnectionSet;
  readonly kicker: DrainKicker;
  readonly config: SluiceConfig;
  readonly log: Logger;
  readonly source: RejectSource;
  /** Override STREAM_REFRESH_MS (0: never poll). */
  readonly refreshMs?: number;
}

export class IngestHub {
  private readonly ingestors = new Map<string, Promise<TrackedIngestor>>();
  /** The same Ingestors once loaded, for synchronous checks. */
  private readonly loaded = new Map<string, TrackedIngestor>();
  /** Replaced Ingestors still finishing the calls they were handed. */
  private readonly retiring = new Set<TrackedIngestor>();
  /** Closes of replaced Ingestors in progress: close() waits for them. */
  private readonly closing = new Set<Promise<void>>();
  private running = 0;
  private checkScheduled = false;
  private refreshing: Promise<void> | undefined;
  private readonly refreshTimer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(private readonly options: IngestHubOptions) {
    const refreshMs = options.refreshMs ?? STREAM_REFRESH_MS;
    if (refreshMs > 0) {
      this.refreshTimer = setInterval(() => void this.refresh(), refreshMs);
      this.refreshTimer.unref();
    }
  }

  /** The stream's Ingestor; rejects with SluiceError('unknown_stream' | 'invalid_stream_name'). */
  get(stream: string): Promise<Ingestor> {
    return this.current(stream);
  }

  private current(stream: string): Promise<TrackedIngestor> {
    let ingestor = this.ingestors.get(stream);
    if (!ingestor) {
      const loading: Promise<TrackedIngestor> = Promise.all([requireStream(this.options.pool, stream), databaseClockOffsetMs(this.options.pool)]).then(
        ([definition, clockOffsetMs]) => {
          const created: TrackedIngestor = new TrackedIngestor({
            stream: definition,
            source: this.options.source,
            ack: 'staged',
            flushers: this.options.flushers,
            kicker: this.options.kicker,
            flushRows: this.options.config.flushRows,
            flushBytes: this.options.config.flushBytes,
            flushAgeMs: this.options.config.flushAgeMs,
            bufferRows: this.options.config.bufferRows,
            bufferBytes: this.options.config.bufferBytes,
            log: this.options.log,
            onWait: () => this.onJobWaiting(created),
            clock: databaseClock(clockOffsetMs),
          });
          return created;
        },
      );
      ingestor = loading;
      this.ingestors.set(stream, loading);
      loading.then(
        (i) => {
          // Only if still current: an eviction while it loaded made this one stale already.
          if (this.ingestors.get(stream) === loading) this.loaded.set(stream, i);
          else this.retire(i);
        },
        () => {
          if (this.ingestors.get(stream) === loading) this.ingestors.delete(stream);
        },
      );
    }
    return ingestor;
  }

  /** Forget a stream (e.g. it was dropped or re-created); the next job loads it afresh. */
  evict(stream: string): void {
    const loaded = this.loaded.get(stream);
    this.ingestors.delete(stream);
    this.loaded.delete(stream);
    if (loaded) this.retire(loaded);
  }

  /**
   * Compare the loaded definitions with sluice.streams; reload a stream whose
   * version moved (changed settings, or dropped and re-created), forget one
   * that is gone. New calls go to the new Ingestor at once; the old one closes
   * (flushing what it holds) once the calls it was handed are done.
   */
  refresh(): Promise<void> {
    this.refreshing ??= this.compareVersions()
      .catch((err: unknown) => this.options.log.warn({ err: coerceError(err).message }, 'ingest: could not check stream definitions; will retry'))
      .finally(() => {
        this.refreshing = undefined;
      });
    return this.refreshing;
  }

  private async compareVersions(): Promise<void> {
    if (this.closed || this.loaded.size === 0) return;
    const versions = await streamVersions(this.options.pool, [...this.loaded.keys()]);
    for (const [stream, ingestor] of [...this.loaded]) {
      // Replaced or evicted while the query ran: nothing to compare any more.
      if (this.closed || this.loaded.get(stream) !== ingestor) continue;
      const version = versions.get(stream);
      if (version === ingestor.stream.version) continue;
      this.evict(stream);
      if (version === undefined) {
        this.options.log.info({ stream }, 'ingest: stream was dropped; its jobs now fail as unknown_stream');
        continue;
      }
      this.options.log.info({ stream, from_version: ingestor.stream.version, to_version: version }, 'ingest: stream definition changed; reloading it');
      // Load now, not on the next job: the first job after the change should not wait for it.
      this.current(stream).catch(() => undefined);
    }
  }

  /** Close a replaced Ingestor once no call uses it (see TrackedIngestor). */
  private retire(ingestor: TrackedIngestor): void {
    if (this.retiring.has(ingestor)) return;
    this.retiring.add(ingestor);
    const closing: Promise<void> = closeWhenIdle(ingestor)
      .catch((err: unknown) => this.options.log.warn({ stream: ingestor.stream.name, err: coerceError(err).message }, 'ingest: closing a replaced ingestor failed'))
      .finally(() => {
        this.retiring.delete(ingestor);
        this.closing.delete(closing);
      });
    this.closing.add(closing);
  }

  /** Every Ingestor that may still hold work: current and retiring. */
  private all(): TrackedIngestor[] {
    return [...this.loaded.values(), ...this.retiring];
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
  private onJobWaiting(ingestor: TrackedIngestor): void {
    if (ingestor.idle && ingestor.openRows >= PIPELINE_MIN_ROWS && ingestor.waitingOnOpen * 2 >= this.running) {
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
      const all = this.all();
      for (const i of all) waiting += i.waitingCalls;
      if (waiting >= this.running) for (const i of all) i.flushWaiting();
    });
  }

  /** The streams this hub has staged into, as currently defined (a graceful stop drains them: drain-runner.ts). */
  streams(): StreamDefinition[] {
    return [...this.loaded.values()].map((i) => i.stream);
  }

  /** Counters per stream, a retiring Ingestor's added to its replacement's. */
  async stats(): Promise<Record<string, ReturnType<Ingestor['stats']>>> {
    await Promise.allSettled(this.ingestors.values());
    const out: Record<string, ReturnType<Ingestor['stats']>> = {};
    for (const i of this.all()) {
      const s = i.stats();
      const prev = out[i.stream.name];
      out[i.stream.name] = prev ? addStats(prev, s) : s;
    }
    return out;
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.refreshTimer) clearInterval(this.refreshTimer);
    const pending = [...this.ingestors.values()];
    await Promise.allSettled(pending);
    await this.refreshing;
    const all = this.all();
    this.ingestors.clear();
    this.loaded.clear();
    this.retiring.clear();
    await Promise.all([...all.map((i) => i.close().catch(() => undefined)), ...this.closing]);
  }
}
