/**
 * Structured logs (pino) on stderr, so stdout stays clean for data and `--json`.
 * Messages read like sentences ("drain: moved batch"), fields are snake_case.
 */
import { pino, type Logger } from 'pino';
import pretty from 'pino-pretty';
import type { LogLevel } from './config.js';

export type { Logger } from 'pino';

/** JSON lines for machines; on a terminal, pino-pretty's readable lines instead. */
export function createLogger(level: LogLevel, bindings: Record<string, unknown> = {}): Logger {
  const destination = process.stderr.isTTY
    ? pretty({ destination: 2, sync: true, colorize: true, ignore: 'pid,hostname', translateTime: 'HH:MM:ss.l' })
    : pino.destination({ fd: 2, sync: false });
  return pino(
    {
      level,
      base: { ...bindings },
      // Never let a connection string with a password reach the logs.
      redact: { paths: ['databaseUrl', 'database_url', 'connectionString', '*.password', 'password'], censor: '*****' },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    destination,
  );
}

/** A logger that drops everything: for library callers who pass none. */
export const silentLogger: Logger = pino({ level: 'silent' });
