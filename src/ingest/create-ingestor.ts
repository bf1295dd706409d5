/**
 * The TypeScript client: an Ingestor with its own dedicated COPY connection.
 *
 *   const ingestor = await createIngestor({ connectionString, stream: 'events', ack: 'durable' });
 *   await ingestor.push({ event_id, occurred_at, ... });   // waits only when the buffer is full
 *   await ingestor.flush();                                 // everything pushed is durable
 *   await ingestor.close();
 *
 * Drains run in `sluice worker`; the client kicks them after each flush.
 *
 * The client follows changes of its stream's definition like a worker does:
 * every STREAM_REFRESH_MS it compares the stream's version (migrations/00006)
 * and, when it moved, validates and writes new events with the new definition.
 */
import { applicationName, ConnectionSet, DedicatedConnection } from '../db/connections.js';
import { databaseClock, databaseClockOffsetMs } from '../db/clock.js';
import {
  BUFFER_BYTES_DEFAULT,
  BUFFER_ROWS_DEFAULT,
  defaultWorkerId,
  DRAINERS_DEFAULT,
  FLUSH_AGE_MS_DEFAULT,
  FLUSH_BYTES_DEFAULT,
  FLUSH_ROWS_DEFAULT,
} from '../config.js';
import { DrainKicker } from '../drain/drain-kicker.js';
import { silentLogger, type Logger } from '../logger.js';
import { coerceError } from '../errors.js';
import { requireStream, STREAM_REFRESH_MS, streamVersions, type StreamDefinition } from '../streams/registry.js';
import type { AckLevel, Ingestor, IngestorStats } from './ingestor.js';
import { addStats, closeWhenIdle, TrackedIngestor } from './tracked-ingestor.js';
import { addRejectCounts, type RejectCount } from './reject-counts.js';
import type { RejectSource } from './rejects.js';

export interface CreateIngestorOptions {
  readonly connectionString: string;
  readonly stream: string;
  /** "staged" (default): resolve when rows are in staging; "durable": when drained. */
  readonly ack?: AckLevel;
  readonly source?: RejectSource;
  readonly flushRows?: number;
  readonly flushBytes?: number;
  readonly flushAgeMs?: number;
  readonly bufferRows?: number;
  /** Memory bound in bytes (rows, their raw text, rejects); default 32 MiB. */
  readonly bufferBytes?: number;
  /** Parallel drain jobs to request after each flush (match your workers' --drainers). */
  readonly drainSlots?: number;
  /** Shown in application_name as sluice/<clientId>/client. */
  readonly clientId?: string;
  readonly log?: Logger;
}

/** What an application uses: push/ingest, flush, close, stats (and back-pressure: full, waitForSpace). */
export interface ClientIngestor extends Pick<Ingestor, 'push' | 'ingest' | 'flush' | 'stats' | 'waitForSpace' | 'stream' | 'ack'> {
  readonly full: boolean;
  /** Flush, then close the dedicated connection. */
  close(): Promise<void>;
}

/** sluice's own front doors (NDJSON files, the bench's paced producer) also place events without waiting and record unparsable input. */
export interface InputIngestor extends ClientIngestor, Pick<Ingestor, 'offer' | 'rejectInput' | 'rejectCounts'> {}

export async function createIngestor(options: CreateIngestorOptions): Promise<ClientIngestor> {
  const ingestor = await openIngestor(options);
  return {
    get stream() {
      return ingestor.stream;
    },
    get ack() {
      return ingestor.ack;
    },
    get full() {
      return ingestor.full;
    },
    push: (event, raw) => ingestor.push(event, raw),
    ingest: (...args) => ingestor.ingest(...args),
    flush: () => ingestor.flush(),
    stats: () => ingestor.stats(),
    waitForSpace: () => ingestor.waitForSpace(),
    close: () => ingestor.close(),
  };
}

export async function openIngestor(options: CreateIngestorOptions): Promise<InputIngestor> {
  const log = options.log ?? silentLogger;
  const connection = new DedicatedConnection(
    options.connectionString,
    applicationName(options.clientId ?? defaultWorkerId(), 'client'),
    log,
  );
  const connections = new ConnectionSet([connection]);
  try {
    const clock = databaseClock(await databaseClockOffsetMs(await connection.get()));
    const kicker = new DrainKicker(
      async (text, values) => {
        const c = await connections.acquire();
        if (!c) return;
        try {
          await (await c.get()).query(text, values);
        } finally {
          connections.release(c);
        }
      },
      options.drainSlots ?? DRAINERS_DEFAULT,
      log,
    );
    const build = (stream: StreamDefinition) =>
      new TrackedIngestor({
        stream,
        source: options.source ?? 'client',
        ack: options.ack ?? 'staged',
        flushers: connections,
        kicker,
        flushRows: options.flushRows ?? FLUSH_ROWS_DEFAULT,
        flushBytes: options.flushBytes ?? FLUSH_BYTES_DEFAULT,
        flushAgeMs: options.flushAgeMs ?? FLUSH_AGE_MS_DEFAULT,
        bufferRows: options.bufferRows ?? BUFFER_ROWS_DEFAULT,
        bufferBytes: options.bufferBytes ?? BUFFER_BYTES_DEFAULT,
        log,
        clock,
      });
    const following = new FollowingIngestor(build(await requireStream(await connection.get(), options.stream)), build, connections, log);
    return {
      get stream() {
        return following.current.stream;
      },
      ack: following.current.ack,
      get full() {
        return following.current.full;
      },
      push: (event, raw) => following.current.push(event, raw),
      ingest: (events, raws, ack, signal, inputKeyOf) => following.current.ingest(events, raws, ack, signal, inputKeyOf),
      offer: (event, raw, durable, inputKey) => following.current.offer(event, raw, durable, inputKey),
      rejectInput: (reason, message, raw, inputKey) => following.current.rejectInput(reason, message, raw, inputKey),
      waitForSpace: () => following.current.waitForSpace(),
      flush: () => following.flush(),
      stats: () => following.stats(),
      rejectCounts: () => following.rejectCounts(),
      async close() {
        try {
          await following.close();
        } finally {
          await kicker.close();
          await connections.closeAll();
        }
      },
    };
  } catch (err) {
    await connections.closeAll();
    throw err;
  }
}

/**
 * The client's Ingestor, replaced when the stream's version moves: new calls
 * go to the new one; the old one closes (flushing) once its calls are done.
 * flush() and close() cover the replaced ones too, and their failures.
 */
class FollowingIngestor {
  private readonly retiring = new Set<Promise<void>>();
  /** Counters of Ingestors already closed, so stats() stays cumulative. */
  private retired: IngestorStats = { accepted: 0, rejected: 0, batches: 0, buffered: 0, bufferedBytes: 0 };
  private retiredRejects: RejectCount[] = [];
  private readonly replaced = new Set<TrackedIngestor>();
  private failure: Error | undefined;
  private readonly timer: NodeJS.Timeout;
  private refreshing = false;
  private closed = false;

  constructor(
    public current: TrackedIngestor,
    private readonly build: (stream: StreamDefinition) => TrackedIngestor,
    private readonly connections: ConnectionSet,
    private readonly log: Logger,
  ) {
    this.timer = setInterval(() => void this.refresh(), STREAM_REFRESH_MS);
    this.timer.unref();
  }

  /** On the client's one connection, between COPYs: a version check, and the new definition when it moved. */
  private async refresh(): Promise<void> {
    if (this.refreshing || this.closed) return;
    this.refreshing = true;
    const name = this.current.stream.name;
    const c = await this.connections.acquire();
    try {
      if (!c || this.closed) return;
      const client = await c.get();
      const version = (await streamVersions(client, [name])).get(name);
      // Dropped: keep the old definition; its flushes fail and say so (nothing is acknowledged silently).
      if (version === undefined || version === this.current.stream.version) return;
      const definition = await requireStream(client, name);
      const old = this.current;
      this.current = this.build(definition);
      this.log.info({ stream: name, from_version: old.stream.version, to_version: definition.version }, 'ingest: stream definition changed; reloaded it');
      this.replaced.add(old);
      const closing: Promise<void> = closeWhenIdle(old)
        .catch((err: unknown) => {
          this.failure ??= coerceError(err);
        })
        .finally(() => {
          this.retired = addStats(this.retired, { ...old.stats(), buffered: 0 });
          this.retiredRejects = addRejectCounts(this.retiredRejects, old.rejectCounts());
          this.replaced.delete(old);
          this.retiring.delete(closing);
        });
      this.retiring.add(closing);
    } catch (err) {
      this.log.warn({ stream: name, err: coerceError(err).message }, 'ingest: could not check the stream definition; will retry');
    } finally {
      if (c) this.connections.release(c);
      this.refreshing = false;
    }
  }

  async flush(): Promise<void> {
    const results = await Promise.allSettled([...this.replaced, this.current].map((i) => i.flush()));
    await Promise.all(this.retiring);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
    if (this.failure) throw this.failure;
  }

  stats(): IngestorStats {
    return [...this.replaced, this.current].reduce((sum, i) => addStats(sum, i.stats()), this.retired);
  }

  rejectCounts(): RejectCount[] {
    return addRejectCounts(this.retiredRejects, ...[...this.replaced, this.current].map((i) => i.rejectCounts()));
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    const results = await Promise.allSettled([...this.replaced, this.current].map((i: Ingestor) => i.close()));
    await Promise.all(this.retiring);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
    if (this.failure) throw this.failure;
  }
}
