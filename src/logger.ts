/**
 * Structured logs (pino) on stderr, so stdout stays clean for data and `--json`.
 * Messages read like sentences ("drain: moved batch"), fields are snake_case.
 */
import { createRequire } from 'node:module';
import { pino, type Logger } from 'pino';
import type { LogLevel } from './config.js';
import { snakeCase } from './json-keys.js';

export type { Logger } from 'pino';

/** JSON lines for machines; on a terminal, pino-pretty's readable lines instead. */
export function createLogger(level: LogLevel, bindings: Record<string, unknown> = {}): Logger {
  const pretty = process.stderr.isTTY ? loadPretty() : undefined;
  const destination = pretty
    ? pretty({ destination: 2, sync: true, colorize: true, ignore: 'pid,hostname', translateTime: 'HH:MM:ss.l' })
    : pino.destination({ fd: 2, sync: false });
  return pino(loggerOptions(level, bindings), destination);
}

/**
 * Level, redaction, timestamps and key casing. Redaction runs after the
 * snake_case formatter (pino applies `formatters.log` first), so each secret
 * key is listed in both casings.
 */
export function loggerOptions(level: LogLevel, bindings: Record<string, unknown> = {}): pino.LoggerOptions {
  return {
    level,
    base: { ...bindings },
    // Never let a connection string with a password reach the logs.
    redact: {
      paths: ['databaseUrl', 'database_url', 'connectionString', 'connection_string', '*.password', 'password'],
      censor: '*****',
    },
    timestamp: pino.stdTimeFunctions.isoTime,
    // Fields are snake_case like every JSON sluice writes; a camelCase key passed by mistake is renamed, not shipped.
    formatters: { log: (fields) => Object.fromEntries(Object.entries(fields).map(([k, v]) => [snakeCase(k), v])) },
  };
}

type Pretty = typeof import('pino-pretty');

/** pino-pretty is optional (production hosts install with --omit=optional or without it): JSON lines when it is absent. */
function loadPretty(): Pretty | undefined {
  try {
    const mod = createRequire(import.meta.url)('pino-pretty') as Pretty | { default: Pretty };
    return typeof mod === 'function' ? mod : mod.default;
  } catch {
    return undefined;
  }
}

/** A logger that drops everything: for library callers who pass none. */
export const silentLogger: Logger = pino({ level: 'silent' });
