/**
 * Identifier rules. Names users choose (streams, columns) are validated here
 * with a message saying what is allowed, and only ever reach SQL through
 * `quoteIdent` (pg's escapeIdentifier). The SQL side repeats these rules
 * (sluice.streams' CHECK, sluice.create_stream, sluice.reserved_column_names()
 * in migrations/00001 and 00002); test/one-truth.test.ts runs a corpus of
 * names through both and fails when they disagree.
 */
import pg from 'pg';
import { SluiceError } from '../errors.js';

export const STREAM_NAME_PATTERN = /^[a-z][a-z0-9_]{0,47}$/;
/** Names the read view (`<stream>_all`) and the monthly partitions (`<stream>_pYYYYMM`) take. */
export const RESERVED_STREAM_NAME_SUFFIX = /(_all|_p[0-9]{6})$/;
export const COLUMN_NAME_PATTERN = /^[a-z][a-z0-9_]{0,62}$/;

/** Envelope columns every stream has, plus system column names Postgres reserves. */
export const RESERVED_COLUMN_NAMES: ReadonlySet<string> = new Set([
  'event_id', 'occurred_at', 'payload', 'received_at', 'drained_at', 'staged',
  'tableoid', 'xmin', 'xmax', 'cmin', 'cmax', 'ctid',
]);

export function quoteIdent(name: string): string {
  return pg.escapeIdentifier(name);
}

/** Throws a SluiceError('invalid_stream_name') explaining the rule. */
export function assertStreamName(name: unknown): asserts name is string {
  if (typeof name !== 'string' || !STREAM_NAME_PATTERN.test(name)) {
    throw new SluiceError(
      'invalid_stream_name',
      `invalid stream name ${JSON.stringify(name)}: use 1-48 characters, a lowercase letter first, then lowercase letters, digits or _ (${STREAM_NAME_PATTERN})`,
    );
  }
  if (RESERVED_STREAM_NAME_SUFFIX.test(name)) {
    throw new SluiceError(
      'invalid_stream_name',
      `invalid stream name ${JSON.stringify(name)}: names ending in _all or _pYYYYMM are reserved for the read view and partitions`,
    );
  }
}

export function assertColumnName(name: unknown): asserts name is string {
  if (typeof name !== 'string' || !COLUMN_NAME_PATTERN.test(name)) {
    throw new SluiceError(
      'invalid_column_name',
      `invalid column name ${JSON.stringify(name)}: use a lowercase letter, then lowercase letters, digits or _ (at most 63)`,
    );
  }
  if (RESERVED_COLUMN_NAMES.has(name)) {
    throw new SluiceError('invalid_column_name', `column name ${JSON.stringify(name)} is reserved (every stream has event_id, occurred_at, payload, received_at, drained_at)`);
  }
}

/** Schema-qualified, quoted table names of a stream. */
export function stagingTable(stream: string): string {
  return `sluice_staging.${quoteIdent(stream)}`;
}

export function durableTable(stream: string): string {
  return `sluice_data.${quoteIdent(stream)}`;
}
