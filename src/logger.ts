/**
 * Structured logs (pino) on stderr, so stdout stays clean for data and `--json`.
 * Messages read like sentences ("drain: moved batch"), fields are snake_case.
 */
import { pino, type Logger } from 'pino';
import type { LogLevel } from './config.js';

export type { Logger } from 'pino';

export function createLogger(level: LogLevel, bindings: Record<string, unknown> = {}): Logger {
  return pino(
    {
      level,
      base: { ...bindings },
      // Never let a connection string with a password reach the logs.
      redact: { paths: ['databaseUrl', 'database_url', 'connectionString', '*.password', 'password'], censor: '*****' },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    pino.destination({ fd: 2, sync: false }),
  );
}

/** A logger that drops everything: for library callers who pass none. */
export const silentLogger: Logger = pino({ level: 'silent' });
