/**
 * Deterministic synthetic events for the demo and the benchmark: ~120 bytes
 * each, random v4 event_id, occurred_at following arrival order with a few
 * seconds of jitter (as live streams do), and a share of exact re-sends of
 * earlier events (producer retries).
 */

/** mulberry32: tiny, fast, seedable PRNG. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

export function uuidV4(random: () => number): string {
  const b = new Array<number>(16);
  for (let i = 0; i < 16; i += 4) {
    const r = (random() * 4294967296) >>> 0;
    b[i] = r & 0xff;
    b[i + 1] = (r >>> 8) & 0xff;
    b[i + 2] = (r >>> 16) & 0xff;
    b[i + 3] = (r >>> 24) & 0xff;
  }
  b[6] = ((b[6] as number) & 0x0f) | 0x40;
  b[8] = ((b[8] as number) & 0x3f) | 0x80;
  const h = b.map((x) => HEX[x]);
  return `${h[0]}${h[1]}${h[2]}${h[3]}-${h[4]}${h[5]}-${h[6]}${h[7]}-${h[8]}${h[9]}-${h[10]}${h[11]}${h[12]}${h[13]}${h[14]}${h[15]}`;
}

export interface GeneratedEvent {
  event_id: string;
  occurred_at: string;
  type: string;
  user_id: number;
  value: number;
  [key: string]: unknown;
}

export interface GeneratorOptions {
  readonly count: number;
  readonly seed?: number;
  /** Share of events that are exact re-sends of an earlier event (default 0.01). */
  readonly duplicateRate?: number;
  /** Arrival-order start time (default: now); events are spaced `spacingMs` apart. */
  readonly startMs?: number;
  readonly spacingMs?: number;
  /** Max jitter of occurred_at around arrival time (default 3 s). */
  readonly jitterMs?: number;
  /** Extra fields merged into every event (e.g. a run marker). */
  readonly extra?: Record<string, unknown>;
}

const TYPES = ['page_view', 'click', 'signup', 'purchase', 'search', 'logout'];

/** `count` events, of which about duplicateRate × count are re-sends; returns how many are unique. */
export function generateEvents(options: GeneratorOptions): { events: GeneratedEvent[]; unique: number } {
  const random = prng(options.seed ?? 42);
  const duplicateRate = options.duplicateRate ?? 0.01;
  const start = options.startMs ?? Date.now();
  const spacing = options.spacingMs ?? 0.01;
  const jitter = options.jitterMs ?? 3_000;
  const events: GeneratedEvent[] = [];
  let unique = 0;
  for (let i = 0; i < options.count; i++) {
    if (unique > 0 && random() < duplicateRate) {
      events.push(events[Math.floor(random() * events.length)] as GeneratedEvent);
      continue;
    }
    const occurred = start + i * spacing + Math.floor((random() - 0.5) * 2 * jitter);
    events.push({
      event_id: uuidV4(random),
      occurred_at: new Date(occurred).toISOString(),
      type: TYPES[Math.floor(random() * TYPES.length)] as string,
      user_id: Math.floor(random() * 1_000_000),
      value: Math.round(random() * 10_000) / 100,
      ...options.extra,
    });
    unique++;
  }
  return { events, unique };
}
