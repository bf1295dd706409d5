/**
 * The TypeScript client: an Ingestor with its own dedicated COPY connection.
 *
 *   const ingestor = await createIngestor({ connectionString, stream: 'events', ack: 'durable' });
 *   await ingestor.push({ event_id, occurred_at, ... });   // waits only when the buffer is full
 *   await ingestor.flush();                                 // everything pushed is durable
 *   await ingestor.close();
 *
 * Drains run in `sluice worker`; the client kicks them after each flush.
 */
import { applicationName, ConnectionSet, DedicatedConnection } from '../db/connections.js';
import {
  BUFFER_ROWS_DEFAULT,
  defaultWorkerId,
  DRAINERS_DEFAULT,
  FLUSH_AGE_MS_DEFAULT,
  FLUSH_BYTES_DEFAULT,
  FLUSH_ROWS_DEFAULT,
} from '../config.js';
import { DrainKicker } from '../drain/drain-kicker.js';
import { silentLogger, type Logger } from '../logger.js';
import { requireStream } from '../streams/registry.js';
import { Ingestor, type AckLevel } from './ingestor.js';
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
  /** Parallel drain jobs to request after each flush (match your workers' --drainers). */
  readonly drainSlots?: number;
  /** Shown in application_name as sluice/<clientId>/client. */
  readonly clientId?: string;
  readonly log?: Logger;
}

export interface ClientIngestor
  extends Pick<Ingestor, 'push' | 'ingest' | 'flush' | 'stats' | 'offer' | 'rejectInput' | 'waitForSpace' | 'stream' | 'ack'> {
  readonly full: boolean;
  /** Flush, then close the dedicated connection. */
  close(): Promise<void>;
}

export async function createIngestor(options: CreateIngestorOptions): Promise<ClientIngestor> {
  const log = options.log ?? silentLogger;
  const connection = new DedicatedConnection(
    options.connectionString,
    applicationName(options.clientId ?? defaultWorkerId(), 'client'),
    log,
  );
  const connections = new ConnectionSet([connection]);
  try {
    const stream = await requireStream(await connection.get(), options.stream);
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
    const ingestor = new Ingestor({
      stream,
      source: options.source ?? 'client',
      ack: options.ack ?? 'staged',
      flushers: connections,
      kicker,
      flushRows: options.flushRows ?? FLUSH_ROWS_DEFAULT,
      flushBytes: options.flushBytes ?? FLUSH_BYTES_DEFAULT,
      flushAgeMs: options.flushAgeMs ?? FLUSH_AGE_MS_DEFAULT,
      bufferRows: options.bufferRows ?? BUFFER_ROWS_DEFAULT,
      log,
    });
    return {
      stream: ingestor.stream,
      ack: ingestor.ack,
      get full() {
        return ingestor.full;
      },
      push: (event, raw) => ingestor.push(event, raw),
      ingest: (events, raws, ack, signal) => ingestor.ingest(events, raws, ack, signal),
      offer: (event, raw, durable) => ingestor.offer(event, raw, durable),
      rejectInput: (reason, message, raw) => ingestor.rejectInput(reason, message, raw),
      waitForSpace: () => ingestor.waitForSpace(),
      flush: () => ingestor.flush(),
      stats: () => ingestor.stats(),
      async close() {
        try {
          await ingestor.close();
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
