/**
 * What every CLI command shares: the config (flags > env > defaults), a
 * logger on stderr, the database (DATABASE_URL or the embedded default, said
 * aloud), a shutdown signal for SIGINT/SIGTERM, and clean-up on the way out.
 */
import path from 'node:path';
import type { Argv } from 'yargs';
import {
  ConfigError,
  loadConfig,
  SETTING_LIST,
  settingHelp,
  type ConfigFlags,
  type LogLevel,
  type Setting,
  type SettingCommand,
  type SluiceConfig,
} from '../config.js';
import { openDatabase, type DatabaseTarget } from '../db/database.js';
import { coerceError, isTransientError, SluiceError, SQLSTATE } from '../errors.js';
import { toSnakeJson } from '../json-keys.js';
import { createLogger, type Logger } from '../logger.js';

/** After the embedded server vanishes, how long a command may wind down before it exits anyway. */
const LOST_SERVER_EXIT_GRACE_MS = 10_000;

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

/** The yargs declaration of one setting: no yargs default, so loadConfig can tell flag from env from default. */
function addSetting<T>(y: Argv<T>, setting: Setting): Argv<T> {
  return y.option(setting.flag, {
    ...(setting.aliases ? { alias: [...setting.aliases] } : {}),
    type: setting.type === 'int' ? 'number' : setting.type,
    describe: settingHelp(setting),
    defaultDescription: setting.defaultText,
  });
}

/** Options every command takes (SETTINGS entries with commands: 'all'). */
export function globalOptions<T>(y: Argv<T>): Argv<T & GlobalArgs> {
  return SETTING_LIST.filter((s) => s.commands === 'all').reduce(addSetting, y) as Argv<T & GlobalArgs>;
}

/** The settings of `command`, generated from src/config.ts SETTINGS (help shows the real defaults). */
export function configOptions<T>(y: Argv<T>, command: SettingCommand): Argv<T & ConfigFlags> {
  return SETTING_LIST.filter((s) => s.commands !== 'all' && s.commands.includes(command)).reduce(addSetting, y) as Argv<T & ConfigFlags>;
}

/** A person at a terminal: stdin and stdout are TTYs and no service manager started us (systemd sets INVOCATION_ID / JOURNAL_STREAM). */
export function isInteractive(env: NodeJS.ProcessEnv): boolean {
  if (env.INVOCATION_ID || env.JOURNAL_STREAM) return false;
  return Boolean(process.stdin.isTTY && process.stdout.isTTY);
}

/**
 * What `--json` prints, the same for every command: one JSON document on one line of
 * stdout (one per refresh with --watch), keys in snake_case, and nothing else on stdout.
 */
export function printJson(value: unknown): void {
  process.stdout.write(`${toSnakeJson(value)}\n`);
}

/** pino's numeric levels, so a stderr line from `say` reads like one from the logger. */
const PINO_LEVEL = { info: 30, warn: 40, error: 50 } as const;
export type SayLevel = keyof typeof PINO_LEVEL;

/**
 * A line on stderr about the command itself (progress, outcome, an error), kept
 * apart from stdout data. On a terminal it reads `sluice: …`; otherwise (a pipe,
 * a file, the journal) it is a pino-shaped JSON line — level, time, msg, and any
 * fields in snake_case — so every stderr line of every command parses as JSON
 * beside the logger's own.
 */
export function say(message: string, level: SayLevel = 'info', fields: Record<string, unknown> = {}): void {
  if (process.stderr.isTTY) {
    process.stderr.write(`sluice: ${level === 'warn' ? 'warning: ' : ''}${message}\n`);
    return;
  }
  process.stderr.write(`${toSnakeJson({ level: PINO_LEVEL[level], time: new Date().toISOString(), ...fields, msg: message })}\n`);
}

/**
 * Node's own warnings (a library's DeprecationWarning, MaxListenersExceeded…) are printed
 * as plain `(node:PID) …` lines by a default listener; off a terminal they go through `say`
 * instead, so stderr stays all JSON. On a terminal Node's printing is kept.
 */
export function structuredProcessWarnings(): void {
  if (process.stderr.isTTY || process.listenerCount('warning') === 0) return;
  process.removeAllListeners('warning');
  process.on('warning', (w) => say(w.message, 'warn', { warning: w.name, ...((w as { code?: string }).code ? { warning_code: (w as { code?: string }).code } : {}) }));
}

/** yargs names an unknown `--bogus-flag` twice ("Unknown arguments: bogus-flag, bogusFlag"): keep the spelling the user typed. */
function withoutCamelEchoes(message: string): string {
  const m = /^(Unknown arguments?): (.*)$/.exec(message);
  if (!m) return message;
  const names = m[2]!.split(', ');
  const kept = names.filter((n) => !(/[A-Z]/.test(n) && names.includes(n.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`))));
  return `${kept.length === 1 ? 'Unknown argument' : 'Unknown arguments'}: ${kept.join(', ')}`;
}

/** A usage error from yargs (exit 2): the help and the message on a terminal, one JSON line otherwise. */
export function reportUsageError(message: string, help: () => string): void {
  if (process.stderr.isTTY) process.stderr.write(`${help()}\n\n`);
  say(withoutCamelEchoes(message), 'error', { code: 'usage_error', exit_code: 2, hint: 'sluice --help (or sluice <command> --help) lists the options' });
  process.exitCode = 2;
}

export async function withRuntime<T>(
  args: GlobalArgs & ConfigFlags,
  run: (rt: Runtime) => Promise<T>,
  defaults: { logLevel?: LogLevel; embeddedNeedsFlag?: boolean } = {},
): Promise<T> {
  const config = loadConfig(args, process.env, { logLevel: defaults.logLevel ?? 'warn' });
  if (defaults.embeddedNeedsFlag && !config.databaseUrl && !config.embedded && !isInteractive(process.env)) {
    // A service with a broken env file must not ingest into a private ./.sluice nobody reads.
    throw new ConfigError(
      'DATABASE_URL is not set (nor --database-url / -c) and this is not an interactive terminal (no TTY, or under systemd): ' +
        'refusing to start a private embedded Postgres. Set DATABASE_URL, or pass --embedded (SLUICE_EMBEDDED=true) to use the embedded server on purpose',
    );
  }
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
  const embedded = db.embedded;
  if (embedded) {
    const shown = path.relative(process.cwd(), embedded.dataDir) || embedded.dataDir;
    const stored = embedded.clusterDir === path.resolve(embedded.dataDir) ? '' : ` -> ${embedded.clusterDir}`;
    say(`${embedded.started ? 'started' : 'using running'} embedded Postgres at ${db.displayUrl} (data: ${shown}${stored})`);
    embedded.onLost((reason) => {
      // Say so and exit non-zero; give the command a moment to wind down, then go regardless.
      say(`embedded Postgres at ${db.displayUrl} stopped under this command (${reason}); exiting`, 'warn');
      process.exitCode = 1;
      controller.abort();
      setTimeout(() => process.exit(1), LOST_SERVER_EXIT_GRACE_MS).unref();
    });
  }
  try {
    return await run({ config, log, db, signal: controller.signal });
  } finally {
    if (embedded) {
      const outcome = await embedded.stop();
      if (outcome.stopped) say('embedded Postgres stopped');
      else if (outcome.others.length > 0) {
        const pids = outcome.others.map((l) => l.pid).join(', ');
        say(`embedded Postgres left running for ${outcome.others.length} other sluice command(s) (pid ${pids})`);
      }
    }
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    log.flush();
  }
}

/**
 * Long-running commands that run graphile-worker keep going on an unhandled
 * rejection: graphile-worker 0.18 completes and fails jobs fire-and-forget, so
 * a connection killed at that moment (Postgres restart, admin termination)
 * rejects with nobody listening. That case is expected during a restart and is
 * repaired (the job stays locked under this worker's pool id until its orphan
 * sweep unlocks it, src/worker/orphaned-locks.ts; it then runs again), so it is
 * a warning without a stack. Anything else is a bug: error, with its stack.
 * Crashing the worker would only stop everything else too.
 */
export function keepRunningOnUnhandledRejections(log: Logger): () => void {
  const onRejection = (reason: unknown) => {
    const err = coerceError(reason);
    // FATAL: the server ended or refused the session (e.g. 55000 "database is not accepting connections").
    if (isTransientError(reason) || (reason as { severity?: unknown } | null)?.severity === 'FATAL') {
      log.warn(
        { err: err.message },
        'worker: a job completion or fetch was lost with its connection (Postgres restarting?); ' +
          'the job stays locked until this worker releases it (within about a minute) and then runs again',
      );
    } else {
      log.error({ err: err.message, stack: err.stack }, 'worker: unhandled rejection (a bug; logged, not fatal)');
    }
  };
  process.on('unhandledRejection', onRejection);
  return () => process.off('unhandledRejection', onRejection);
}

/** The floor of `--interval` for commands with `--watch` (status, health): below it a refresh loop only burns the database. */
export const MIN_INTERVAL_S = 0.2;

export function assertWatchInterval(interval: number): void {
  if (!(interval >= MIN_INTERVAL_S)) {
    throw new SluiceError('invalid_argument', `--interval must be at least ${MIN_INTERVAL_S} seconds; got ${String(interval)}`);
  }
}

/** Print an error the way users should see it (a `say` line at level error, with its code), and set the exit code: 2 for configuration, 1 otherwise. */
export function reportError(err: unknown): void {
  if (err instanceof ConfigError) {
    say(`configuration error: ${err.message}`, 'error', { code: 'configuration_error', exit_code: 2 });
    process.exitCode = 2;
  } else if (err instanceof SluiceError) {
    say(err.message, 'error', { code: err.code, exit_code: 1 });
    process.exitCode = 1;
  } else {
    const e = err as Error;
    const cause = (e?.cause as Error | undefined)?.message;
    const unmigrated = isUnmigrated(err);
    const hint = unmigrated ? '; is this database migrated? run `sluice migrate` (with the same DATABASE_URL)' : '';
    const sqlstate = (err as { code?: unknown })?.code;
    say(`error: ${e?.message ?? String(err)}${cause && !e.message.includes(cause) ? ` (cause: ${cause})` : ''}${hint}`, 'error', {
      code: unmigrated ? 'not_migrated' : 'error',
      ...(typeof sqlstate === 'string' ? { sqlstate } : {}),
      exit_code: 1,
    });
    process.exitCode = 1;
  }
}

/** A missing table or schema (by SQLSTATE, never by message text): sluice's schema is not there yet. */
function isUnmigrated(err: unknown): boolean {
  const codes = [(err as { code?: unknown })?.code, ((err as { cause?: { code?: unknown } })?.cause)?.code];
  return codes.some((c) => c === SQLSTATE.UNDEFINED_TABLE || c === SQLSTATE.INVALID_SCHEMA_NAME);
}

