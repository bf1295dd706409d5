/**
 * What a live worker does every --heartbeat-ms: write its heartbeat, release
 * the jobs of workers proven dead, check the staging crash sentinel, and
 * notice a reconnect (a heartbeat that succeeds after one failed: Postgres or
 * the network was away) so the caller can kick the drains again.
 */
import type pg from 'pg';
import type { Logger } from '../logger.js';
import { checkCrashSentinel } from '../db/crash-sentinel.js';
import { releaseDeadWorkers, type ReleasedWorkers } from './dead-workers.js';
import { heartbeat } from './worker-registry.js';

export interface HeartbeatLoopOptions {
  readonly pool: pg.Pool;
  readonly workerId: string;
  readonly heartbeatMs: number;
  readonly staleAfterMs: number;
  readonly log: Logger;
  readonly stats: () => Promise<object>;
  /** Called once after a heartbeat succeeds following a failed one. */
  readonly onReconnect: () => Promise<void>;
  /**
   * Release this worker's own orphaned job locks (orphaned-locks.ts): after a
   * reconnect, and otherwise once per `orphanSweepMs` (the first at the first tick).
   */
  readonly releaseOrphans?: () => Promise<void>;
  readonly orphanSweepMs?: number;
  /** Do not keep the process alive for the heartbeat timer (sluice's tasks inside someone else's worker). */
  readonly unref?: boolean;
}

export class HeartbeatLoop {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private failing = false;
  private lastOrphanSweep = 0;

  constructor(private readonly options: HeartbeatLoopOptions) {}

  start(): void {
    this.timer = setInterval(() => {
      // One tick at a time: a slow tick (Postgres away) is not stacked up.
      this.running ??= this.tick().finally(() => (this.running = undefined));
    }, this.options.heartbeatMs);
    if (this.options.unref) this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.running;
  }

  /** Release dead workers' jobs and check the sentinel now (also run once at start). */
  async recover(): Promise<void> {
    const { pool, workerId, staleAfterMs, log } = this.options;
    logReleased(log, await releaseDeadWorkers(pool, staleAfterMs, this.options.heartbeatMs));
    if (await checkCrashSentinel(pool, workerId)) {
      log.error(
        { staging_losses: 1 },
        'worker: UNLOGGED staging was emptied by a Postgres crash (or restore): events acknowledged as staged and not yet drained ' +
          'were lost; recorded in sluice.staging_losses (see sluice status / sluice health)',
      );
    }
  }

  private async tick(): Promise<void> {
    const { pool, workerId, log } = this.options;
    try {
      const alive = await heartbeat(pool, workerId, await this.options.stats());
      if (!alive) log.warn('worker: registry row vanished (pruned while paused?); budget no longer counted');
    } catch (err) {
      if (!this.failing) log.warn({ err: (err as Error).message }, 'worker: heartbeat failed (Postgres unreachable?); retrying');
      this.failing = true;
      return;
    }
    // Apart from the heartbeat: a recovery step that fails (a lock it would not wait for) is not a lost connection.
    await this.recover().catch((err: Error) => log.warn({ err: err.message }, 'worker: dead-worker release or crash check failed; retried at the next heartbeat'));
    const reconnected = this.failing;
    if (reconnected) {
      this.failing = false;
      log.info('worker: reconnected; kicking the drains');
      await this.options.onReconnect().catch((err: Error) => log.warn({ err: err.message }, 'worker: could not kick the drains after reconnecting'));
    }
    const { releaseOrphans, orphanSweepMs = 30_000 } = this.options;
    if (releaseOrphans && (reconnected || Date.now() - this.lastOrphanSweep >= orphanSweepMs)) {
      this.lastOrphanSweep = Date.now();
      await releaseOrphans().catch((err: Error) => log.warn({ err: err.message }, 'worker: could not release its orphaned job locks; retried later'));
    }
  }
}

export function logReleased(log: Logger, released: ReleasedWorkers): void {
  if (released.lockIds.length === 0) return;
  log.warn(
    { dead_workers: released.workers, lock_ids: released.lockIds, jobs: released.jobs },
    `worker: released ${released.jobs} job(s) locked by dead worker(s) ${released.workers.join(', ')}`,
  );
}
