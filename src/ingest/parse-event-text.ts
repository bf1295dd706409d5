/**
 * One event's JSON text to a value, with the checks every text front door makes
 * before the encoder: too large as sent (measured without parsing: parsing huge
 * input only makes garbage), not JSON, or JSON nested too deeply to read exactly.
 * Shared by `sluice ingest` (NDJSON lines) and `sluice rejects replay` (a
 * reject's raw text), so both refuse the same input for the same reason.
 */
import { parseJsonExact } from '../codec/exact-json.js';
import type { StreamDefinition } from '../streams/registry.js';
import { Rejection } from './event-encoder.js';

/** The parsed event, or why its text cannot be one (message without any line prefix). */
export function parseEventText(text: string, stream: Pick<StreamDefinition, 'name' | 'maxEventBytes'>): { event: unknown } | Rejection {
  const maxBytes = stream.maxEventBytes;
  if (text.length * 3 > maxBytes) {
    const bytes = Buffer.byteLength(text);
    if (bytes > maxBytes) return new Rejection('event_too_large', `event is ${bytes} bytes of JSON; stream ${stream.name} allows ${maxBytes} (max_event_bytes)`);
  }
  try {
    // JSON.parse, or — when the text holds a number a double would change — its exact twin.
    return { event: parseJsonExact(text) };
  } catch (err) {
    // SyntaxError: not JSON. Anything else: valid JSON nested too deeply to read exactly.
    return new Rejection(err instanceof SyntaxError ? 'invalid_json' : 'invalid_payload', (err as Error).message);
  }
}
