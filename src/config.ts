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
/** The smallest budget: pool 2 (one job slot + the LISTEN client), one flusher, one drainer. `--max-connections N` alone fits every N from here. */
export const MIN_BUDGET = 4;
/** Connections kept free for admins and migrations when checking the cluster sum. */
export const RESERVE_DEFAULT = 10;
/** A buffer is flushed once it holds this many rows... */
export const FLUSH_ROWS_DEFAULT = 5_000;
/** ...or this many encoded bytes... */
export const FLUSH_BYTES_DEFAULT = 4 * 1024 * 1024;
/** ...or once its oldest row has waited this long. */
export const FLUSH_AGE_MS_DEFAULT = 50;
/** push() waits (back-pressure) while this many rows (and rejects) are buffered and not yet committed... */
export const BUFFER_ROWS_DEFAULT = 50_000;
/** ...or while they hold this many bytes: the Ingestor's memory bound (see the README's "Memory"). */
export const BUFFER_BYTES_DEFAULT = 32 * 1024 * 1024;
/** A drain job hands its slot back after this long, re-queueing itself if rows remain. */
export const DRAIN_JOB_MAX_MS_DEFAULT = 30_000;
/** Workers write a heartbeat this often... */
export const HEARTBEAT_MS_DEFAULT = 5_000;
/** ...and a worker row whose heartbeat is older than this is considered dead. */
export const STALE_AFTER_MS_DEFAULT = 30_000;
/** Rejects older than this many days are pruned by the hourly maintenance task (0: keep them forever). */
export const REJECTS_RETENTION_DAYS_DEFAULT = 30;
/** Health reports older than this many days are pruned by the sluice_health_check task (0: keep them forever). */
export const HEALTH_RETENTION_DAYS_DEFAULT = 30;
/** --clock-offset-ms bound: 100 years either way. */
export const CLOCK_OFFSET_MAX_MS = 100 * 366 * 86_400_000;
/** Time a graceful shutdown may take before jobs are aborted. */
export const SHUTDOWN_TIMEOUT_MS_DEFAULT = 30_000;
/** graphile-worker's batched job completion: off (-1), see completeJobBatchDelayMs below. */
export const COMPLETE_JOB_BATCH_DELAY_MS_DEFAULT = -1;

/**
 * Whose budgets the cluster check counts. 'cluster': every sluice worker of the
 * Postgres cluster, in any database (connections are a cluster resource; a
 * worker publishes its budget in its sessions' application_name). 'database':
 * this database's workers only, and the worker publishes nothing to others.
 */
export type BudgetScope = 'cluster' | 'database';
export const BUDGET_SCOPES: readonly BudgetScope[] = ['cluster', 'database'];

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
const LOG_LEVELS: readonly LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/** Commands whose yargs options are generated from SETTINGS (src/cli/runtime.ts `configOptions`). */
export type SettingCommand = 'worker' | 'ingest' | 'budget';

interface SettingBase {
  /** The kebab-case flag, without the leading dashes. */
  readonly flag: string;
  /** Other names, where graphile-worker and the Postgres tools use them for the same meaning (-c/--connection, -j). */
  readonly aliases?: readonly string[];
  readonly env: string;
  /** One line for `--help` and the README table. */
  readonly describe: string;
  /** How the default reads in `--help` and the README. */
  readonly defaultText: string;
  /** 'all': every command (the global options); else the commands that accept the flag. */
  readonly commands: 'all' | readonly SettingCommand[];
}
export interface IntSetting extends SettingBase {
  readonly type: 'int';
  readonly min: number;
  readonly max: number;
}
export interface StringSetting extends SettingBase {
  readonly type: 'string';
}
export interface BooleanSetting extends SettingBase {
  readonly type: 'boolean';
}
export type Setting = IntSetting | StringSetting | BooleanSetting;

const MiB = 1024 * 1024;
const bytesText = (n: number) => (n % MiB === 0 ? `${n / MiB} MiB` : String(n));
const int = (s: Omit<IntSetting, 'type'>): IntSetting => ({ type: 'int', ...s });

/**
 * Every setting of every entry point, once: flag, environment variable,
 * default (as text; the values are the named constants above), range and
 * description. loadConfig reads its ranges and variable names from here, the
 * CLI generates its options from here, and the README's configuration table is
 * generated from here (`npm run docs:config`; test/unit/config-docs.test.ts
 * fails when it is stale). Adding a setting: one entry here (ConfigFlags
 * follows), its line in SluiceConfig and in loadConfig.
 */
export const SETTINGS = {
  databaseUrl: {
    type: 'string', flag: 'database-url', aliases: ['c', 'connection'], env: 'DATABASE_URL', defaultText: 'embedded', commands: 'all',
    describe: 'Postgres to use (postgres:// or postgresql://); unset → embedded Postgres in --home',
  },
  home: {
    type: 'string', flag: 'home', env: 'SLUICE_HOME', defaultText: './.sluice', commands: 'all',
    describe: 'Embedded Postgres home (data in pgdata/; as root a link to /var/lib/sluice/clusters/…)',
  },
  maxConnections: int({
    flag: 'max-connections', env: 'SLUICE_MAX_CONNECTIONS', min: MIN_BUDGET, max: 10_000, defaultText: String(MAX_CONNECTIONS_DEFAULT), commands: ['worker'],
    describe: `Declared connection budget of a worker; job slots, drainers and the pool not given are fitted to it (at least ${MIN_BUDGET})`,
  }),
  concurrency: int({
    flag: 'concurrency', aliases: ['j'], env: 'SLUICE_CONCURRENCY', min: 1, max: 500, defaultText: `${CONCURRENCY_DEFAULT}, or what fits --max-connections`, commands: ['worker'],
    describe: 'graphile-worker job slots',
  }),
  poolSize: int({
    flag: 'pool-size', env: 'SLUICE_POOL_SIZE', min: 2, max: 1_001, defaultText: 'concurrency + 1', commands: ['worker'],
    describe: "graphile-worker pool connections; sluice's tasks rarely hold one, so many job slots can share a small pool",
  }),
  flushers: int({
    flag: 'flushers', env: 'SLUICE_FLUSHERS', min: 1, max: 32, defaultText: String(FLUSHERS_DEFAULT), commands: ['worker'],
    describe: 'Dedicated COPY connections',
  }),
  drainers: int({
    flag: 'drainers', env: 'SLUICE_DRAINERS', min: 0, max: 64, defaultText: `${DRAINERS_DEFAULT} (1 under a budget of 6)`, commands: ['worker'],
    describe: 'Dedicated drain connections / parallel drain slots (0 = ingest-only worker, others drain)',
  }),
  reserve: int({
    flag: 'reserve', env: 'SLUICE_RESERVE', min: 0, max: 10_000, defaultText: String(RESERVE_DEFAULT), commands: ['worker', 'budget'],
    describe: 'Connections left free for admins and migrations in the cluster check',
  }),
  budgetScope: {
    type: 'string', flag: 'budget-scope', env: 'SLUICE_BUDGET_SCOPE', defaultText: 'cluster', commands: ['worker', 'budget'],
    describe: `${BUDGET_SCOPES.join('|')}: the budget check counts live workers of every database in the cluster, or of this database only (when the cluster's connections are split between databases by hand)`,
  },
  flushRows: int({
    flag: 'flush-rows', env: 'SLUICE_FLUSH_ROWS', min: 1, max: 1_000_000, defaultText: String(FLUSH_ROWS_DEFAULT), commands: ['worker', 'ingest'],
    describe: 'Flush a buffer (one COPY batch) at this many rows',
  }),
  flushBytes: int({
    flag: 'flush-bytes', env: 'SLUICE_FLUSH_BYTES', min: 1024, max: 256 * MiB, defaultText: bytesText(FLUSH_BYTES_DEFAULT), commands: ['worker', 'ingest'],
    describe: '… or at this many encoded bytes',
  }),
  flushAgeMs: int({
    flag: 'flush-age-ms', env: 'SLUICE_FLUSH_AGE_MS', min: 0, max: 60_000, defaultText: String(FLUSH_AGE_MS_DEFAULT), commands: ['worker', 'ingest'],
    describe: '… or once its oldest row waited this long',
  }),
  bufferRows: int({
    flag: 'buffer-rows', env: 'SLUICE_BUFFER_ROWS', min: 1, max: 10_000_000,
    defaultText: `max(${BUFFER_ROWS_DEFAULT}, 2×flush-rows)`, commands: ['worker', 'ingest'],
    describe: 'Ingest (push(), ingest jobs, reading the file) waits while this many rows and rejects are uncommitted, per stream',
  }),
  bufferBytes: int({
    flag: 'buffer-bytes', env: 'SLUICE_BUFFER_BYTES', min: 64 * 1024, max: 16 * 1024 * MiB,
    defaultText: `max(${bytesText(BUFFER_BYTES_DEFAULT)}, 2×flush-bytes)`, commands: ['worker', 'ingest'],
    describe: '… or while they hold this many bytes (the memory bound, see the README\'s "Memory")',
  }),
  drainBatchRows: int({
    flag: 'drain-batch-rows', env: 'SLUICE_DRAIN_BATCH_ROWS', min: 1, max: 1_000_000, defaultText: "the stream's drain_batch_rows", commands: ['worker'],
    describe: 'Rows per drain transaction',
  }),
  drainJobMaxMs: int({
    flag: 'drain-job-max-ms', env: 'SLUICE_DRAIN_JOB_MAX_MS', min: 100, max: 3_600_000, defaultText: String(DRAIN_JOB_MAX_MS_DEFAULT), commands: ['worker'],
    describe: 'A drain job hands its slot back after this long, re-queueing itself if rows remain',
  }),
  localQueueSize: int({
    flag: 'local-queue-size', env: 'SLUICE_LOCAL_QUEUE_SIZE', min: 0, max: 10_000, defaultText: 'max(32, 4×concurrency)', commands: ['worker'],
    describe: 'graphile-worker jobs fetched per query (0 = off)',
  }),
  completeJobBatchDelayMs: int({
    flag: 'complete-job-batch-delay-ms', env: 'SLUICE_COMPLETE_JOB_BATCH_DELAY_MS', min: -1, max: 10_000, defaultText: `${COMPLETE_JOB_BATCH_DELAY_MS_DEFAULT} (off)`, commands: ['worker'],
    describe: 'graphile-worker batched completion delay; off by default because of graphile/worker#636 (see docs/design.md)',
  }),
  workerId: {
    type: 'string', flag: 'worker-id', env: 'SLUICE_WORKER_ID', defaultText: 'host-pid-rand', commands: ['worker'],
    describe: 'Id in sluice.workers and application_name (letters, digits, . _ -; at most 40 characters)',
  },
  heartbeatMs: int({
    flag: 'heartbeat-ms', env: 'SLUICE_HEARTBEAT_MS', min: 100, max: 600_000, defaultText: String(HEARTBEAT_MS_DEFAULT), commands: ['worker'],
    describe: 'How often the worker writes its heartbeat in sluice.workers',
  }),
  staleAfterMs: int({
    flag: 'stale-after-ms', env: 'SLUICE_STALE_AFTER_MS', min: 1_000, max: 3_600_000,
    defaultText: `max(${STALE_AFTER_MS_DEFAULT}, 3×heartbeat-ms)`, commands: ['worker'],
    describe: 'How long after its last heartbeat others count this worker dead (stored with its registration: each worker is judged by its own window; at least 2×heartbeat-ms)',
  }),
  shutdownTimeoutMs: int({
    flag: 'shutdown-timeout-ms', env: 'SLUICE_SHUTDOWN_TIMEOUT_MS', min: 100, max: 3_600_000, defaultText: String(SHUTDOWN_TIMEOUT_MS_DEFAULT), commands: ['worker'],
    describe: 'Time a graceful shutdown may take before running jobs are aborted',
  }),
  rejectsRetentionDays: int({
    flag: 'rejects-retention-days', env: 'SLUICE_REJECTS_RETENTION_DAYS', min: 0, max: 36_500, defaultText: String(REJECTS_RETENTION_DAYS_DEFAULT), commands: ['worker'],
    describe: 'The hourly maintenance task deletes rejects older than this (0 keeps them forever)',
  }),
  healthRetentionDays: int({
    flag: 'health-retention-days', env: 'SLUICE_HEALTH_RETENTION_DAYS', min: 0, max: 36_500, defaultText: String(HEALTH_RETENTION_DAYS_DEFAULT), commands: ['worker'],
    describe: 'The sluice_health_check task deletes health reports older than this (0 keeps them forever)',
  }),
  clockOffsetMs: int({
    flag: 'clock-offset-ms', env: 'SLUICE_CLOCK_OFFSET_MS', min: -CLOCK_OFFSET_MAX_MS, max: CLOCK_OFFSET_MAX_MS, defaultText: '0', commands: ['worker'],
    describe: 'Added to the clock of partition rotation (worker task and `sluice partitions`), to rehearse retention; ingest and the drain keep the database clock',
  }),
  embedded: {
    type: 'boolean', flag: 'embedded', env: 'SLUICE_EMBEDDED', defaultText: 'false', commands: ['worker'],
    describe: 'Let the worker start the embedded Postgres when no DATABASE_URL is set; without it a non-interactive worker (no TTY, or under systemd) refuses to start',
  },
  tasks: {
    type: 'string', flag: 'tasks', env: 'SLUICE_TASKS', defaultText: 'none', commands: ['worker'],
    describe: "Your own graphile-worker tasks, run beside sluice's in the same job slots and pool: one .js/.mjs/.cjs file per task identifier in this folder",
  },
  userCrontab: {
    type: 'string', flag: 'user-crontab', env: 'SLUICE_USER_CRONTAB', defaultText: 'none', commands: ['worker'],
    describe: "Your own schedules (graphile-worker crontab format), added to sluice's",
  },
  crontab: {
    type: 'string', flag: 'crontab', env: 'SLUICE_CRONTAB', defaultText: 'packaged crontab', commands: ['worker'],
    describe: "A crontab file replacing the worker's schedule (e.g. tests run maintenance every minute)",
  },
  migrate: {
    type: 'boolean', flag: 'migrate', env: 'SLUICE_MIGRATE', defaultText: 'true', commands: ['worker'],
    describe: 'Migrate at worker start (--no-migrate or SLUICE_MIGRATE=false skips)',
  },
  logLevel: {
    type: 'string', flag: 'log-level', env: 'SLUICE_LOG_LEVEL', defaultText: 'info (worker), warn', commands: 'all',
    describe: `pino level: ${LOG_LEVELS.join('|')}`,
  },
} as const satisfies Record<string, Setting>;

type SettingKey = keyof typeof SETTINGS;
type FlagValue<S> = S extends { type: 'int' } ? number : S extends { type: 'boolean' } ? boolean : string;

/** Raw flag values as yargs hands them over (camelCase, possibly undefined): one per SETTINGS entry. */
export type ConfigFlags = { -readonly [K in SettingKey]?: FlagValue<(typeof SETTINGS)[K]> };

/** The settings, in the order of the README table. */
export const SETTING_LIST: ReadonlyArray<Setting & { key: SettingKey }> = (Object.keys(SETTINGS) as SettingKey[]).map((key) => ({
  key,
  ...(SETTINGS[key] as Setting),
}));

export function rangeText(setting: IntSetting): string {
  return `${setting.min} to ${setting.max}`;
}

/** The help line of a setting, shared by `--help` and the README table: what it does, its range, its variable. */
export function settingHelp(setting: Setting): string {
  return `${setting.describe} (env ${setting.env}${setting.type === 'int' ? `; ${rangeText(setting)}` : ''})`;
}

export interface SluiceConfig {
  /** Postgres connection string; undefined means "start the embedded server". */
  readonly databaseUrl: string | undefined;
  /** Where the embedded server keeps its data (`./.sluice` by default). */
  readonly homeDir: string;
  readonly workerId: string;
  readonly maxConnections: number;
  readonly reserve: number;
  readonly budgetScope: BudgetScope;
  readonly concurrency: number;
  /** graphile-worker pool size; undefined → concurrency + 1. */
  readonly poolSize: number | undefined;
  readonly flushers: number;
  readonly drainers: number;
  readonly flushRows: number;
  readonly flushBytes: number;
  readonly flushAgeMs: number;
  readonly bufferRows: number;
  readonly bufferBytes: number;
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
  /** Days sluice.rejects rows are kept; 0 keeps them forever. */
  readonly rejectsRetentionDays: number;
  /** Days sluice.health_reports rows are kept; 0 keeps them forever. */
  readonly healthRetentionDays: number;
  /**
   * Added to the wall clock for partition rotation decisions (ms; tests move
   * across months with it). Ingest and the drain keep the database's now().
   */
  readonly clockOffsetMs: number;
  /** A crontab file replacing sluice's own schedule (tests shorten it); undefined: the packaged `crontab`. */
  readonly crontabFile: string | undefined;
  readonly migrate: boolean;
  /** The worker may start the embedded server without a TTY (`--embedded`). */
  readonly embedded: boolean;
  /** A folder of the user's graphile-worker task files; undefined: sluice's tasks only. */
  readonly tasksDir: string | undefined;
  /** The user's crontab file, added to sluice's schedules. */
  readonly userCrontabFile: string | undefined;
  readonly logLevel: LogLevel;
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

type Env = Readonly<Record<string, string | undefined>>;
type IntKey = { [K in SettingKey]: (typeof SETTINGS)[K] extends { type: 'int' } ? K : never }[SettingKey];

/** The integer setting from its flag, else its variable (empty counts as unset), else undefined. */
function readOptionalInt(flags: ConfigFlags, env: Env, key: IntKey): number | undefined {
  const spec: IntSetting = SETTINGS[key];
  const fromFlag = flags[key];
  const fromEnv = env[spec.env];
  let raw: unknown;
  let source: string;
  if (fromFlag !== undefined) {
    raw = fromFlag;
    source = `--${spec.flag}`;
  } else if (fromEnv !== undefined && fromEnv !== '') {
    raw = fromEnv;
    source = spec.env;
  } else {
    return undefined;
  }
  const value = typeof raw === 'number' ? raw : /^-?\d+$/.test(String(raw).trim()) ? Number(String(raw).trim()) : NaN;
  if (!Number.isInteger(value) || value < spec.min || value > spec.max) {
    throw new ConfigError(
      `${source} must be an integer from ${spec.min} to ${spec.max}; got ${JSON.stringify(raw)}`,
    );
  }
  return value;
}

function readBool(flag: boolean | undefined, env: Env, name: string, fallback: boolean): boolean {
  if (flag !== undefined) return flag;
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  if (/^(1|true|yes|on)$/i.test(raw)) return true;
  if (/^(0|false|no|off)$/i.test(raw)) return false;
  throw new ConfigError(`${name} must be true or false; got ${JSON.stringify(raw)}`);
}

interface PlanFlags {
  readonly concurrency: number | undefined;
  readonly poolSize: number | undefined;
  readonly flushers: number | undefined;
  readonly drainers: number | undefined;
}

/**
 * The defaults of the plan, fitted to the declared budget: what is not given
 * shrinks so `--max-connections N` alone starts for every N >= MIN_BUDGET
 * (flushers 1, drainers 2 from a budget of 6, job slots what is left minus the
 * listener, at most CONCURRENCY_DEFAULT). Explicit values are kept as given: a
 * plan they make too big is refused later with hints (src/db/budget.ts).
 */
export function fitToBudget(budget: number, given: PlanFlags): { concurrency: number; poolSize: number | undefined; flushers: number; drainers: number } {
  const flushers = given.flushers ?? FLUSHERS_DEFAULT;
  const drainers = given.drainers ?? (budget >= 6 ? DRAINERS_DEFAULT : 1);
  // With an explicit pool, job slots do not cost connections: keep the default.
  const concurrency = given.concurrency ?? (given.poolSize !== undefined ? CONCURRENCY_DEFAULT : Math.max(1, Math.min(CONCURRENCY_DEFAULT, budget - flushers - drainers - 1)));
  return { concurrency, poolSize: given.poolSize, flushers, drainers };
}

/** A path setting, resolved against the working directory; empty counts as unset. */
function readPath(raw: string | undefined): string | undefined {
  return raw?.trim() ? path.resolve(raw.trim()) : undefined;
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
  const databaseUrl = (flags.databaseUrl ?? env[SETTINGS.databaseUrl.env])?.trim() || undefined;
  if (databaseUrl !== undefined && !/^postgres(ql)?:\/\//.test(databaseUrl)) {
    throw new ConfigError('DATABASE_URL must be a postgres:// or postgresql:// connection string');
  }
  const workerId = flags.workerId ?? env[SETTINGS.workerId.env] ?? defaultWorkerId();
  if (!WORKER_ID_PATTERN.test(workerId)) {
    throw new ConfigError(
      `--worker-id must match ${WORKER_ID_PATTERN} (letters, digits, . _ -; at most 40 characters); got ${JSON.stringify(workerId)}`,
    );
  }
  const logLevel = (flags.logLevel ?? env[SETTINGS.logLevel.env] ?? defaults.logLevel ?? 'info').toLowerCase();
  if (!LOG_LEVELS.includes(logLevel as LogLevel)) {
    throw new ConfigError(`--log-level must be one of ${LOG_LEVELS.join(', ')}; got ${JSON.stringify(logLevel)}`);
  }
  const int = (key: IntKey, fallback: number) => readOptionalInt(flags, env, key) ?? fallback;
  const budgetScope = (flags.budgetScope ?? env[SETTINGS.budgetScope.env] ?? 'cluster').trim().toLowerCase() || 'cluster';
  if (!BUDGET_SCOPES.includes(budgetScope as BudgetScope)) {
    throw new ConfigError(`--budget-scope (${SETTINGS.budgetScope.env}) must be one of ${BUDGET_SCOPES.join(', ')}; got ${JSON.stringify(budgetScope)}`);
  }

  const flushRows = int('flushRows', FLUSH_ROWS_DEFAULT);
  const bufferRows = int('bufferRows', Math.max(BUFFER_ROWS_DEFAULT, flushRows * 2));
  if (bufferRows < flushRows) {
    throw new ConfigError(`--buffer-rows (${bufferRows}) must be at least --flush-rows (${flushRows})`);
  }
  const flushBytes = int('flushBytes', FLUSH_BYTES_DEFAULT);
  const bufferBytes = int('bufferBytes', Math.max(BUFFER_BYTES_DEFAULT, flushBytes * 2));
  if (bufferBytes < flushBytes) {
    throw new ConfigError(`--buffer-bytes (${bufferBytes}) must be at least --flush-bytes (${flushBytes})`);
  }
  const heartbeatMs = int('heartbeatMs', HEARTBEAT_MS_DEFAULT);
  const staleAfterMs = int('staleAfterMs', Math.max(STALE_AFTER_MS_DEFAULT, heartbeatMs * 3));
  if (staleAfterMs < heartbeatMs * 2) {
    throw new ConfigError(
      `--stale-after-ms (${staleAfterMs}) must be at least twice --heartbeat-ms (${heartbeatMs}), or live workers look dead`,
    );
  }
  const maxConnections = int('maxConnections', MAX_CONNECTIONS_DEFAULT);
  const fitted = fitToBudget(maxConnections, {
    concurrency: readOptionalInt(flags, env, 'concurrency'),
    poolSize: readOptionalInt(flags, env, 'poolSize'),
    flushers: readOptionalInt(flags, env, 'flushers'),
    drainers: readOptionalInt(flags, env, 'drainers'),
  });
  const concurrency = fitted.concurrency;

  const config: SluiceConfig = {
    databaseUrl,
    homeDir: path.resolve(flags.home ?? env[SETTINGS.home.env] ?? '.sluice'),
    workerId,
    maxConnections,
    reserve: int('reserve', RESERVE_DEFAULT),
    budgetScope: budgetScope as BudgetScope,
    concurrency,
    // undefined: graphile-worker's own default (concurrency + 1), see run-worker.
    poolSize: fitted.poolSize,
    flushers: fitted.flushers,
    // 0: an ingest-only worker (it does not take drain jobs; other workers drain).
    drainers: fitted.drainers,
    flushRows,
    flushBytes,
    flushAgeMs: int('flushAgeMs', FLUSH_AGE_MS_DEFAULT),
    bufferRows,
    bufferBytes,
    // undefined: each stream's own drain_batch_rows (src/streams/stream-defaults.ts).
    drainBatchRows: readOptionalInt(flags, env, 'drainBatchRows'),
    drainJobMaxMs: int('drainJobMaxMs', DRAIN_JOB_MAX_MS_DEFAULT),
    heartbeatMs,
    staleAfterMs,
    shutdownTimeoutMs: int('shutdownTimeoutMs', SHUTDOWN_TIMEOUT_MS_DEFAULT),
    localQueueSize: int('localQueueSize', Math.max(concurrency * 4, 32)),
    // Off by default: graphile-worker 0.18 shuts its pool down on the first transient
    // error of a completion batch (graphile/worker#636). See docs/design.md.
    completeJobBatchDelayMs: int('completeJobBatchDelayMs', COMPLETE_JOB_BATCH_DELAY_MS_DEFAULT),
    rejectsRetentionDays: int('rejectsRetentionDays', REJECTS_RETENTION_DAYS_DEFAULT),
    healthRetentionDays: int('healthRetentionDays', HEALTH_RETENTION_DAYS_DEFAULT),
    clockOffsetMs: int('clockOffsetMs', 0),
    crontabFile: readPath(flags.crontab ?? env[SETTINGS.crontab.env]),
    migrate: readBool(flags.migrate, env, SETTINGS.migrate.env, true),
    embedded: readBool(flags.embedded, env, SETTINGS.embedded.env, false),
    tasksDir: readPath(flags.tasks ?? env[SETTINGS.tasks.env]),
    userCrontabFile: readPath(flags.userCrontab ?? env[SETTINGS.userCrontab.env]),
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
