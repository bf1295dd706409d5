/**
 * A drain run, in River's maintenance shape: LIMITed batches until one comes
 * back (nearly) empty, a statement timeout per batch, smaller batches after
 * timeouts, jittered backoff, a time budget, one result object and one log line.
 * Under sustained load a short batch is followed by a 20 ms pause and another
 * batch rather than an exit, so drainers do not idle between kicks.
 */
import type pg from 'pg';
import type { Logger } from '../logger.js';
import { SQLSTATE, sqlState } from '../errors.js';
import { backoffMs, sleep } from '../timing.js';
import type { StreamDefinition } from '../streams/registry.js';
import { drainBatch } from './drain-batch.js';
import { resetStagingIfEmpty, vacuumStagingIfDue } from './staging-upkeep.js';

export interface DrainRunOptions {
  readonly stream: StreamDefinition;
  readonly batchRows: number;
  /** Name recorded in drain_stats, e.g. `<worker-id>/drain-0`. */
  readonly drainer: string;
  /** Stop after this long and report `more` so the caller can re-queue. */
  readonly maxMs: number;
  readonly signal?: AbortSignal;
  readonly log: Logger;
}

export interface DrainRunResult {
  readonly batches: number;
  readonly moved: number;
  readonly inserted: number;
  readonly duplicates: number;
  readonly rejected: number;
  /** Rows the durable table refused (moved to sluice.rejects, reason drain_refused). */
  readonly refused: number;
  readonly partitionsCreated: number;
  readonly maxLagMs: number;
  readonly durationMs: number;
  /** True when the run stopped on its time budget or a shutdown with rows possibly left. */
  readonly more: boolean;
}

const MIN_BATCH_ROWS = 100;
/**
 * After a batch at least this full (but short), pause LINGER_MS and drain
 * again instead of exiting: under steady load the next flush lands within
 * the pause, and the drain does not idle until the next kick. Set while
 * profiling `sluice bench` (commit "Tuning from bench profiles"); no other
 * values were measured, so both are judgements: a tenth of a batch is
 * "rows are still arriving", 20 ms is under the 50 ms default --flush-age-ms.
 */
const LINGER_FRACTION = 0.1;
const LINGER_MS = 20;
const MAX_TIMEOUTS_IN_A_ROW = 5;

export async function drainUntilEmpty(getClient: () => Promise<pg.ClientBase>, options: DrainRunOptions): Promise<DrainRunResult> {
  const started = Date.now();
  let batchRows = options.batchRows;
  let timeoutsInARow = 0;
  const totals = { batches: 0, moved: 0, inserted: 0, rejected: 0, refused: 0, partitionsCreated: 0, maxLagMs: 0 };
  let more = false;
  for (;;) {
    if (options.signal?.aborted) {
      more = true;
      break;
    }
    if (Date.now() - started >= options.maxMs) {
      more = true;
      break;
    }
    let result;
    try {
      result = await drainBatch(await getClient(), options.stream, batchRows, options.drainer);
      timeoutsInARow = 0;
    } catch (err) {
      const code = sqlState(err);
      // Cancelled by the caller at its deadline (drainBeforeStop): the batch rolled back, its rows stay staged.
      if (code === SQLSTATE.QUERY_CANCELED && options.signal?.aborted) {
        more = true;
        break;
      }
      const retryable = code === SQLSTATE.QUERY_CANCELED || code === SQLSTATE.DEADLOCK_DETECTED || code === SQLSTATE.LOCK_NOT_AVAILABLE;
      if (!retryable || ++timeoutsInARow > MAX_TIMEOUTS_IN_A_ROW) throw err;
      if (code === SQLSTATE.QUERY_CANCELED) batchRows = Math.max(MIN_BATCH_ROWS, Math.floor(batchRows / 2));
      options.log.warn({ stream: options.stream.name, batch_rows: batchRows, sqlstate: code }, 'drain: batch failed on a transient conflict, retrying');
      await sleep(backoffMs(timeoutsInARow, 100, 2_000), options.signal);
      continue;
    }
    totals.batches++;
    totals.moved += result.moved;
    totals.inserted += result.inserted;
    totals.rejected += result.rejected;
    totals.refused += result.refused;
    totals.partitionsCreated += result.partitionsCreated;
    totals.maxLagMs = Math.max(totals.maxLagMs, result.maxLagMs);
    if (result.moved > 0) {
      await vacuumStagingIfDue(await getClient(), options.stream.name, result.moved).catch((err: Error) =>
        options.log.warn({ stream: options.stream.name, err: err.message }, 'drain: could not vacuum staging'),
      );
    }
    if (result.partitionsCreated > 0 || result.rejected > 0 || result.refused > 0 || result.moved >= batchRows) continue;
    // A short batch. Under sustained load rows keep arriving: pause briefly and go
    // on rather than idling until the next kick. Near-empty: stop, a kick wakes us.
    if (result.moved === 0) {
      // Empty: if staging's heap has grown, hand it back (staging-upkeep.ts; skipped if anyone uses staging).
      const reset = await resetStagingIfEmpty(await getClient(), options.stream.name).catch((err: Error) => {
        options.log.warn({ stream: options.stream.name, err: err.message }, 'drain: could not reset the empty staging table');
        return 'failed' as const;
      });
      if (reset === 'truncated') options.log.info({ stream: options.stream.name }, 'drain: staging was empty and bloated: truncated it');
      break;
    }
    if (result.moved < batchRows * LINGER_FRACTION) break;
    await sleep(LINGER_MS, options.signal);
  }
  const run: DrainRunResult = {
    ...totals,
    duplicates: totals.moved - totals.inserted,
    durationMs: Date.now() - started,
    more,
  };
  if (run.moved > 0 || run.rejected > 0 || run.refused > 0) {
    options.log.info(
      {
        stream: options.stream.name,
        drainer: options.drainer,
        batches: run.batches,
        rows: run.moved,
        inserted: run.inserted,
        duplicates: run.duplicates,
        rejected: run.rejected,
        refused: run.refused,
        partitions_created: run.partitionsCreated,
        max_lag_ms: run.maxLagMs,
        duration_ms: run.durationMs,
        more: run.more,
      },
      'drain: moved rows to the durable table',
    );
  }
  return run;
}
