/** The Ingestor's options, receipts and counters (shared by its callers and its parts). */
import type { Logger } from '../logger.js';
import type { ConnectionSet } from '../db/connections.js';
import type { DrainKicker } from '../drain/drain-kicker.js';
import type { StreamDefinition } from '../streams/registry.js';
import type { RejectReason } from './event-encoder.js';
import type { RejectSource } from './rejects.js';

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
  /** push() waits while this many rows and rejects are held (buffered, being written, or awaiting a durable confirmation)... */
  readonly bufferRows: number;
  /** ...or while they hold this many bytes (encoded rows, their raw text, rejects). */
  readonly bufferBytes: number;
  readonly log: Logger;
  /**
   * Called whenever an ingest() call starts waiting for its rows to commit;
   * the worker uses it to flush at once when every running job is waiting
   * (nothing more can arrive until they complete). See flushWaiting().
   */
  readonly onWait?: () => void;
  /** Attempts for a batch that fails on a lost connection before its callers see the error. */
  readonly maxWriteAttempts?: number;
  /** Time as the database sees it (see db/clock.ts), for the stream window; defaults to the local clock. */
  readonly clock?: () => number;
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
  readonly bufferedBytes: number;
}
