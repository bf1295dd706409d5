/**
 * Feed NDJSON (a file or stdin) through an Ingestor: one event per line,
 * blank lines skipped, unparsable or runaway lines rejected with their line
 * number, back-pressure honoured (reading pauses while the buffer is full).
 */
import type { Readable } from 'node:stream';
import type { InputIngestor } from './create-ingestor.js';
import { Rejection } from './event-encoder.js';
import { parseEventText } from './parse-event-text.js';
import { fileLineKey } from './rejects.js';
import { readNdjson } from './ndjson.js';
import { rejectCountsSince, type RejectCount } from './reject-counts.js';

export interface NdjsonIngestResult {
  readonly lines: number;
  readonly bytes: number;
  readonly accepted: number;
  readonly rejected: number;
  /** This run's rejects by reason, most first (counted by its Ingestor, not read back from sluice.rejects). */
  readonly rejectsByReason: readonly RejectCount[];
  readonly durationMs: number;
}

export interface NdjsonIngestOptions {
  /** Called with bytes read so far and events accepted so far (for progress bars). */
  readonly onProgress?: (bytes: number, events: number) => void;
  /** Stop reading (what was read is still flushed). */
  readonly signal?: AbortSignal;
}

export async function ingestNdjson(input: Readable, ingestor: InputIngestor, options: NdjsonIngestOptions = {}): Promise<NdjsonIngestResult> {
  const started = Date.now();
  const before = ingestor.stats();
  const rejectsBefore = ingestor.rejectCounts();
  const maxLineChars = Math.max(ingestor.stream.maxEventBytes * 4, 1 << 20);
  let bytes = 0;
  let lines = 0;
  let events = 0;
  const stopReading = () => input.destroy();
  options.signal?.addEventListener('abort', stopReading, { once: true });
  try {
    for await (const line of readNdjson(input, maxLineChars, (n) => (bytes += n))) {
      // Rejects count against the buffer too: wait for space before any line, good or bad.
      if (ingestor.full) await ingestor.waitForSpace();
      lines = line.number;
      if (line.truncated) {
        ingestor.rejectInput(
          'event_too_large',
          `line ${line.number} is ${line.length} characters long; stream ${ingestor.stream.name} allows events of ${ingestor.stream.maxEventBytes} bytes`,
          line.text,
          fileLineKey(line.number, line.text),
        );
        continue;
      }
      if (line.invalidUtf8) {
        ingestor.rejectInput(
          'invalid_utf8',
          `line ${line.number} is not valid UTF-8; its ${line.length} bytes are kept escaped (\\xNN) in raw`,
          line.text,
          fileLineKey(line.number, line.text),
        );
        continue;
      }
      if (line.text.trim() === '') continue;
      const parsed = parseEventText(line.text, ingestor.stream);
      if (parsed instanceof Rejection) {
        ingestor.rejectInput(parsed.reason, `line ${line.number}: ${parsed.message}`, line.text, fileLineKey(line.number, line.text));
        continue;
      }
      const event = parsed.event;
      const lineNumber = line.number;
      const text = line.text;
      ingestor.offer(event, text, undefined, () => fileLineKey(lineNumber, text));
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
    rejectsByReason: rejectCountsSince(rejectsBefore, ingestor.rejectCounts()),
    durationMs: Date.now() - started,
  };
}
