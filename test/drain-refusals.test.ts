/**
 * Rows the durable table refuses do not stop their stream. Staging has no
 * indexes or constraints of the durable table, so a row can stage and then fail
 * in the drain: an index row over the btree maximum (54000), a CHECK the user
 * added (23514), a trigger that raises (P0001), a unique index of the user's
 * (23505). The drain isolates such rows into sluice.rejects (reason
 * drain_refused, with the SQLSTATE and Postgres' message), drains their
 * neighbours, records every exit in the durable ack's ledger, never waits on
 * rows another session holds — and backs off on errors it cannot classify
 * instead of retrying them every few milliseconds.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { DrainKicker } from '../src/drain/drain-kicker.js';
import { drainUntilEmpty, type DrainRunResult } from '../src/drain/drain-loop.js';
import { createIngestor } from '../src/ingest/create-ingestor.js';
import { silentLogger } from '../src/logger.js';
import { requireStream, type StreamDefinition } from '../src/streams/registry.js';
import { createTestDatabase } from './helpers/database.js';
import { durableIds, stagedCount } from './helpers/events.js';
import { waitFor } from './helpers/wait.js';
import { startWorker } from './helpers/worker.js';

const db = await createTestDatabase('drain_refusals');

const clients: pg.Client[] = [];
afterAll(async () => {
  await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
});

async function connect(name: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: db.url, application_name: `sluice-test/${name}` });
  client.on('error', () => undefined);
  await client.connect();
  clients.push(client);
  return client;
}

/** A stream with declared columns (name:type), optionally a btree index on some of them. */
async function createStream(name: string, columns: Array<[string, string]>, index?: string[]): Promise<StreamDefinition> {
  await db.query('SELECT sluice.create_stream($1, $2::jsonb)', [name, JSON.stringify(columns.map(([n, type]) => ({ name: n, type })))]);
  if (index) await db.query('SELECT sluice.add_stream_index($1, $2::text[])', [name, index]);
  return requireStream(await connect(`${name}-def`), name);
}

interface TestEvent {
  event_id: string;
  occurred_at: string;
  [key: string]: unknown;
}

function event(fields: Record<string, unknown> = {}, at = Date.now()): TestEvent {
  return { event_id: randomUUID(), occurred_at: new Date(at).toISOString(), ...fields };
}

/** 4,000 characters of base64 from random bytes: pglz cannot shrink it under the btree maximum (2,704 bytes). */
function incompressibleText(): string {
  return randomBytes(3_000).toString('base64');
}

/** Fill staging through the real front door (ack "staged": no drain involved). */
async function stage(stream: string, events: readonly unknown[], flushRows = 2_000): Promise<void> {
  const ingestor = await createIngestor({ connectionString: db.url, stream, ack: 'staged', flushRows });
  try {
    const receipt = await ingestor.ingest(events);
    expect(receipt.rejected).toBe(0);
  } finally {
    await ingestor.close();
  }
}

function drain(client: pg.Client, stream: StreamDefinition, drainer: string, batchRows = 10_000): Promise<DrainRunResult> {
  return drainUntilEmpty(async () => client, { stream, batchRows, drainer, maxMs: 60_000, log: silentLogger });
}

/** Staged rows per flush transaction (xmin), as the durable ack counts them. */
async function stagedPerXid(stream: string): Promise<Record<string, number>> {
  const { rows } = await db.query<{ xid: string; n: number }>(
    `SELECT xmin::text AS xid, count(*)::int AS n FROM sluice_staging.${stream} GROUP BY 1`,
  );
  return Object.fromEntries(rows.map((r) => [r.xid, r.n]));
}

async function exitsPerXid(stream: string): Promise<Record<string, number>> {
  const { rows } = await db.query<{ xid: string; n: number }>(
    `SELECT xid::text, sum(rows)::int AS n FROM sluice.staging_exits WHERE stream = $1 GROUP BY 1`,
    [stream],
  );
  return Object.fromEntries(rows.map((r) => [r.xid, r.n]));
}

interface RejectRow {
  source: string;
  reason: string;
  message: string;
  event_id: string;
}

async function rejectsOf(stream: string): Promise<RejectRow[]> {
  const { rows } = await db.query<RejectRow>(
    `SELECT source, reason, message, raw::jsonb->>'event_id' AS event_id FROM sluice.rejects WHERE stream = $1 ORDER BY id`,
    [stream],
  );
  return rows;
}

async function drainedStats(stream: string): Promise<{ moved: number; inserted: number }> {
  const { rows } = await db.query<{ moved: number; inserted: number }>(
    `SELECT coalesce(sum(moved), 0)::int AS moved, coalesce(sum(inserted), 0)::int AS inserted FROM sluice.drain_stats WHERE stream = $1`,
    [stream],
  );
  return rows[0] ?? { moved: 0, inserted: 0 };
}

describe('rows the durable table refuses', () => {
  it('one over-long indexed text among 50 normal rows: 50 durable, 1 reject (54000), staging empty, every exit recorded', async () => {
    const stream = await createStream('clicks', [['note', 'text']], ['note']);
    const good = Array.from({ length: 50 }, (_, i) => event({ note: `note ${i}` }));
    const bad = event({ note: incompressibleText() });
    await stage('clicks', [...good.slice(0, 20), bad, ...good.slice(20)]);
    const staged = await stagedPerXid('clicks');
    expect(Object.values(staged).reduce((a, b) => a + b, 0)).toBe(51);

    const run = await drain(await connect('clicks'), stream, 'test/clicks');
    expect(run).toMatchObject({ moved: 50, inserted: 50, refused: 1, more: false });

    expect(await stagedCount(db, 'clicks')).toBe(0);
    const durable = await durableIds(db, 'clicks');
    expect(durable.rows).toBe(50);
    expect(durable.ids).toEqual(new Set(good.map((e) => e.event_id)));
    const rejects = await rejectsOf('clicks');
    expect(rejects).toHaveLength(1);
    expect(rejects[0]).toMatchObject({ source: 'drain', reason: 'drain_refused', event_id: bad.event_id });
    expect(rejects[0]?.message).toMatch(/SQLSTATE 54000/);
    expect(rejects[0]?.message).toMatch(/index row size/);
    // The raw row is the staged row, whole: it can be fixed and re-sent.
    const raw = await db.query<{ note: string }>(`SELECT raw::jsonb->>'note' AS note FROM sluice.rejects WHERE stream = 'clicks'`);
    expect(raw.rows[0]?.note).toBe(bad.note);
    // The durable ack's ledger: every staged row of every flush is accounted for.
    expect(await exitsPerXid('clicks')).toEqual(staged);
    expect(await drainedStats('clicks')).toEqual({ moved: 50, inserted: 50 });
  });

  it('durable acks end when a refused row leaves staging: its caller gets not_durable, the others are confirmed', async () => {
    const stream = await createStream('acked', [['note', 'text']], ['note']);
    const ingestor = await createIngestor({ connectionString: db.url, stream: 'acked', ack: 'durable', flushAgeMs: 200 });
    try {
      const good = Array.from({ length: 50 }, (_, i) => event({ note: `a${i}` }));
      const bad = event({ note: incompressibleText() });
      // Two callers sharing one flush.
      const goodReceipt = ingestor.ingest(good);
      const badReceipt = ingestor.ingest([bad]);
      badReceipt.catch(() => undefined);
      await waitFor(() => stagedCount(db, 'acked'), (n) => n === 51, { what: 'rows staged' });
      await drain(await connect('acked'), stream, 'test/acked');
      await expect(goodReceipt).resolves.toMatchObject({ accepted: 50 });
      await expect(badReceipt).rejects.toMatchObject({ code: 'not_durable' });
    } finally {
      await ingestor.close().catch(() => undefined);
    }
  });

  it('refused rows spread over many small drain batches: every good row drains, every bad one is rejected once', async () => {
    const stream = await createStream('spread', [['note', 'text']], ['note']);
    const events: TestEvent[] = Array.from({ length: 3_000 }, (_, i) => event({ note: `n${i}` }));
    const badAt = [0, 1, 137, 1_499, 1_500, 2_222, 2_999]; // neighbours, batch edges, the very end
    for (const i of badAt) (events[i] as TestEvent).note = incompressibleText();
    await stage('spread', events, 700); // several flush transactions
    const staged = await stagedPerXid('spread');
    expect(Object.keys(staged).length).toBeGreaterThan(1);

    const run = await drain(await connect('spread'), stream, 'test/spread', 50);
    expect(run.refused).toBe(badAt.length);
    expect(run.moved).toBe(events.length - badAt.length);
    expect(run.batches).toBeGreaterThan(50);

    expect(await stagedCount(db, 'spread')).toBe(0);
    const badIds = new Set(badAt.map((i) => events[i]?.event_id));
    const durable = await durableIds(db, 'spread');
    expect(durable.rows).toBe(events.length - badAt.length);
    for (const e of events) expect(durable.ids.has(e.event_id)).toBe(!badIds.has(e.event_id));
    const rejects = await rejectsOf('spread');
    expect(new Set(rejects.map((r) => r.event_id))).toEqual(badIds);
    expect(rejects).toHaveLength(badAt.length);
    for (const r of rejects) expect(r).toMatchObject({ reason: 'drain_refused', message: expect.stringMatching(/SQLSTATE 54000/) });
    expect(await exitsPerXid('spread')).toEqual(staged);
    expect(await drainedStats('spread')).toEqual({ moved: events.length - badAt.length, inserted: events.length - badAt.length });
  });

  it('many refused rows in one large batch: the isolation commits in bounded steps and still gets every row right', async () => {
    const stream = await createStream('many_bad', [['note', 'text']], ['note']);
    const events: TestEvent[] = Array.from({ length: 5_000 }, (_, i) => event({ note: `m${i}` }));
    const badAt = Array.from({ length: 80 }, (_, i) => i * 61 + (i % 7)); // spread over the whole batch
    for (const i of badAt) (events[i] as TestEvent).note = incompressibleText();
    await stage('many_bad', events);
    const staged = await stagedPerXid('many_bad');

    const run = await drain(await connect('many_bad'), stream, 'test/many-bad', 10_000);
    expect(run).toMatchObject({ moved: events.length - badAt.length, inserted: events.length - badAt.length, refused: badAt.length });
    // 80 refused rows need far more than 48 released savepoints: several isolation transactions, each
    // counted once in drain_stats (one transaction holding them all would overflow the subxact cache,
    // slowing every other session's snapshots).
    const { rows: stats } = await db.query<{ batches: number }>(
      `SELECT sum(batches)::int AS batches FROM sluice.drain_stats WHERE stream = 'many_bad'`,
    );
    expect(stats[0]?.batches).toBeGreaterThan(2);
    expect(await stagedCount(db, 'many_bad')).toBe(0);
    const badIds = new Set(badAt.map((i) => events[i]?.event_id));
    expect(new Set((await rejectsOf('many_bad')).map((r) => r.event_id))).toEqual(badIds);
    expect((await durableIds(db, 'many_bad')).rows).toBe(events.length - badAt.length);
    expect(await exitsPerXid('many_bad')).toEqual(staged);
  });

  it('a CHECK constraint the user adds to the durable table: violating rows are rejected with 23514 and the constraint name', async () => {
    const stream = await createStream('checked', [['qty', 'integer']]);
    await db.query('ALTER TABLE sluice_data.checked ADD CONSTRAINT qty_not_negative CHECK (qty >= 0)');
    const events = Array.from({ length: 40 }, (_, i) => event({ qty: i % 10 === 3 ? -i : i }));
    const badIds = new Set(events.filter((e) => (e.qty as number) < 0).map((e) => e.event_id));
    expect(badIds.size).toBe(4);
    await stage('checked', events);
    const staged = await stagedPerXid('checked');

    const run = await drain(await connect('checked'), stream, 'test/checked');
    expect(run).toMatchObject({ moved: 36, refused: 4 });
    expect(await stagedCount(db, 'checked')).toBe(0);
    expect((await durableIds(db, 'checked')).rows).toBe(36);
    const rejects = await rejectsOf('checked');
    expect(new Set(rejects.map((r) => r.event_id))).toEqual(badIds);
    for (const r of rejects) {
      expect(r.reason).toBe('drain_refused');
      expect(r.message).toMatch(/SQLSTATE 23514/);
      expect(r.message).toMatch(/qty_not_negative/);
    }
    expect(await exitsPerXid('checked')).toEqual(staged);
  });

  it('a trigger on the durable table that raises (P0001): its rows are rejected with its message, the rest drain', async () => {
    const stream = await createStream('guarded', [['kind', 'text']]);
    await db.query(`
      CREATE FUNCTION public.refuse_forbidden() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF NEW.kind = 'forbidden' THEN RAISE EXCEPTION 'kind % is not allowed here', NEW.kind; END IF;
        RETURN NEW;
      END $$`);
    await db.query('CREATE TRIGGER refuse_forbidden BEFORE INSERT ON sluice_data.guarded FOR EACH ROW EXECUTE FUNCTION public.refuse_forbidden()');
    const events = Array.from({ length: 30 }, (_, i) => event({ kind: i % 7 === 0 ? 'forbidden' : 'fine' }));
    const badIds = new Set(events.filter((e) => e.kind === 'forbidden').map((e) => e.event_id));
    await stage('guarded', events);
    const staged = await stagedPerXid('guarded');

    const run = await drain(await connect('guarded'), stream, 'test/guarded');
    expect(run).toMatchObject({ moved: 30 - badIds.size, refused: badIds.size });
    expect(await stagedCount(db, 'guarded')).toBe(0);
    const rejects = await rejectsOf('guarded');
    expect(new Set(rejects.map((r) => r.event_id))).toEqual(badIds);
    for (const r of rejects) expect(r.message).toMatch(/SQLSTATE P0001.*kind forbidden is not allowed here/);
    expect(await exitsPerXid('guarded')).toEqual(staged);
  });

  it("a unique index of the user's: a different event with the same value is rejected (23505), not collapsed as a duplicate", async () => {
    const stream = await createStream('uniq', [['order_id', 'text']]);
    // Unique indexes on a partitioned table must include the partition key.
    await db.query('CREATE UNIQUE INDEX uniq_order_once ON sluice_data.uniq (order_id, occurred_at)');
    const at = Date.now() - 60_000;
    const first = event({ order_id: 'order-1' }, at);
    await stage('uniq', [first]);
    const client = await connect('uniq');
    expect(await drain(client, stream, 'test/uniq')).toMatchObject({ moved: 1, inserted: 1 });

    // A re-send of the same event (same key): a duplicate. A different event with the same order: a conflict.
    const other = event({ order_id: 'order-1' }, at);
    const fresh = event({ order_id: 'order-2' }, at);
    await stage('uniq', [{ ...first }, other, fresh]);
    const staged = await stagedPerXid('uniq');
    const run = await drain(client, stream, 'test/uniq');
    expect(run).toMatchObject({ moved: 2, inserted: 1, duplicates: 1, refused: 1 });

    expect(await stagedCount(db, 'uniq')).toBe(0);
    expect((await durableIds(db, 'uniq')).ids).toEqual(new Set([first.event_id, fresh.event_id]));
    const rejects = await rejectsOf('uniq');
    expect(rejects).toHaveLength(1);
    expect(rejects[0]).toMatchObject({ reason: 'drain_refused', event_id: other.event_id });
    expect(rejects[0]?.message).toMatch(/SQLSTATE 23505/);
    // Postgres names the partition's copy of the index, and the key.
    expect(rejects[0]?.message).toMatch(/unique constraint "uniq_p\d{6}_order_id_occurred_at_idx".*Key \(order_id, occurred_at\)=\(order-1,/);
    const exits = await exitsPerXid('uniq');
    for (const [xid, n] of Object.entries(staged)) expect(exits[xid]).toBe(n);
  });

  it('rows another session holds FOR UPDATE are skipped by the isolation, not waited on, and drained once released', async () => {
    const stream = await createStream('held', [['note', 'text']], ['note']);
    const good = Array.from({ length: 500 }, (_, i) => event({ note: `h${i}` }));
    const bad = [event({ note: incompressibleText() }), event({ note: incompressibleText() })];
    await stage('held', [...good.slice(0, 100), bad[0], ...good.slice(100, 400), bad[1], ...good.slice(400)]);
    const staged = await stagedPerXid('held');

    const holder = await connect('holder');
    const drainer = await connect('held-drainer');
    // A drain that had to wait would fail fast instead of hanging the test.
    await drainer.query(`SET lock_timeout = '10s'`);
    await holder.query('BEGIN');
    const { rows: heldRows } = await holder.query<{ event_id: string }>(
      `SELECT event_id::text FROM sluice_staging.held WHERE length(note) < 100 ORDER BY event_id LIMIT 150 FOR UPDATE`,
    );
    expect(heldRows).toHaveLength(150);

    const first = await drain(drainer, stream, 'test/held');
    expect(first).toMatchObject({ moved: 350, refused: 2 });
    const { rows: left } = await db.query<{ event_id: string }>('SELECT event_id::text FROM sluice_staging.held');
    expect(new Set(left.map((r) => r.event_id))).toEqual(new Set(heldRows.map((r) => r.event_id)));

    await holder.query('ROLLBACK');
    const second = await drain(drainer, stream, 'test/held');
    expect(second).toMatchObject({ moved: 150, refused: 0 });
    expect(await stagedCount(db, 'held')).toBe(0);
    expect((await durableIds(db, 'held')).ids).toEqual(new Set(good.map((e) => e.event_id)));
    expect(new Set((await rejectsOf('held')).map((r) => r.event_id))).toEqual(new Set(bad.map((e) => e.event_id)));
    expect(await exitsPerXid('held')).toEqual(staged);
  });

  it('an error the drain cannot classify (XX000 from a trigger) holds the stream instead of retrying every few ms, though flushes keep kicking', async () => {
    await createStream('stuck', [['kind', 'text']]);
    // Attempts are counted with a sequence: nextval is not rolled back with the failing statement.
    await db.query('CREATE SEQUENCE public.stuck_attempts');
    await db.query(`
      CREATE FUNCTION public.internal_error() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        PERFORM nextval('public.stuck_attempts');
        RAISE EXCEPTION 'simulated internal error' USING ERRCODE = 'XX000';
      END $$`);
    await db.query('CREATE TRIGGER internal_error BEFORE INSERT ON sluice_data.stuck FOR EACH ROW EXECUTE FUNCTION public.internal_error()');
    const attempts = async () =>
      (await db.query<{ n: number }>('SELECT CASE WHEN is_called THEN last_value ELSE 0 END::int AS n FROM public.stuck_attempts')).rows[0]?.n ?? 0;

    const staged = Array.from({ length: 20 }, () => event({ kind: 'early' }));
    await stage('stuck', staged);
    const worker = await startWorker(db, { concurrency: 4, drainers: 2 });
    await waitFor(attempts, (n) => n >= 1, { what: 'a first drain attempt' });

    // For the next 3 s, a producer flushes every ~30 ms (each flush kicks both drain slots) and an
    // ingest job waits on a durable ack (it helps drain while it waits).
    const durableEvent = event({ kind: 'durable' });
    await db.query(`SELECT graphile_worker.add_job('sluice_ingest', $1::json)`, [
      JSON.stringify({ stream: 'stuck', events: [durableEvent], ack: 'durable' }),
    ]);
    const producer = await createIngestor({ connectionString: db.url, stream: 'stuck', ack: 'staged', flushRows: 1 });
    const before = await attempts();
    const produced: TestEvent[] = [];
    const windowEnds = Date.now() + 3_000;
    while (Date.now() < windowEnds) {
      const e = event({ kind: 'late' });
      await producer.ingest([e]);
      produced.push(e);
      await new Promise((r) => setTimeout(r, 30));
    }
    const during = (await attempts()) - before;
    expect(produced.length).toBeGreaterThan(20); // many flushes, many kicks
    // Held 0.5–1 s, then 1–2 s, then 2–4 s...: at most a handful of attempts in 3 s (2 slots may
    // both fail before either records the hold). Retried per kick or per 25 ms poll, it would be dozens.
    expect(during).toBeLessThanOrEqual(6);
    expect(await stagedCount(db, 'stuck')).toBe(staged.length + produced.length + 1);

    // Fixed: the hold ends, the stream drains by itself (kicks and held jobs), the durable ack resolves.
    await db.query('DROP TRIGGER internal_error ON sluice_data.stuck');
    await producer.ingest([event({ kind: 'after' })]);
    await producer.close();
    await waitFor(() => stagedCount(db, 'stuck'), (n) => n === 0, { what: 'the held stream drained', timeoutMs: 45_000 });
    expect((await durableIds(db, 'stuck')).rows).toBe(staged.length + produced.length + 2);
    await waitFor(
      async () => (await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM graphile_worker.jobs WHERE task_identifier = 'sluice_ingest'`)).rows[0]?.n,
      (n) => n === 0,
      { what: 'the durable-ack job completed', timeoutMs: 30_000 },
    );
    expect(await rejectsOf('stuck')).toEqual([]);
    await worker.stop('test');
  });

  it("a flush's kick does not pull a held drain job forward (it keeps the future run_at the held run chose)", async () => {
    await createStream('kicked', []);
    // What a held drain leaves behind: its job re-queued for the end of the hold.
    await db.query(
      `SELECT graphile_worker.add_job('sluice_drain', json_build_object('stream', 'kicked', 'slot', s),
                                      run_at => now() + interval '10 minutes', max_attempts => 5,
                                      job_key => 'sluice_drain:kicked:' || s)
         FROM generate_series(0, 1) AS s`,
    );
    const kicker = new DrainKicker((text, values) => db.query(text, values), 3, silentLogger);
    kicker.kick('kicked');
    await kicker.close();
    const { rows } = await db.query<{ key: string; deferred: boolean }>(
      `SELECT key, run_at > now() + interval '5 minutes' AS deferred FROM graphile_worker.jobs
        WHERE key LIKE 'sluice_drain:kicked:%' ORDER BY key`,
    );
    // Slots 0 and 1 stay held; slot 2 had no job and is queued as usual.
    expect(rows).toEqual([
      { key: 'sluice_drain:kicked:0', deferred: true },
      { key: 'sluice_drain:kicked:1', deferred: true },
      { key: 'sluice_drain:kicked:2', deferred: false },
    ]);
  });
});
