/**
 * The `sluice_ingest` job payload:
 *   {"stream": "events", "events": [ … ], "ack": "staged" | "durable"}
 * or an array of those (graphile-worker batch jobs).
 */
import { SluiceError } from '../errors.js';
import type { AckLevel } from './ingestor.js';

export interface IngestPayloadItem {
  readonly stream: string;
  readonly events: readonly unknown[];
  readonly ack: AckLevel;
}

/** Parse one item; throws SluiceError('invalid_payload') naming what is wrong. */
export function parseIngestPayloadItem(item: unknown): IngestPayloadItem {
  if (item === null || typeof item !== 'object' || Array.isArray(item)) {
    throw new SluiceError('invalid_payload', 'sluice_ingest payload must be {"stream": "...", "events": [...]} (or an array of those)');
  }
  const { stream, events, ack } = item as Record<string, unknown>;
  if (typeof stream !== 'string') throw new SluiceError('invalid_payload', 'sluice_ingest payload: "stream" must be a string');
  if (!Array.isArray(events)) throw new SluiceError('invalid_payload', 'sluice_ingest payload: "events" must be an array');
  if (ack !== undefined && ack !== 'staged' && ack !== 'durable') {
    throw new SluiceError('invalid_payload', 'sluice_ingest payload: "ack" must be "staged" or "durable"');
  }
  return { stream, events, ack: ack ?? 'staged' };
}
