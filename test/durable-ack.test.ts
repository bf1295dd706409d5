/**
 * The durable acknowledgement keeps its promise whatever batch an event went
 * out in, whoever shared that batch, and without scanning staging:
 * - flush() / close() / `sluice ingest --ack durable` wait for rows of batches
 *   that committed long before (a second session holds some of them in staging);
 * - one caller's event the drain rejects does not fail another caller's ack;
 * - waiting for the ack does not seq-scan staging (its cost must not grow with it);
 * - a flush retried after its first attempt committed writes nothing twice;
 * - the stream window is judged on the database's clock, not the client's.
 */
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createIngestor } from '../src/ingest/create-ingestor.js';
import { CopyBuffer } from '../src/ingest/copy-buffer.js';
import { writeBatch } from '../src/ingest/copy-writer.js';
import { spawnCli } from './helpers/cli.js';
import { createTestDatabase } from './helpers/database.js';
import { durableIds, makeEvents, stagedCount } from './helpers/events.js';
import { waitFor } from './helpers/wait.js';
import { startWorker } from './helpers/worker.js';
import type { WorkerHandle } from '../src/worker/run-worker.js';

const db = await createTestDatabase('durable_ack');

let worker: WorkerHandle | undefined;
afterEach(async () => {
  await worker?.stop('test done');
  worker = undefined;
});

/** A second session that holds FOR UPDATE locks on the given staged rows, so drains skip them. */
async function holdStagedRows(stream: string, eventIds: readonly string[]): Promise<{ held: number; release: () => Promise<void> }> {
  const blocker = new pg.Client({ connectionString: db.url, application_name: 'sluice-test-blocker' });
  await blocker.connect();
  await blocker.query('BEGIN');
  const { rowCount } = await blocker.query(`SELECT 1 FROM sluice_staging.${stream} WHERE event_id = ANY($1::uuid[]) FOR UPDATE`, [eventIds]);
  return {
    held: rowCount ?? 0,
    release: async () => {
      await blocker.query('COMMIT');
      await blocker.end();
    },
  };
}

async function settledWithin<T>(promise: Promise<T>, ms: number): Promise<boolean> {
  let settled = false;
  void promise.then(
    () => (settled = true),
    () => (settled = true),
  );
  await new Promise((r) => setTimeout(r, ms));
  return settled;
}

describe('durable ack over several batches', () => {
  it('flush() waits for a batch that committed before it was called, while its rows are held in staging', async () => {
    const stream = 'ack_earlier_batch';
    await db.query(`SELECT sluice.create_stream($1)`, [stream]);
    const ingestor = await createIngestor({ connectionString: db.url, stream, ack: 'durable', flushRows: 100, flushAgeMs: 20 });
    const { events } = makeEvents(150, 71, {}, 0);
    const first = events.slice(0, 100);
    try {
      for (const e of first) await ingestor.push(e);
      // Batch 1 has committed to staging and left the Ingestor's in-flight set.
      await waitFor(() => stagedCount(db, stream), (n) => n === 100, { what: 'batch 1 staged' });
      const hold = await holdStagedRows(stream, first.map((e) => e.event_id));
      expect(hold.held).toBe(100);
      try {
        worker = await startWorker(db, { drainers: 1 });
        for (const e of events.slice(100)) await ingestor.push(e);
        const flushed = ingestor.flush();
        flushed.catch(() => undefined);
        // The second batch drains; the first stays staged under the other session's locks.
        await waitFor(() => durableIds(db, stream), (d) => d.rows === 50, { what: 'batch 2 durable' });
        expect(await settledWithin(flushed, 500), 'flush() must not resolve while batch 1 is still staged').toBe(false);
        expect(await stagedCount(db, stream)).toBe(100);
        await hold.release();
        await flushed;
      } finally {
        await hold.release().catch(() => undefined);
      }
      expect(await stagedCount(db, stream)).toBe(0);
      expect((await durableIds(db, stream)).rows).toBe(150);
    } finally {
      await ingestor.close();
    }
  });

  it('sluice ingest --ack durable does not finish until rows of its first batch, held by another session, are durable', async () => {
    const stream = 'ack_cli_batches';
    await db.query(`SELECT sluice.create_stream($1)`, [stream]);
    const { events } = makeEvents(20_000, 72, {}, 0);
    const lines = events.map((e) => `${JSON.stringify(e)}\n`);

    // No worker yet. The first 1,000 lines go out as batch 1 and commit; then the rest arrive.
    const cli = spawnCli(['ingest', '-', '--stream', stream, '--ack', 'durable', '--flush-rows', '1000', '--json'], { DATABASE_URL: db.url });
    cli.child.stdin?.write(lines.slice(0, 1_000).join(''));
    await waitFor(() => stagedCount(db, stream), (n) => n === 1_000, { what: 'batch 1 staged' });
    cli.child.stdin?.end(lines.slice(1_000).join(''));
    await waitFor(() => stagedCount(db, stream), (n) => n === 20_000, { what: 'every batch staged' });
    const hold = await holdStagedRows(stream, events.slice(0, 500).map((e) => e.event_id));
    try {
      expect(hold.held).toBe(500);
      worker = await startWorker(db, { drainers: 1 });
      await waitFor(() => durableIds(db, stream), (d) => d.rows === 19_500, { what: 'unheld rows durable' });
      expect(await settledWithin(cli.exited, 1_000), 'the CLI exited while 500 acknowledged rows were still staged').toBe(false);
      expect(await stagedCount(db, stream)).toBe(500);
      await hold.release();
    } finally {
      await hold.release().catch(() => undefined);
    }
    const result = await cli.exited;
    expect(result.code, result.stderr).toBe(0);
    expect(await stagedCount(db, stream)).toBe(0);
    expect((await durableIds(db, stream)).ids).toEqual(new Set(events.map((e) => e.event_id)));
  });
});

describe('durable ack per caller', () => {
  it("one caller's event rejected by the drain fails only that caller, not the one sharing its batch", async () => {
    const stream = 'ack_shared_batch';
    await db.query(`SELECT sluice.create_stream($1)`, [stream]);
    // Next month's partition exists but is detached: the drain rejects that month's rows (no_partition).
    const next = new Date();
    next.setUTCDate(1);
    next.setUTCMonth(next.getUTCMonth() + 1);
    const partition = `${stream}_p${next.toISOString().slice(0, 7).replace('-', '')}`;
    await db.query(`ALTER TABLE sluice_data.${stream} DETACH PARTITION sluice_data.${partition}`);

    worker = await startWorker(db, { drainers: 1 });
    const ingestor = await createIngestor({ connectionString: db.url, stream, flushAgeMs: 200 });
    try {
      const { events } = makeEvents(20, 73, {}, 0);
      const good = events.slice(0, 10);
      const doomed = { event_id: randomUUID(), occurred_at: new Date(next.getTime() + 86_400_000).toISOString() };
      // Both calls land in the same open batch (nothing flushes for 200 ms).
      const a = ingestor.ingest(good, undefined, 'durable');
      const b = ingestor.ingest([...events.slice(10), doomed], undefined, 'durable');
      b.catch(() => undefined);
      await expect(a).resolves.toMatchObject({ accepted: 10, rejected: 0 });
      await expect(b).rejects.toMatchObject({ code: 'not_durable' });
      await expect(b).rejects.toThrow(/^1 event\(s\)/);
      expect((await durableIds(db, stream)).rows).toBe(20);
      const rejects = await db.query<{ reason: string }>(`SELECT reason FROM sluice.rejects WHERE stream = $1`, [stream]);
      expect(rejects.rows.map((r) => r.reason)).toEqual(['no_partition']);
    } finally {
      await ingestor.close();
    }
  });

  it('a staged-ack Ingestor keeps keys only from its first durable caller on: that caller is confirmed on exactly its own lines', async () => {
    const stream = 'ack_mixed_batch';
    await db.query(`SELECT sluice.create_stream($1)`, [stream]);
    const next = new Date();
    next.setUTCDate(1);
    next.setUTCMonth(next.getUTCMonth() + 1);
    await db.query(`ALTER TABLE sluice_data.${stream} DETACH PARTITION sluice_data.${stream}_p${next.toISOString().slice(0, 7).replace('-', '')}`);
    const doomed = () => ({ event_id: randomUUID(), occurred_at: new Date(next.getTime() + 86_400_000).toISOString() });

    worker = await startWorker(db, { drainers: 1 });
    const ingestor = await createIngestor({ connectionString: db.url, stream, ack: 'staged', flushAgeMs: 200 });
    try {
      const { events } = makeEvents(30, 74, {}, 0);
      // One open batch, three callers: staged (lines 0–10, doomed first), durable (11–21, doomed last),
      // staged again (22–33, two doomed first). Only the durable caller's own doomed event may fail it:
      // keys misplaced by their offset would blame it for the others' (lines 11 and 12 instead of 21 and 22).
      const before = ingestor.ingest([doomed(), ...events.slice(0, 10)], undefined, 'staged');
      const durable = ingestor.ingest([...events.slice(10, 20), doomed()], undefined, 'durable');
      durable.catch(() => undefined);
      const after = ingestor.ingest([doomed(), doomed(), ...events.slice(20, 30)], undefined, 'staged');
      await expect(before).resolves.toMatchObject({ accepted: 11 });
      await expect(after).resolves.toMatchObject({ accepted: 12 });
      await expect(durable).rejects.toMatchObject({ code: 'not_durable' });
      await expect(durable).rejects.toThrow(/^1 event\(s\)/);
      await waitFor(() => stagedCount(db, stream), (n) => n === 0, { what: 'staging drained' });
      expect((await durableIds(db, stream)).rows).toBe(30);
    } finally {
      await ingestor.close();
    }
  });
});

describe('durable ack cost', () => {
  it('waiting for the ack does not scan staging, however large it is', async () => {
    const stream = 'ack_no_scan';
    await db.query(`SELECT sluice.create_stream($1)`, [stream]);
    // A big backlog nobody drains (no worker), and one durable caller waiting behind it.
    await db.query(
      `INSERT INTO sluice_staging.${stream} (event_id, occurred_at) SELECT gen_random_uuid(), now() FROM generate_series(1, 200000)`,
    );
    const ingestor = await createIngestor({ connectionString: db.url, stream, ack: 'durable' });
    try {
      const waiting = ingestor.ingest(makeEvents(10, 74, {}, 0).events);
      waiting.catch(() => undefined);
      // Wait on the flush ledger, not on staging: counting staging would scan it.
      await waitFor(
        async () => (await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM sluice.flushes WHERE stream = $1`, [stream])).rows[0]?.n,
        (n) => n === 1,
        { what: 'the caller staged' },
      );
      await new Promise((r) => setTimeout(r, 1_500)); // let every backend publish its earlier counters
      const seqScans = async () => {
        await db.query('SELECT pg_stat_clear_snapshot()');
        const { rows } = await db.query<{ n: string }>(`SELECT seq_scan::text AS n FROM pg_stat_user_tables WHERE relid = $1::regclass`, [
          `sluice_staging.${stream}`,
        ]);
        return Number(rows[0]?.n ?? 0);
      };
      const before = await seqScans();
      // ~80 polls at 25 ms; a backend publishes its table counters at least every second or so.
      await new Promise((r) => setTimeout(r, 2_000));
      await db.query('SELECT pg_stat_force_next_flush()').catch(() => undefined);
      await new Promise((r) => setTimeout(r, 1_500));
      const after = await seqScans();
      expect(after - before, 'seq scans of staging while the ack waited').toBe(0);
      expect(await settledWithin(waiting, 0)).toBe(false);
    } finally {
      await ingestor.close().catch(() => undefined);
    }
  });
});

describe('flush retries', () => {
  it('a flush retried after its first attempt committed writes neither its rows nor its rejects twice', async () => {
    const stream = 'ack_retry';
    await db.query(`SELECT sluice.create_stream($1)`, [stream]);
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    try {
      const { events } = makeEvents(3, 75, {}, 0);
      const copy = new CopyBuffer();
      for (const e of events) copy.append(`${e.event_id}\t${e.occurred_at}\t{}\n`);
      const batch = {
        flushId: randomUUID(),
        copy,
        raws: [],
        rejects: [{ reason: 'invalid_json' as const, message: 'line 2: not JSON', raw: '{oops' }],
      };
      const target = { stream, copySql: `COPY sluice_staging.${stream} (event_id, occurred_at, payload) FROM STDIN`, columns: ['event_id', 'occurred_at', 'payload'], source: 'file' as const };
      const first = await writeBatch(client, target, batch, true);
      // The retry (its COMMIT reply "lost") runs the same flush again.
      const again = await writeBatch(client, target, batch, true);
      expect(again).toEqual(first);
      expect(await stagedCount(db, stream)).toBe(3);
      const rejects = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM sluice.rejects WHERE stream = $1`, [stream]);
      expect(rejects.rows[0]?.n).toBe(1);
    } finally {
      await client.end();
    }
  });
});

describe('one clock', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it("the stream window follows the database's clock, not a skewed client clock", async () => {
    const stream = 'ack_clock';
    await db.query(`SELECT sluice.create_stream($1)`, [stream]);
    // The client's clock runs two years ahead of the database's.
    vi.useFakeTimers({ toFake: ['Date'], now: Date.now() + 2 * 365 * 86_400_000 });
    const ingestor = await createIngestor({ connectionString: db.url, stream });
    try {
      const { rows } = await db.query<{ ms: number }>(`SELECT (extract(epoch FROM now()) * 1000)::float8 AS ms`);
      const event = { event_id: randomUUID(), occurred_at: new Date(rows[0]?.ms ?? 0).toISOString() };
      const receipt = await ingestor.ingest([event]);
      expect(receipt.rejections).toEqual([]);
      expect(receipt.accepted).toBe(1);
    } finally {
      await ingestor.close();
    }
  });
});
