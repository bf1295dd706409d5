/**
 * The scale run's events, made chunk by chunk as they are pushed: ten million
 * events held at once would need gigabytes (the other scenarios build their
 * whole workload up front). Each chunk is the bench generator's output with
 * its own seed, its arrival times continuing where the last chunk stopped.
 * A worker thread makes them ahead of the producer (ChunkSource), so the
 * making (about a third of the producer's time) overlaps its waits instead of
 * adding to them.
 */
import { Worker } from 'node:worker_threads';
import { generateEvents } from '../../workload/event-generator.js';

/** Events per chunk: small enough to keep memory flat, large enough that re-sends look back far. */
export const SCALE_CHUNK = 50_000;
/**
 * The generator's PRNG (mulberry32) walks one 2³²-step cycle and the seed is
 * the starting point; a chunk draws under 10 numbers per event (< 2²⁰ steps
 * for a chunk), so seeds 2²² steps apart never replay each other's numbers
 * (event_ids stay distinct) for up to 1,024 chunks (51 million events).
 */
const MULBERRY_STEP = 0x6d2b79f5;
export const SCALE_MAX_EVENTS = 1_024 * SCALE_CHUNK;

function chunkSeed(base: number, chunk: number): number {
  return (base + Math.imul(MULBERRY_STEP, chunk << 22)) >>> 0;
}

export interface ScaleChunk {
  readonly index: number;
  /** The events as JSON text, as producers send them. */
  readonly json: readonly string[];
  /** The first occurrence of each event (re-sends are false): what becomes one durable row. */
  readonly first: readonly boolean[];
  readonly unique: number;
}

/** Chunk `index` of the run (count events; the last chunk may be short). */
export function scaleChunk(index: number, count: number, seed: number, startMs: number): ScaleChunk {
  const spacingMs = 0.01;
  const { events, unique } = generateEvents({
    count,
    seed: chunkSeed(seed, index),
    duplicateRate: 0.01,
    startMs: startMs + index * SCALE_CHUNK * spacingMs,
    spacingMs,
  });
  const seen = new Set<string>();
  const first = events.map((e) => !seen.has(e.event_id) && seen.add(e.event_id) !== undefined);
  return { index, json: events.map((e) => JSON.stringify(e)), first, unique };
}

export interface ChunkRequest {
  readonly index: number;
  readonly count: number;
  readonly seed: number;
  readonly startMs: number;
}

/** Chunks made on a worker thread (chunk-thread.js), up to `ahead` of them before they are asked for. */
export class ChunkSource {
  private readonly thread = new Worker(new URL('./chunk-thread.js', import.meta.url));
  private readonly pending = new Map<number, { resolve: (c: ScaleChunk) => void; reject: (e: Error) => void }>();
  private readonly made = new Map<number, Promise<ScaleChunk>>();
  private failed: Error | undefined;

  constructor(
    private readonly total: number,
    private readonly seed: number,
    private readonly startMs: number,
    private readonly ahead = 3,
  ) {
    this.thread.on('message', (chunk: ScaleChunk) => this.pending.get(chunk.index)?.resolve(chunk));
    this.thread.on('error', (err) => this.fail(err));
    this.thread.on('exit', (code) => code !== 0 && this.fail(new Error(`bench --scale: the event generator thread exited with ${code}`)));
  }

  private fail(err: Error): void {
    this.failed = err;
    for (const p of this.pending.values()) p.reject(err);
  }

  private request(index: number): Promise<ScaleChunk> {
    let found = this.made.get(index);
    if (!found) {
      found = new Promise<ScaleChunk>((resolve, reject) => {
        if (this.failed) return reject(this.failed);
        this.pending.set(index, { resolve, reject });
        const request: ChunkRequest = { index, count: Math.min(SCALE_CHUNK, this.total - index * SCALE_CHUNK), seed: this.seed, startMs: this.startMs };
        this.thread.postMessage(request);
      });
      this.made.set(index, found);
    }
    return found;
  }

  /** Chunk `index`, and the next ones asked for in the background; undefined past the end. */
  async chunk(index: number): Promise<ScaleChunk | undefined> {
    if (index * SCALE_CHUNK >= this.total) return undefined;
    for (let i = index + 1; i <= index + this.ahead && i * SCALE_CHUNK < this.total; i++) void this.request(i).catch(() => undefined);
    const chunk = await this.request(index);
    this.made.delete(index);
    this.pending.delete(index);
    return chunk;
  }

  async close(): Promise<void> {
    await this.thread.terminate();
  }
}
