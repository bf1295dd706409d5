/**
 * A running worker follows stream changes (issue 13, item 3): after a drop and
 * re-create with other columns, or an UPDATE of a stream's settings, jobs sent
 * once the stated bound (STREAM_REFRESH_MS) has passed use the new definition —
 * on their first attempt (max_attempts 1: a failed job stays, with its error).
 */
import { randomUUID } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { sleep } from '../src/timing.js';
import { createIngestor } from '../src/ingest/create-ingestor.js';
import { dropStream } from '../src/streams/registry.js';
import { STREAM_REFRESH_MS } from '../src/worker/ingest-hub.js';
import { runCli } from './helpers/cli.js';
import { createTestDatabase } from './helpers/database.js';
import { waitFor } from './helpers/wait.js';
import { startWorker } from './helpers/worker.js';

const db = await createTestDatabase('stream_changes');
/** The stated bound, plus room for the poll's query and the new definition's load on a busy machine. */
const AFTER_BOUND_MS = STREAM_REFRESH_MS + 1_500;

interface JobOutcome {
  readonly done: boolean;
  readonly error: string | null;
}

/** Enqueue one sluice_ingest job that gets a single attempt; returns its id. */
async function sendOnce(stream: string, events: object[]): Promise<string> {
  const { rows } = await db.query<{ id: string }>(
    `SELECT (graphile_worker.add_job('sluice_ingest', $1::json, max_attempts => 1)).id::text AS id`,
    [JSON.stringify({ stream, events })],
  );
  return rows[0]!.id;
}

/**
 * Completed jobs are deleted; a job that failed its only attempt stays, unlocked, with last_error
 * (a running job already counts its attempt, but is locked).
 */
async function outcome(jobId: string): Promise<JobOutcome> {
  const { rows } = await db.query<{ failed: boolean; last_error: string | null }>(
    `SELECT attempts >= max_attempts AND locked_at IS NULL AS failed, last_error FROM graphile_worker.jobs WHERE id = $1`,
    [jobId],
  );
  const job = rows[0];
  if (!job) return { done: true, error: null };
  return { done: job.failed, error: job.last_error };
}

async function settle(jobId: string): Promise<JobOutcome> {
  return waitFor(() => outcome(jobId), (o) => o.done, { what: `job ${jobId} to finish`, timeoutMs: 30_000 });
}

async function rejectsFor(eventId: string): Promise<Array<{ reason: string; source: string }>> {
  const { rows } = await db.query<{ reason: string; source: string }>(
    `SELECT reason, source FROM sluice.rejects WHERE raw LIKE '%' || $1 || '%' ORDER BY id`,
    [eventId],
  );
  return rows;
}

async function storedCount(stream: string, eventId: string): Promise<number> {
  const { rows } = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM sluice_data.${stream}_all WHERE event_id = $1`, [eventId]);
  return rows[0]?.n ?? 0;
}

function event(extra: Record<string, unknown> = {}, occurredAt: Date = new Date()): { event_id: string; occurred_at: string } {
  return { event_id: randomUUID(), occurred_at: occurredAt.toISOString(), ...extra };
}

/** Midday on the 2nd of the month `months` from now (UTC). */
function monthsAhead(months: number): Date {
  const now = new Date();
  return new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + months, 2, 12));
}

describe('a running worker follows stream changes', () => {
  // One small worker for the file (the server's connections are shared): 3 pool + 1 flush + 1 drain.
  beforeAll(async () => {
    await startWorker(db, { concurrency: 4, poolSize: 3, drainers: 1, maxConnections: 5 });
  });

  it('a dropped and re-created stream with other columns: jobs store the new columns', async () => {
    await db.query(`SELECT sluice.create_stream('reshaped', '[{"name":"b","type":"text"}]')`);
    // The worker loads the first definition and ingests with it.
    const first = event({ b: 'old shape' });
    expect(await settle(await sendOnce('reshaped', [first]))).toEqual({ done: true, error: null });
    expect(await storedCount('reshaped', first.event_id)).toBe(1);

    await dropStream(db.pool, 'reshaped');
    await db.query(`SELECT sluice.create_stream('reshaped', '[{"name":"a","type":"bigint"}]')`);
    await sleep(AFTER_BOUND_MS);

    const second = event({ a: 42 });
    expect(await settle(await sendOnce('reshaped', [second]))).toEqual({ done: true, error: null });
    const { rows } = await db.query<{ a: string }>(`SELECT a::text FROM sluice_data.reshaped_all WHERE event_id = $1`, [second.event_id]);
    expect(rows).toEqual([{ a: '42' }]);
  });

  it('UPDATE max_event_bytes = 200: a 1,011-byte event becomes an event_too_large reject', async () => {
    await db.query(`SELECT sluice.create_stream('sized')`);
    const big = () => {
      const e: ReturnType<typeof event> & { note?: string } = event({ note: '' });
      e.note = 'x'.repeat(1011 - JSON.stringify(e).length);
      expect(Buffer.byteLength(JSON.stringify(e))).toBe(1011);
      return e;
    };
    const before = big();
    expect(await settle(await sendOnce('sized', [before]))).toEqual({ done: true, error: null });
    expect(await storedCount('sized', before.event_id)).toBe(1);

    await db.query(`UPDATE sluice.streams SET max_event_bytes = 200 WHERE name = 'sized'`);
    await sleep(AFTER_BOUND_MS);

    const after = big();
    expect(await settle(await sendOnce('sized', [after]))).toEqual({ done: true, error: null });
    expect(await rejectsFor(after.event_id)).toEqual([{ reason: 'event_too_large', source: 'sql' }]);
    expect(await storedCount('sized', after.event_id)).toBe(0);
  });

  it('UPDATE premake_months = 1: an event 3 months ahead is rejected at ingest, not staged', async () => {
    await db.query(`SELECT sluice.create_stream('windowed')`);
    const before = event({}, monthsAhead(3));
    expect(await settle(await sendOnce('windowed', [before]))).toEqual({ done: true, error: null });
    expect(await storedCount('windowed', before.event_id)).toBe(1);

    await db.query(`UPDATE sluice.streams SET premake_months = 1 WHERE name = 'windowed'`);
    await sleep(AFTER_BOUND_MS);

    const after = event({}, monthsAhead(3));
    expect(await settle(await sendOnce('windowed', [after]))).toEqual({ done: true, error: null });
    // Refused by the ingest path itself (source sql), never staged for the drain to refuse as no_partition.
    expect(await rejectsFor(after.event_id)).toEqual([{ reason: 'occurred_at_out_of_window', source: 'sql' }]);
    expect(await storedCount('windowed', after.event_id)).toBe(0);
  });

  it('under a steady stream of jobs, a change swaps definitions without failing a job', async () => {
    await db.query(`SELECT sluice.create_stream('busy')`);
    const sent: Array<{ id: string; events: Array<ReturnType<typeof event>> }> = [];
    const sendBatch = async (extra: Record<string, unknown>) => {
      const events = Array.from({ length: 20 }, () => event(extra));
      sent.push({ id: await sendOnce('busy', events), events });
    };
    // Jobs keep arriving while the settings change, including while the old Ingestor holds rows.
    const changeAt = Date.now() + 500;
    let changed = false;
    let changedAt = 0;
    while (!changed || Date.now() < changedAt + AFTER_BOUND_MS) {
      await sendBatch({ note: 'y'.repeat(300) });
      if (!changed && Date.now() >= changeAt) {
        await db.query(`UPDATE sluice.streams SET max_event_bytes = 200 WHERE name = 'busy'`);
        changed = true;
        changedAt = Date.now();
      }
      await sleep(20);
    }
    // Sent after the bound: must be refused by the new definition.
    await sendBatch({ note: 'z'.repeat(300) });
    const last = sent[sent.length - 1]!;

    for (const job of sent) expect(await settle(job.id)).toEqual({ done: true, error: null });
    const { rows } = await db.query<{ reason: string; n: number }>(
      `SELECT reason, count(*)::int AS n FROM sluice.rejects WHERE stream = 'busy' AND raw LIKE '%zzzz%' GROUP BY reason`,
    );
    expect(rows).toEqual([{ reason: 'event_too_large', n: last.events.length }]);
    // Every event is either stored or rejected, none lost in the swap.
    const all = sent.flatMap((j) => j.events.map((e) => e.event_id));
    const { rows: accounted } = await db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM (
         SELECT event_id::text FROM sluice_data.busy_all WHERE event_id::text = ANY($1)
         UNION SELECT (raw::json->>'event_id') FROM sluice.rejects WHERE stream = 'busy' AND (raw::json->>'event_id') = ANY($1)) x`,
      [all],
    );
    expect(accounted[0]?.n).toBe(all.length);
  });

  it('a long-lived TypeScript client follows a settings change and a drop/re-create too', async () => {
    await db.query(`SELECT sluice.create_stream('client_side', '[{"name":"b","type":"text"}]')`);
    const ingestor = await createIngestor({ connectionString: db.url, stream: 'client_side' });
    try {
      const note = 'n'.repeat(400);
      expect(await ingestor.ingest([event({ b: 'x', note })])).toMatchObject({ accepted: 1, rejected: 0 });

      await db.query(`UPDATE sluice.streams SET max_event_bytes = 200 WHERE name = 'client_side'`);
      await sleep(AFTER_BOUND_MS);
      expect(await ingestor.ingest([event({ b: 'x', note })])).toMatchObject({
        accepted: 0,
        rejections: [expect.objectContaining({ reason: 'event_too_large' })],
      });
      expect(ingestor.stream.maxEventBytes).toBe(200);

      await dropStream(db.pool, 'client_side');
      await db.query(`SELECT sluice.create_stream('client_side', '[{"name":"a","type":"bigint"}]')`);
      await sleep(AFTER_BOUND_MS);
      const reshaped = event({ a: 7 });
      expect(await ingestor.ingest([reshaped])).toMatchObject({ accepted: 1, rejected: 0 });
      await ingestor.flush();
      const { rows } = await db.query<{ a: string }>(`SELECT a::text FROM sluice_data.client_side_all WHERE event_id = $1`, [reshaped.event_id]);
      expect(rows).toEqual([{ a: '7' }]);
      // Counters stay cumulative across the swaps.
      expect(ingestor.stats()).toMatchObject({ accepted: 2, rejected: 1 });
    } finally {
      await ingestor.close();
    }
  });

  it("a settings change while a durable flush waits does not abort that flush's acknowledgement (seen in the chaos suite)", async () => {
    await db.query(`SELECT sluice.create_stream('durable_swap')`);
    const ingestor = await createIngestor({ connectionString: db.url, stream: 'durable_swap', ack: 'durable', flushRows: 50 });
    // A second session holds the durable table: the drain waits, so the flush stays waiting while the stream's version moves.
    const blocker = await db.pool.connect();
    try {
      await blocker.query('BEGIN');
      await blocker.query(`LOCK TABLE sluice_data.durable_swap IN SHARE MODE`);
      const events = Array.from({ length: 120 }, () => event());
      for (const e of events) await ingestor.push(e);
      let settled = false;
      const flushed = ingestor.flush().then(
        () => 'durable',
        (err: Error) => `failed: ${err.message}`,
      );
      void flushed.finally(() => (settled = true));
      await db.query(`UPDATE sluice.streams SET premake_months = premake_months + 1 WHERE name = 'durable_swap'`);
      await sleep(AFTER_BOUND_MS);
      // The client has moved to the new definition; the flush is still waiting for the drain.
      expect(ingestor.stream.premakeMonths).toBeGreaterThan(3);
      expect(settled).toBe(false);
      await blocker.query('COMMIT');
      // It resolves once the events are durable, not with durable_wait_aborted.
      expect(await flushed).toBe('durable');
      const { rows } = await db.query<{ n: number }>(`SELECT count(DISTINCT event_id)::int AS n FROM sluice_data.durable_swap_all`);
      expect(rows[0]?.n).toBe(120);
      const late = event();
      await ingestor.push(late);
      await ingestor.flush();
      expect(await storedCount('durable_swap', late.event_id)).toBe(1);
    } finally {
      await blocker.query('ROLLBACK').catch(() => undefined);
      blocker.release();
      await ingestor.close();
    }
  });

  it('`sluice stream create` and `drop` say when running workers see the change', async () => {
    const env = { DATABASE_URL: db.url };
    const created = await runCli(['stream', 'create', 'announced', '--column', 'a:bigint'], { env });
    expect(created.code, created.stderr).toBe(0);
    expect(created.stderr).toContain(`pick this up within ${STREAM_REFRESH_MS / 1000} s`);
    const dropped = await runCli(['stream', 'drop', 'announced', '--yes'], { env });
    expect(dropped.code, dropped.stderr).toBe(0);
    expect(dropped.stderr).toContain(`pick this up within ${STREAM_REFRESH_MS / 1000} s`);
  });
});
