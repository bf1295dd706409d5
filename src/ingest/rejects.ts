/** Writing to sluice.rejects: one statement for a whole batch of refused events. */
import type pg from 'pg';
import type { RejectReason } from './event-encoder.js';

export type RejectSource = 'sql' | 'http' | 'file' | 'client' | 'drain';

export interface RejectRow {
  readonly reason: RejectReason;
  readonly message: string;
  readonly raw: string;
}

const INSERT_REJECTS = `
INSERT INTO sluice.rejects (stream, source, reason, message, raw)
SELECT $1::text, $2::text, r.reason, r.message, r.raw
  FROM unnest($3::text[], $4::text[], $5::text[]) AS r(reason, message, raw)`;

/** Postgres text cannot hold NUL or unpaired surrogates; a reject must never fail to be stored. */
export function storableText(text: string): string {
  const cleaned = text.includes('\0') ? text.replace(/\0/g, '\\u0000') : text;
  return cleaned.isWellFormed() ? cleaned : cleaned.toWellFormed();
}

export async function insertRejects(client: pg.ClientBase, stream: string, source: RejectSource, rows: readonly RejectRow[]): Promise<void> {
  if (rows.length === 0) return;
  await client.query(INSERT_REJECTS, [
    stream,
    source,
    rows.map((r) => r.reason),
    rows.map((r) => storableText(r.message)),
    rows.map((r) => storableText(r.raw)),
  ]);
}
