/**
 * What every CLI command shares: the config (flags > env > defaults), a
 * logger on stderr, the database (DATABASE_URL or the embedded default, said
 * aloud), a shutdown signal for SIGINT/SIGTERM, and clean-up on the way out.
 */
import path from 'node:path';
import type { Argv } from 'yargs';
import { ConfigError, loadConfig, type ConfigFlags, type LogLevel, type SluiceConfig } from '../config.js';
import { openDatabase, type DatabaseTarget } from '../db/database.js';
import { SluiceError } from '../errors.js';
import { createLogger, type Logger } from '../logger.js';

export interface GlobalArgs {
  databaseUrl?: string;
  home?: string;
  logLevel?: string;
}

export interface Runtime {
  readonly config: SluiceConfig;
  readonly log: Logger;
  readonly db: DatabaseTarget;
  /** Aborted on the first SIGINT/SIGTERM. */
  readonly signal: AbortSignal;
}

export function globalOptions<T>(y: Argv<T>) {
  return y
    .option('database-url', { type: 'string', describe: 'Postgres connection string (default: $DATABASE_URL; unset → embedded Postgres in ./.sluice)' })
    .option('home', { type: 'string', describe: 'Directory of the embedded Postgres (default: $SLUICE_HOME or ./.sluice)' })
    .option('log-level', { type: 'string', describe: 'fatal|error|warn|info|debug|trace|silent (default: $SLUICE_LOG_LEVEL, info for worker, warn otherwise)' });
}

/** Stderr line for humans, kept apart from stdout data. */
export function say(message: string): void {
  process.stderr.write(`sluice: ${message}\n`);
}

export async function withRuntime<T>(
  args: GlobalArgs & ConfigFlags,
  run: (rt: Runtime) => Promise<T>,
  defaults: { logLevel?: LogLevel } = {},
): Promise<T> {
  const config = loadConfig(args, process.env, { logLevel: defaults.logLevel ?? 'warn' });
  const log = createLogger(config.logLevel);
  const controller = new AbortController();
  let signals = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    signals++;
    if (signals === 1) {
      say(`${signal} received: shutting down cleanly (send it again to exit at once)`);
      controller.abort();
    } else {
      process.exit(130);
    }
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const db = await openDatabase(config, log);
  if (db.embedded) {
    say(
      `${db.embedded.owned ? 'started' : 'using running'} embedded Postgres at ${db.displayUrl} ` +
        `(data: ${path.relative(process.cwd(), db.embedded.dataDir) || db.embedded.dataDir})`,
    );
  }
  try {
    return await run({ config, log, db, signal: controller.signal });
  } finally {
    if (db.embedded?.owned) {
      await db.close();
      say('embedded Postgres stopped');
    }
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    log.flush();
  }
}

/**
 * Long-running commands that run graphile-worker keep going on an unhandled
 * rejection: graphile-worker 0.18 completes jobs fire-and-forget, so a
 * connection killed at that moment (Postgres restart, admin termination)
 * rejects with nobody listening. The job's lock expires and it runs again;
 * crashing the worker would only stop everything else too.
 */
export function keepRunningOnUnhandledRejections(log: Logger): () => void {
  const onRejection = (reason: unknown) => {
    log.error({ err: (reason as Error)?.message ?? String(reason) }, 'worker: unhandled rejection (logged, not fatal)');
  };
  process.on('unhandledRejection', onRejection);
  return () => process.off('unhandledRejection', onRejection);
}

/** Print an error the way users should see it, and set the exit code. */
export function reportError(err: unknown): void {
  if (err instanceof ConfigError) {
    say(`configuration error: ${err.message}`);
    process.exitCode = 2;
  } else if (err instanceof SluiceError) {
    say(err.message);
    process.exitCode = 1;
  } else {
    const e = err as Error;
    const cause = (e?.cause as Error | undefined)?.message;
    say(`error: ${e?.message ?? String(err)}${cause && !e.message.includes(cause) ? ` (cause: ${cause})` : ''}`);
    process.exitCode = 1;
  }
}

export function formatInt(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

export function formatRate(count: number, ms: number): string {
  return ms > 0 ? `${formatInt((count * 1000) / ms)}/s` : '—';
}
