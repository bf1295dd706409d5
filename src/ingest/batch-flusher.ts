/**
 * Write one sealed batch on a free dedicated connection, retrying on lost
 * connections with backoff. After a lost connection the first attempt may have
 * committed with only its COMMIT reply lost: a retry first looks for the
 * batch's flush id (copy-writer) and reuses that result instead of writing twice.
 */
import type { Logger } from '../logger.js';
import type { ConnectionSet } from '../db/connections.js';
import { coerceError, isTransientError } from '../errors.js';
import { backoffMs, sleep } from '../timing.js';
import type { Batch } from './batch.js';
import { findCommittedFlush, writeBatch, type CopyTarget, type WriteResult } from './copy-writer.js';

/** Attempts for a batch that fails on lost connections before its callers see the error. */
export const DEFAULT_MAX_WRITE_ATTEMPTS = 10;

export interface BatchFlusherOptions {
  readonly target: CopyTarget;
  readonly flushers: ConnectionSet;
  readonly log: Logger;
  readonly maxAttempts?: number;
}

/** Resolves with the committed result; rejects with an error that says what was not stored. */
export async function flushBatch(batch: Batch, options: BatchFlusherOptions): Promise<WriteResult> {
  const { target, flushers, log } = options;
  const maxAttempts = options.maxAttempts ?? DEFAULT_MAX_WRITE_ATTEMPTS;
  const started = Date.now();
  try {
    for (let attempt = 0; ; attempt++) {
      const connection = await flushers.acquire();
      if (!connection) throw new Error('sluice: flush connections are closed');
      try {
        const client = await connection.get();
        const result =
          (attempt > 0 ? await findCommittedFlush(client, batch.flushId) : undefined) ?? (await writeBatch(client, target, batch, batch.wantXid));
        flushers.release(connection);
        log.debug({ stream: target.stream, rows: result.written, rejected: result.rejected, duration_ms: Date.now() - started }, 'ingest: flushed batch');
        if (result.refused.length) {
          log.warn({ stream: target.stream, refused: result.refused.length }, 'ingest: Postgres refused rows; isolated them into sluice.rejects');
        }
        return result;
      } catch (err) {
        flushers.release(connection);
        if (!isTransientError(err) || attempt + 1 >= maxAttempts) throw err;
        connection.markBroken();
        const delay = backoffMs(attempt, 100, 5_000);
        log.warn(
          { stream: target.stream, attempt: attempt + 1, delay_ms: delay, err: coerceError(err).message },
          'ingest: flush failed on a transient error, retrying the batch',
        );
        await sleep(delay);
      }
    }
  } catch (err) {
    const error = coerceError(err);
    log.error({ stream: target.stream, rows: batch.copy.count, err: error.message }, 'ingest: flush failed; the batch was not acknowledged');
    throw new Error(
      `sluice: flush to stream ${target.stream} failed: ${error.message}; ` +
        `${batch.copy.count} event(s) were not stored, nor ${batch.rejects.length} reject record(s) of that batch`,
      { cause: error },
    );
  }
}
