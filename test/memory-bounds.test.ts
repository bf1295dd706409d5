/**
 * Memory stays bounded in bytes while staging is stalled, and a pile of
 * rejects back-pressures like rows do and is recorded in full:
 * - huge invalid events (event_too_large) behind a locked staging table;
 * - big valid events behind a locked staging table (one batch must not grow
 *   to ten times flush-rows whatever its size).
 * The `sluice ingest -` child runs in a 128 MiB heap; its peak RSS is sampled from /proc while it runs.
 */
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { MAX_REJECT_RAW_CHARS } from '../src/ingest/rejects.js';
import { spawnCli, type SpawnedCli } from './helpers/cli.js';
import { createTestDatabase } from './helpers/database.js';
import { stagedCount } from './helpers/events.js';

const db = await createTestDatabase('memory_bounds');

/**
 * The README's stated bounds for `sluice ingest` with default buffers (see "Memory"): what it retains fits a
 * 128 MiB V8 heap (an unbounded buffer dies of OOM there), and its RSS stays under 300 MB.
 */
const HEAP_BOUND_MB = 128;
const INGEST_RSS_BOUND_MB = 300;

function rssMb(pid: number): number | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = /VmRSS:\s+(\d+) kB/.exec(status)?.[1];
    return kb ? Number(kb) / 1024 : undefined;
  } catch {
    return undefined;
  }
}

function samplePeakRss(cli: SpawnedCli): { stop: () => number } {
  let peak = 0;
  const pid = cli.child.pid as number;
  const timer = setInterval(() => {
    const now = rssMb(pid);
    if (now !== undefined) peak = Math.max(peak, now);
  }, 50);
  return {
    stop: () => {
      clearInterval(timer);
      return peak;
    },
  };
}

/** Lock staging so no flush can commit; returns the release. */
async function lockStaging(stream: string): Promise<() => Promise<void>> {
  const blocker = new pg.Client({ connectionString: db.url, application_name: 'sluice-test-blocker' });
  await blocker.connect();
  await blocker.query('BEGIN');
  await blocker.query(`LOCK TABLE sluice_staging.${stream} IN ACCESS EXCLUSIVE MODE`);
  let released = false;
  return async () => {
    if (released) return;
    released = true;
    await blocker.query('COMMIT');
    await blocker.end();
  };
}

/** Write lines to the child's stdin honouring back-pressure; release the lock after `releaseAfterMs`. */
async function feed(cli: SpawnedCli, count: number, line: (i: number) => string, release: () => Promise<void>, releaseAfterMs: number) {
  const stdin = cli.child.stdin;
  if (!stdin) throw new Error('no stdin');
  // The lock goes after releaseAfterMs whether or not the input has been read by then.
  setTimeout(() => void release(), releaseAfterMs);
  for (let i = 0; i < count; i++) {
    if (!stdin.write(line(i))) await Promise.race([once(stdin, 'drain'), cli.exited]);
  }
  stdin.end();
}

function occurredNow(): string {
  return new Date().toISOString();
}

describe('memory is bounded in bytes under a stalled staging table', () => {
  it('3,000 events of 100 KB over the size limit: every reject recorded, bounded excerpts, RSS under the bound', { timeout: 180_000 }, async () => {
    const stream = 'mem_rejects';
    await db.query(`SELECT sluice.create_stream($1)`, [stream]);
    const pad = 'x'.repeat(100 * 1024);
    const valid = { event_id: randomUUID(), occurred_at: occurredNow(), ok: true };
    const release = await lockStaging(stream);
    const cli = spawnCli(['ingest', '-', '--stream', stream, '--json'], { DATABASE_URL: db.url, NODE_OPTIONS: `--max-old-space-size=${HEAP_BOUND_MB}` });
    const rss = samplePeakRss(cli);
    try {
      await feed(
        cli,
        3_001,
        (i) => (i === 0 ? `${JSON.stringify(valid)}\n` : `{"event_id":"${randomUUID()}","occurred_at":"${occurredNow()}","pad":"${pad}"}\n`),
        release,
        8_000,
      );
      const result = await cli.exited;
      expect(result.code, result.stderr).toBe(0);
    } finally {
      await release();
    }
    const peak = rss.stop();
    expect(peak, `peak RSS ${peak.toFixed(0)} MB`).toBeLessThan(INGEST_RSS_BOUND_MB);
    expect(await stagedCount(db, stream)).toBe(1);
    const { rows } = await db.query<{ n: number; longest: number }>(
      `SELECT count(*)::int AS n, max(length(raw))::int AS longest FROM sluice.rejects WHERE stream = $1 AND reason = 'event_too_large'`,
      [stream],
    );
    expect(rows[0]?.n).toBe(3_000);
    expect(rows[0]?.longest).toBeLessThanOrEqual(MAX_REJECT_RAW_CHARS + 100);
    const note = await db.query<{ raw: string }>(`SELECT right(raw, 80) AS raw FROM sluice.rejects WHERE stream = $1 LIMIT 1`, [stream]);
    expect(note.rows[0]?.raw).toMatch(/truncated: first 16384 of \d+ characters kept\]$/);
  });

  it('4,000 valid events of 60 KB: no giant batch while the COPY is stalled, RSS under the bound, all staged', { timeout: 180_000 }, async () => {
    const stream = 'mem_big_events';
    await db.query(`SELECT sluice.create_stream($1, '[]'::jsonb, '{"max_event_bytes": 100000}'::jsonb)`, [stream]);
    const pad = 'y'.repeat(60 * 1024);
    const release = await lockStaging(stream);
    const cli = spawnCli(['ingest', '-', '--stream', stream, '--json'], { DATABASE_URL: db.url, NODE_OPTIONS: `--max-old-space-size=${HEAP_BOUND_MB}` });
    const rss = samplePeakRss(cli);
    try {
      await feed(cli, 4_000, () => `{"event_id":"${randomUUID()}","occurred_at":"${occurredNow()}","pad":"${pad}"}\n`, release, 8_000);
      const result = await cli.exited;
      expect(result.code, result.stderr).toBe(0);
    } finally {
      await release();
    }
    const peak = rss.stop();
    expect(peak, `peak RSS ${peak.toFixed(0)} MB`).toBeLessThan(INGEST_RSS_BOUND_MB);
    expect(await stagedCount(db, stream)).toBe(4_000);
    // Batches stayed near flush-bytes (4 MiB ≈ 68 events of 60 KB), far from 10 × flush-rows.
    const { rows } = await db.query<{ batches: number; largest: number }>(
      `SELECT count(*)::int AS batches, max(n)::int AS largest FROM (SELECT xmin::text, count(*) AS n FROM sluice_staging.${stream} GROUP BY 1) b`,
    );
    expect(rows[0]?.largest).toBeLessThanOrEqual(200);
    expect(rows[0]?.batches).toBeGreaterThanOrEqual(20);
  });
});

describe('a worker stays inside the README bound under a stalled staging table', () => {
  it('120 ingest jobs of 20 events of 50 KB (120 MB) behind a locked staging table: RSS under the bound, every event staged once released', { timeout: 180_000 }, async () => {
    const stream = 'mem_worker';
    await db.query(`SELECT sluice.create_stream($1, '[]'::jsonb, '{"max_event_bytes": 100000}'::jsonb)`, [stream]);
    // The README's worker bound with these settings: ~2 × --buffer-bytes for its one Ingestor, plus the
    // payloads of (--local-queue-size + --concurrency) jobs in flight (12 × 1 MB), over Node's own ~100 MB.
    const WORKER_RSS_BOUND_MB = 250;
    const worker = spawnCli(
      ['worker', '--concurrency', '4', '--local-queue-size', '8', '--drainers', '1', '--buffer-bytes', String(16 * 1024 * 1024), '--flush-bytes', String(4 * 1024 * 1024)],
      { DATABASE_URL: db.url, NODE_OPTIONS: `--max-old-space-size=${HEAP_BOUND_MB}`, SLUICE_LOG_LEVEL: 'warn' },
    );
    const rss = samplePeakRss(worker);
    let release: (() => Promise<void>) | undefined;
    try {
      await waitForRegistered();
      release = await lockStaging(stream);
      const pad = 'z'.repeat(50 * 1024);
      for (let job = 0; job < 120; job++) {
        const events = Array.from({ length: 20 }, () => ({ event_id: randomUUID(), occurred_at: occurredNow(), pad }));
        await db.query(`SELECT graphile_worker.add_job('sluice_ingest', $1::json)`, [JSON.stringify({ stream, events })]);
      }
      // The worker now holds what it took while nothing can commit; give it time to take all it would.
      await new Promise((resolve) => setTimeout(resolve, 6_000));
      await release();
      const deadline = Date.now() + 120_000;
      while ((await pendingJobs()) > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 250));
      expect(await pendingJobs()).toBe(0);
    } finally {
      await release?.();
      worker.child.kill('SIGTERM');
      await worker.exited;
    }
    const peak = rss.stop();
    process.stderr.write(`[memory-bounds] worker peak RSS ${peak.toFixed(0)} MB (bound ${WORKER_RSS_BOUND_MB} MB)\n`);
    expect(peak, `peak RSS ${peak.toFixed(0)} MB`).toBeLessThan(WORKER_RSS_BOUND_MB);
    const { rows } = await db.query<{ n: number }>(
      `SELECT (SELECT count(*) FROM sluice_staging.${stream}) + (SELECT count(*) FROM sluice_data.${stream}) AS n`,
    );
    expect(Number(rows[0]?.n)).toBe(2_400);
  });
});

async function waitForRegistered(): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    const { rows } = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM sluice.workers`).catch(() => ({ rows: [{ n: 0 }] }));
    if ((rows[0]?.n ?? 0) > 0) return;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error('the worker did not register within 60 s');
}

async function pendingJobs(): Promise<number> {
  const { rows } = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM graphile_worker.jobs WHERE task_identifier = 'sluice_ingest'`);
  return rows[0]?.n ?? 0;
}
