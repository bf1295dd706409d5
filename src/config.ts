/**
 * One typed configuration for every sluice entry point.
 *
 * Precedence: CLI flags > environment > named defaults. This is the only
 * module that reads `process.env` (callers pass `env` explicitly in tests).
 * Every setting is validated here, with a message that names the setting,
 * where it came from, and the allowed range.
 */
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';

/** Graphile-worker job slots per worker process. */
export const CONCURRENCY_DEFAULT = 8;
/** Dedicated COPY connections per worker process. */
export const FLUSHERS_DEFAULT = 1;
/** Dedicated drain connections per worker process. */
export const DRAINERS_DEFAULT = 2;
/** Declared connection budget of one worker process. */
export const MAX_CONNECTIONS_DEFAULT = 16;
/** Connections kept free for admins and migrations when checking the cluster sum. */
export const RESERVE_DEFAULT = 10;
/** A buffer is flushed once it holds this many rows... */
export const FLUSH_ROWS_DEFAULT = 5_000;
/** ...or this many encoded bytes... */
export const FLUSH_BYTES_DEFAULT = 4 * 1024 * 1024;
/** ...or once its oldest row has waited this long. */
export const FLUSH_AGE_MS_DEFAULT = 50;
/** push() waits (back-pressure) while this many rows are buffered and not yet committed. */
export const BUFFER_ROWS_DEFAULT = 50_000;
/** Rows moved per drain transaction (a stream's own setting wins when the flag is not given). */
export const DRAIN_BATCH_ROWS_DEFAULT = 10_000;
/** A drain job hands its slot back after this long, re-queueing itself if rows remain. */
export const DRAIN_JOB_MAX_MS_DEFAULT = 30_000;
/** Workers write a heartbeat this often... */
export const HEARTBEAT_MS_DEFAULT = 5_000;
/** ...and a worker row whose heartbeat is older than this is considered dead. */
export const STALE_AFTER_MS_DEFAULT = 30_000;
/** Time a graceful shutdown may take before jobs are aborted. */
export const SHUTDOWN_TIMEOUT_MS_DEFAULT = 30_000;

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
const LOG_LEVELS: readonly LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

export interface SluiceConfig {
  /** Postgres connection string; undefined means "start the embedded server". */
  readonly databaseUrl: string | undefined;
  /** Where the embedded server keeps its data (`./.sluice` by default). */
  readonly homeDir: string;
  readonly workerId: string;
  readonly maxConnections: number;
  readonly reserve: number;
  readonly concurrency: number;
  /** graphile-worker pool size; undefined → concurrency + 1. */
  readonly poolSize: number | undefined;
  readonly flushers: number;
  readonly drainers: number;
  readonly flushRows: number;
  readonly flushBytes: number;
  readonly flushAgeMs: number;
  readonly bufferRows: number;
  /** undefined: each stream's own `drain_batch_rows`. */
  readonly drainBatchRows: number | undefined;
  readonly drainJobMaxMs: number;
  readonly heartbeatMs: number;
  readonly staleAfterMs: number;
  readonly shutdownTimeoutMs: number;
  /** graphile-worker local queue size (jobs fetched per query); 0 disables it. */
  readonly localQueueSize: number;
  /** graphile-worker batched completion delay in ms; -1 disables it. */
  readonly completeJobBatchDelayMs: number;
  readonly migrate: boolean;
  readonly logLevel: LogLevel;
}

/** Raw flag values as yargs hands them over (camelCase, possibly undefined). */
export interface ConfigFlags {
  databaseUrl?: string;
  home?: string;
  workerId?: string;
  maxConnections?: number;
  reserve?: number;
  concurrency?: number;
  poolSize?: number;
  flushers?: number;
  drainers?: number;
  flushRows?: number;
  flushBytes?: number;
  flushAgeMs?: number;
  bufferRows?: number;
  drainBatchRows?: number;
  drainJobMaxMs?: number;
  heartbeatMs?: number;
  staleAfterMs?: number;
  shutdownTimeoutMs?: number;
  localQueueSize?: number;
  completeJobBatchDelayMs?: number;
  migrate?: boolean;
  logLevel?: string;
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

type Env = Readonly<Record<string, string | undefined>>;

interface IntSpec {
  flag: keyof ConfigFlags;
  env: string;
  min: number;
  max: number;
  fallback: number;
}

function readInt(flags: ConfigFlags, env: Env, spec: IntSpec): number {
  const fromFlag = flags[spec.flag];
  const fromEnv = env[spec.env];
  let raw: unknown;
  let source: string;
  if (fromFlag !== undefined) {
    raw = fromFlag;
    source = `--${kebab(spec.flag)}`;
  } else if (fromEnv !== undefined && fromEnv !== '') {
    raw = fromEnv;
    source = spec.env;
  } else {
    return spec.fallback;
  }
  const value = typeof raw === 'number' ? raw : /^-?\d+$/.test(String(raw).trim()) ? Number(String(raw).trim()) : NaN;
  if (!Number.isInteger(value) || value < spec.min || value > spec.max) {
    throw new ConfigError(
      `${source} must be an integer from ${spec.min} to ${spec.max}; got ${JSON.stringify(raw)}`,
    );
  }
  return value;
}

function kebab(name: string): string {
  return name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

function readBool(flag: boolean | undefined, env: Env, name: string, fallback: boolean): boolean {
  if (flag !== undefined) return flag;
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  if (/^(1|true|yes|on)$/i.test(raw)) return true;
  if (/^(0|false|no|off)$/i.test(raw)) return false;
  throw new ConfigError(`${name} must be true or false; got ${JSON.stringify(raw)}`);
}

/** A short, readable worker id: host, pid and a random suffix (fits application_name's 63 bytes). */
export function defaultWorkerId(): string {
  const host = os.hostname().replace(/[^A-Za-z0-9-]/g, '').slice(0, 20) || 'host';
  return `${host}-${process.pid}-${randomBytes(2).toString('hex')}`;
}

const WORKER_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$/;

/**
 * Build the frozen configuration. Throws ConfigError naming the bad setting.
 */
export function loadConfig(
  flags: ConfigFlags = {},
  env: Env = process.env,
  defaults: { logLevel?: LogLevel } = {},
): SluiceConfig {
  const databaseUrl = (flags.databaseUrl ?? env.DATABASE_URL)?.trim() || undefined;
  if (databaseUrl !== undefined && !/^postgres(ql)?:\/\//.test(databaseUrl)) {
    throw new ConfigError('DATABASE_URL must be a postgres:// or postgresql:// connection string');
  }
  const workerId = flags.workerId ?? env.SLUICE_WORKER_ID ?? defaultWorkerId();
  if (!WORKER_ID_PATTERN.test(workerId)) {
    throw new ConfigError(
      `--worker-id must match ${WORKER_ID_PATTERN} (letters, digits, . _ -; at most 40 characters); got ${JSON.stringify(workerId)}`,
    );
  }
  const logLevel = (flags.logLevel ?? env.SLUICE_LOG_LEVEL ?? defaults.logLevel ?? 'info').toLowerCase();
  if (!LOG_LEVELS.includes(logLevel as LogLevel)) {
    throw new ConfigError(`--log-level must be one of ${LOG_LEVELS.join(', ')}; got ${JSON.stringify(logLevel)}`);
  }
  const int = (spec: Omit<IntSpec, 'fallback'>, fallback: number) => readInt(flags, env, { ...spec, fallback });

  const flushRows = int({ flag: 'flushRows', env: 'SLUICE_FLUSH_ROWS', min: 1, max: 1_000_000 }, FLUSH_ROWS_DEFAULT);
  const bufferRows = int(
    { flag: 'bufferRows', env: 'SLUICE_BUFFER_ROWS', min: 1, max: 10_000_000 },
    Math.max(BUFFER_ROWS_DEFAULT, flushRows * 2),
  );
  if (bufferRows < flushRows) {
    throw new ConfigError(`--buffer-rows (${bufferRows}) must be at least --flush-rows (${flushRows})`);
  }
  const heartbeatMs = int({ flag: 'heartbeatMs', env: 'SLUICE_HEARTBEAT_MS', min: 100, max: 600_000 }, HEARTBEAT_MS_DEFAULT);
  const staleAfterMs = int(
    { flag: 'staleAfterMs', env: 'SLUICE_STALE_AFTER_MS', min: 1_000, max: 3_600_000 },
    Math.max(STALE_AFTER_MS_DEFAULT, heartbeatMs * 3),
  );
  if (staleAfterMs < heartbeatMs * 2) {
    throw new ConfigError(
      `--stale-after-ms (${staleAfterMs}) must be at least twice --heartbeat-ms (${heartbeatMs}), or live workers look dead`,
    );
  }
  const concurrency = int({ flag: 'concurrency', env: 'SLUICE_CONCURRENCY', min: 1, max: 500 }, CONCURRENCY_DEFAULT);

  const config: SluiceConfig = {
    databaseUrl,
    homeDir: path.resolve(flags.home ?? env.SLUICE_HOME ?? '.sluice'),
    workerId,
    maxConnections: int(
      { flag: 'maxConnections', env: 'SLUICE_MAX_CONNECTIONS', min: 4, max: 10_000 },
      MAX_CONNECTIONS_DEFAULT,
    ),
    reserve: int({ flag: 'reserve', env: 'SLUICE_RESERVE', min: 0, max: 10_000 }, RESERVE_DEFAULT),
    concurrency,
    poolSize:
      flags.poolSize !== undefined || env.SLUICE_POOL_SIZE
        ? int({ flag: 'poolSize', env: 'SLUICE_POOL_SIZE', min: 2, max: 1_001 }, concurrency + 1)
        : undefined,
    flushers: int({ flag: 'flushers', env: 'SLUICE_FLUSHERS', min: 1, max: 32 }, FLUSHERS_DEFAULT),
    // 0: an ingest-only worker (it does not take drain jobs; other workers drain).
    drainers: int({ flag: 'drainers', env: 'SLUICE_DRAINERS', min: 0, max: 64 }, DRAINERS_DEFAULT),
    flushRows,
    flushBytes: int(
      { flag: 'flushBytes', env: 'SLUICE_FLUSH_BYTES', min: 1024, max: 256 * 1024 * 1024 },
      FLUSH_BYTES_DEFAULT,
    ),
    flushAgeMs: int({ flag: 'flushAgeMs', env: 'SLUICE_FLUSH_AGE_MS', min: 0, max: 60_000 }, FLUSH_AGE_MS_DEFAULT),
    bufferRows,
    drainBatchRows:
      flags.drainBatchRows !== undefined || env.SLUICE_DRAIN_BATCH_ROWS
        ? int({ flag: 'drainBatchRows', env: 'SLUICE_DRAIN_BATCH_ROWS', min: 1, max: 1_000_000 }, DRAIN_BATCH_ROWS_DEFAULT)
        : undefined,
    drainJobMaxMs: int(
      { flag: 'drainJobMaxMs', env: 'SLUICE_DRAIN_JOB_MAX_MS', min: 100, max: 3_600_000 },
      DRAIN_JOB_MAX_MS_DEFAULT,
    ),
    heartbeatMs,
    staleAfterMs,
    shutdownTimeoutMs: int(
      { flag: 'shutdownTimeoutMs', env: 'SLUICE_SHUTDOWN_TIMEOUT_MS', min: 100, max: 3_600_000 },
      SHUTDOWN_TIMEOUT_MS_DEFAULT,
    ),
    localQueueSize: int(
      { flag: 'localQueueSize', env: 'SLUICE_LOCAL_QUEUE_SIZE', min: 0, max: 10_000 },
      Math.max(concurrency * 4, 32),
    ),
    // Off by default: graphile-worker 0.18 shuts its pool down on the first transient
    // error of a completion batch (graphile/worker#636). See docs/design.md.
    completeJobBatchDelayMs: int(
      { flag: 'completeJobBatchDelayMs', env: 'SLUICE_COMPLETE_JOB_BATCH_DELAY_MS', min: -1, max: 10_000 },
      -1,
    ),
    migrate: readBool(flags.migrate, env, 'SLUICE_MIGRATE', true),
    logLevel: logLevel as LogLevel,
  };
  return Object.freeze(config);
}

/** Connection string with the password masked, safe for logs and terminal output. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '*****';
    return parsed.toString();
  } catch {
    return '<unparsable connection string>';
  }
}
