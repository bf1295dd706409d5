/**
 * Feed NDJSON (a file or stdin) through an Ingestor: one event per line,
 * blank lines skipped, unparsable or runaway lines rejected with their line
 * number, back-pressure honoured (reading pauses while the buffer is full).
 */
import type { Readable } from 'node:stream';
import type { ClientIngestor } from './create-ingestor.js';
import { readNdjson } from './ndjson.js';

export interface NdjsonIngestResult {
  readonly lines: number;
  readonly bytes: number;
  readonly accepted: number;
  readonly rejected: number;
  readonly durationMs: number;
}

export interface NdjsonIngestOptions {
  /** Called with bytes read so far and events accepted so far (for progress bars). */
  readonly onProgress?: (bytes: number, events: number) => void;
  /** Stop reading (what was read is still flushed). */
  readonly signal?: AbortSignal;
}

export async function ingestNdjson(input: Readable, ingestor: ClientIngestor, options: NdjsonIngestOptions = {}): Promise<NdjsonIngestResult> {
  const started = Date.now();
  const before = ingestor.stats();
  const maxLineChars = Math.max(ingestor.stream.maxEventBytes * 4, 1 << 20);
  let bytes = 0;
  let lines = 0;
  let events = 0;
  const stopReading = () => input.destroy();
  options.signal?.addEventListener('abort', stopReading, { once: true });
  try {
    for await (const line of readNdjson(input, maxLineChars, (n) => (bytes += n))) {
      lines = line.number;
      if (line.truncated) {
        ingestor.rejectInput(
          'event_too_large',
          `line ${line.number} is ${line.length} characters long; stream ${ingestor.stream.name} allows events of ${ingestor.stream.maxEventBytes} bytes`,
          line.text,
        );
        continue;
      }
      if (line.text.trim() === '') continue;
      let event: unknown;
      try {
        event = JSON.parse(line.text);
      } catch (err) {
        ingestor.rejectInput('invalid_json', `line ${line.number}: ${(err as Error).message}`, line.text);
        continue;
      }
      if (ingestor.full) await ingestor.waitForSpace();
      ingestor.offer(event, line.text);
      if (++events % 10_000 === 0) options.onProgress?.(bytes, events);
    }
  } catch (err) {
    // Destroying the input on abort ends the iteration with a premature-close error: expected.
    if (!options.signal?.aborted) throw err;
  } finally {
    options.signal?.removeEventListener('abort', stopReading);
  }
  await ingestor.flush();
  options.onProgress?.(bytes, events);
  const after = ingestor.stats();
  return {
    lines,
    bytes,
    accepted: after.accepted - before.accepted,
    rejected: after.rejected - before.rejected,
    durationMs: Date.now() - started,
  };
}
