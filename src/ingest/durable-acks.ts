/**
 * The Ingestor's durable acknowledgements: every batch that commits with a
 * transaction id is confirmed at once (DurableTracker), whoever waits for it;
 * ingest() callers check only their own lines; flush() waits for all batches
 * still being confirmed and learns of any event that did not become durable.
 */
import type { Logger } from '../logger.js';
import type { ConnectionSet } from '../db/connections.js';
import { coerceError, SluiceError } from '../errors.js';
import type { Batch, Segment } from './batch.js';
import type { WriteResult } from './copy-writer.js';
import { DurableTracker } from './durable-tracker.js';

export interface DurableAcksOptions {
  readonly stream: string;
  readonly connections: ConnectionSet;
  readonly log: Logger;
  /** Rows stood still in staging: ask for a drain again. */
  readonly onStall: () => void;
  /**
   * True for an Ingestor whose own ack is durable: its rows count against the
   * buffer until confirmed (`release`), and flush() reports what was not durable.
   */
  readonly holdRows: boolean;
  readonly release: (rows: number) => void;
}

export class DurableAcks {
  private readonly tracker: DurableTracker;
  private readonly confirming = new Set<Batch>();
  /** Events a confirmation found missing since the last flush(): the next flush() reports them. */
  private notDurable: Error | undefined;

  constructor(private readonly options: DurableAcksOptions) {
    this.tracker = new DurableTracker(options.stream, options.connections, options.log, options.onStall);
  }

  /** A batch committed with a transaction id: confirm it now. Returns the rows it keeps held until then. */
  start(batch: Batch, result: WriteResult & { xid: string }): number {
    const refused = new Set(result.refused.map((r) => r.index));
    const lines: number[] = [];
    const eventIds: string[] = [];
    const occurredAts: string[] = [];
    const from = batch.keysFrom ?? batch.copy.count;
    for (let k = 0; k < batch.eventIds.length; k++) {
      if (refused.has(from + k)) continue;
      lines.push(from + k);
      eventIds.push(batch.eventIds[k] as string);
      occurredAts.push(batch.occurredAts[k] as string);
    }
    const { holdRows } = this.options;
    this.confirming.add(batch);
    batch.confirmation = this.tracker.wait(result.xid, result.written, { eventIds, occurredAts }).then((missing) => missing.map((k) => lines[k] as number));
    batch.confirmation
      .then(
        (missing) => {
          if (missing.length && holdRows) this.notDurable ??= notDurableError(this.options.stream, missing.length);
        },
        (err: unknown) => {
          if (holdRows) this.notDurable ??= coerceError(err);
        },
      )
      .finally(() => {
        this.confirming.delete(batch);
        if (holdRows) this.options.release(result.written);
      });
    return holdRows ? result.written : 0;
  }

  /** This caller's lines only: another caller's rejected event must not fail this one. */
  async confirmSegment(segment: Segment, signal?: AbortSignal): Promise<void> {
    const confirmation = segment.batch.confirmation;
    if (!confirmation || segment.to <= segment.from) return;
    const missing = await abortable(confirmation, signal);
    const mine = missing.filter((line) => line >= segment.from && line < segment.to).length;
    if (mine > 0) throw notDurableError(this.options.stream, mine);
  }

  /** Wait for every batch still being confirmed (not only recent ones); throw if some event was not durable. */
  async settle(): Promise<void> {
    await Promise.allSettled([...this.confirming].map((b) => b.confirmation));
    const notDurable = this.notDurable;
    this.notDurable = undefined;
    if (notDurable) throw notDurable;
  }

  close(): void {
    this.tracker.close();
  }
}

export function notDurableError(stream: string, count: number): SluiceError {
  return new SluiceError(
    'not_durable',
    `${count} event(s) sent to stream ${stream} left staging without reaching the durable table: ` +
      'rejected by the drain (see sluice.rejects, reasons no_partition / drain_refused) or lost when Postgres restarted ' +
      '(crash recovery empties UNLOGGED staging). Re-send them.',
  );
}

/** `promise`, or a durable_wait_aborted rejection as soon as `signal` aborts (the promise itself keeps running). */
function abortable<T>(promise: Promise<T>, signal?: AbortSignal): Promise<T> {
  if (!signal) return promise;
  const aborted = () => new SluiceError('durable_wait_aborted', 'stopped waiting for the durable acknowledgement (shutting down)');
  if (signal.aborted) return Promise.reject(aborted());
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(aborted());
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}
