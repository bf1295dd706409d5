/**
 * An Ingestor's intake: each event validated and encoded into the open batch,
 * or recorded as a reject in it; both count against the buffer (a pile of
 * rejects back-pressures too), and both are tallied for stats() and the
 * summary of `sluice ingest`.
 */
import type { Batch } from './batch.js';
import type { BatchQueue } from './batch-queue.js';
import type { BufferGauge } from './buffer-gauge.js';
import type { WriteResult } from './copy-writer.js';
import { type EventEncoder, Rejection, type RejectReason } from './event-encoder.js';
import { rejectRaw, rejectSize, type InputKey, type RejectRow } from './rejects.js';
import { RejectTally } from './reject-counts.js';

export interface Placed {
  readonly batch: Batch;
  /** Its line in the batch, or -1 for a reject. */
  readonly line: number;
  readonly rejection?: Rejection;
}

export class Intake {
  readonly counters = { accepted: 0, rejected: 0, batches: 0 };
  /** This Ingestor's own rejects by reason (sluice.rejects also holds other producers'). */
  readonly tally = new RejectTally();

  constructor(
    private readonly encoder: EventEncoder,
    private readonly queue: BatchQueue,
    private readonly gauge: BufferGauge,
  ) {}

  /** Place one event in the open batch; `durable`: its caller wants the durable ack (keys are kept from here on). */
  offer(event: unknown, raw: string | undefined, durable: boolean, inputKey?: InputKey): Placed {
    const batch = this.queue.current();
    if (durable) {
      batch.wantXid = true;
      batch.keysFrom ??= batch.copy.count;
    }
    const encoded = this.encoder.encode(event, raw, batch.keysFrom === undefined ? undefined : batch);
    if (encoded instanceof Rejection) {
      this.addReject(batch, { reason: encoded.reason, message: encoded.message, raw: rejectRaw(event, raw), inputKey: inputKey?.() });
      return { batch, line: -1, rejection: encoded };
    }
    const line = batch.copy.count;
    const bytes = batch.copy.append(encoded) + (raw?.length ?? 0);
    batch.raws.push(raw);
    batch.bytes += bytes;
    this.gauge.hold(1, bytes);
    this.counters.accepted++;
    this.queue.sealIfFull(batch);
    return { batch, line };
  }

  /** Input that never became an event (e.g. unparsable JSON): a reject in the open batch. */
  rejectInput(reason: RejectReason, message: string, raw: string, inputKey?: string): void {
    this.addReject(this.queue.current(), { reason, message, raw: rejectRaw(undefined, raw), inputKey });
  }

  /** A batch was written: the rows Postgres refused move from accepted to rejected. */
  written(result: WriteResult): void {
    this.counters.batches++;
    this.counters.accepted -= result.refused.length;
    this.counters.rejected += result.refused.length;
    for (const r of result.refused) this.tally.add('copy_rejected', r.message);
  }

  private addReject(batch: Batch, reject: RejectRow): void {
    const bytes = rejectSize(reject);
    batch.rejects.push(reject);
    batch.bytes += bytes;
    this.gauge.hold(1, bytes);
    this.counters.rejected++;
    this.tally.add(reject.reason, reject.message);
    this.queue.sealIfFull(batch);
  }
}
