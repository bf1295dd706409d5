/**
 * One clock for decisions the database also makes. The stream window (which
 * months an event may land in) is checked by the Ingestor at ingest and by
 * Postgres' now() at drain; a client whose clock is off would accept events the
 * drain then rejects, or reject events the drain would take. So the Ingestor
 * reads time as the database sees it: local time plus the offset measured here.
 */
import type pg from 'pg';

const DATABASE_NOW_MS = `SELECT (extract(epoch FROM clock_timestamp()) * 1000)::float8 AS now_ms`;

/** Database time minus local time, in ms (half the round trip is the error bound). */
export async function databaseClockOffsetMs(db: pg.Pool | pg.ClientBase): Promise<number> {
  const before = Date.now();
  const { rows } = await db.query<{ now_ms: number }>(DATABASE_NOW_MS);
  const after = Date.now();
  const databaseNow = rows[0]?.now_ms ?? after;
  return Math.round(databaseNow - (before + after) / 2);
}

/** A clock that reads the database's time without a round trip. */
export function databaseClock(offsetMs: number): () => number {
  return () => Date.now() + offsetMs;
}
