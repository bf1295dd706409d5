/** Event helpers for assertions. */
import { generateEvents, type GeneratedEvent } from '../../src/workload/event-generator.js';
import type { TestDatabase } from './database.js';

export function makeEvents(count: number, seed: number, extra: Record<string, unknown> = {}, duplicateRate = 0.01) {
  return generateEvents({ count, seed, extra, duplicateRate });
}

export function distinctIds(events: readonly GeneratedEvent[]): Set<string> {
  return new Set(events.map((e) => e.event_id));
}

/** event_ids in the durable table for a stream, and how many rows they make. */
export async function durableIds(db: TestDatabase, stream = 'events'): Promise<{ ids: Set<string>; rows: number }> {
  const { rows } = await db.query<{ event_id: string }>(`SELECT event_id::text FROM sluice_data.${stream}`);
  return { ids: new Set(rows.map((r) => r.event_id)), rows: rows.length };
}

export async function stagedCount(db: TestDatabase, stream = 'events'): Promise<number> {
  const { rows } = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM sluice_staging.${stream}`);
  return rows[0]?.n ?? 0;
}
