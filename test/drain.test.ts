/**
 * The drain, driven directly (no worker): concurrent drainers share staging
 * through SKIP LOCKED without loss or duplicates, a drain never waits on rows
 * another session holds, re-drained rows collapse to duplicates, a missing
 * month partition is created on demand (or its rows rejected when outside the
 * stream's window), and the tables have the shape the design promises.
 */
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { drainBatch } from '../src/drain/drain-batch.js';
import { drainUntilEmpty, type DrainRunResult } from '../src/drain/drain-loop.js';
import { createIngestor } from '../src/ingest/create-ingestor.js';
import { silentLogger } from '../src/logger.js';
import { requireStream, type StreamDefinition } from '../src/streams/registry.js';
import { createTestDatabase } from './helpers/database.js';
import { distinctIds, durableIds, makeEvents, stagedCount } from './helpers/events.js';

const db = await createTestDatabase('drain');

const clients: pg.Client[] = [];
afterAll(async () => {
  await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
});

/** A connection of our own, as a drainer would have. */
async function connect(name: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: db.url, application_name: `sluice-test/${name}` });
  client.on('error', () => undefined);
  await client.connect();
  clients.push(client);
  return client;
}

async function createStream(name: string): Promise<StreamDefinition> {
  await db.query('SELECT sluice.create_stream($1)', [name]);
  const client = await connect(`${name}-def`);
  return requireStream(client, name);
}

/** Fill staging through the real front door (ack "staged": no drain involved). */
async function stage(stream: string, events: readonly unknown[]): Promise<void> {
  const ingestor = await createIngestor({ connectionString: db.url, stream, ack: 'staged', flushRows: 2_000 });
  try {
    const receipt = await ingestor.ingest(events);
    expect(receipt.rejected).toBe(0);
  } finally {
    await ingestor.close();
  }
}

function drain(client: pg.Client, stream: StreamDefinition, drainer: string, batchRows = 500): Promise<DrainRunResult> {
  return drainUntilEmpty(async () => client, { stream, batchRows, drainer, maxMs: 60_000, log: silentLogger });
}

/** First day (UTC) of the month `offset` months from now, as YYYY-MM-DD, and its partition suffix. */
function utcMonth(offset: number): { start: Date; suffix: string } {
  const now = new Date();
  const start = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + offset, 1));
  const suffix = `${start.getUTCFullYear()}${String(start.getUTCMonth() + 1).padStart(2, '0')}`;
  return { start, suffix };
}

async function relationExists(qualified: string): Promise<boolean> {
  const { rows } = await db.query<{ oid: string | null }>('SELECT to_regclass($1)::text AS oid', [qualified]);
  return rows[0]?.oid !== null;
}

describe('drain', () => {
  it('two concurrent drainers move everything exactly once, and both take part', async () => {
    const stream = await createStream('two_drainers');
    const { events, unique } = makeEvents(20_000, 11);
    expect(events.length - unique).toBeGreaterThan(100); // ~1% re-sent event_ids
    await stage('two_drainers', events);
    expect(await stagedCount(db, 'two_drainers')).toBe(events.length);

    const [a, b] = await Promise.all([connect('drainer-a'), connect('drainer-b')]);
    const [ra, rb] = await Promise.all([drain(a, stream, 'test/drain-a'), drain(b, stream, 'test/drain-b')]);

    expect(ra.moved).toBeGreaterThan(0);
    expect(rb.moved).toBeGreaterThan(0);
    expect(ra.moved + rb.moved).toBe(events.length);
    expect(ra.inserted + rb.inserted).toBe(unique);
    expect(ra.duplicates + rb.duplicates).toBe(events.length - unique);
    expect(ra.more || rb.more).toBe(false);

    expect(await stagedCount(db, 'two_drainers')).toBe(0);
    const durable = await durableIds(db, 'two_drainers');
    expect(durable.rows).toBe(unique);
    expect(durable.ids).toEqual(distinctIds(events));

    const { rows: stats } = await db.query<{ drainer: string; moved: number; inserted: number; batches: number }>(
      `SELECT drainer, sum(moved)::int AS moved, sum(inserted)::int AS inserted, sum(batches)::int AS batches
         FROM sluice.drain_stats WHERE stream = 'two_drainers' GROUP BY drainer ORDER BY drainer`,
    );
    expect(stats.map((s) => s.drainer)).toEqual(['test/drain-a', 'test/drain-b']);
    expect(stats[0]).toMatchObject({ moved: ra.moved, inserted: ra.inserted });
    expect(stats[1]).toMatchObject({ moved: rb.moved, inserted: rb.inserted });
    // Every batch that moved rows is counted (the final, empty one is not).
    expect((stats[0]?.batches ?? 0) + (stats[1]?.batches ?? 0)).toBeGreaterThanOrEqual(Math.ceil(events.length / 500));
  });

  it('SKIP LOCKED: rows locked by another session are skipped, not waited on, and drained once released', async () => {
    const stream = await createStream('skip_locked');
    const { events } = makeEvents(2_000, 12, {}, 0);
    await stage('skip_locked', events);

    const holder = await connect('holder');
    const drainer = await connect('skipper');
    // A drain that had to wait would fail fast instead of hanging the test.
    await drainer.query(`SET lock_timeout = '10s'`);

    // Session A holds row locks on 300 staged rows.
    await holder.query('BEGIN');
    const { rows: held } = await holder.query<{ event_id: string }>(
      `SELECT event_id::text FROM sluice_staging.skip_locked LIMIT 300 FOR UPDATE`,
    );
    expect(held).toHaveLength(300);

    // Session B drains everything else while A still holds its locks.
    const first = await drainBatch(drainer, stream, 10_000, 'test/skipper');
    expect(first.moved).toBe(events.length - 300);
    expect(first.inserted).toBe(events.length - 300);
    const { rows: left } = await db.query<{ event_id: string }>('SELECT event_id::text FROM sluice_staging.skip_locked');
    expect(new Set(left.map((r) => r.event_id))).toEqual(new Set(held.map((r) => r.event_id)));

    await holder.query('ROLLBACK');
    const second = await drain(drainer, stream, 'test/skipper');
    expect(second.moved).toBe(300);
    expect(second.inserted).toBe(300);
    expect(await stagedCount(db, 'skip_locked')).toBe(0);
    const durable = await durableIds(db, 'skip_locked');
    expect(durable.rows).toBe(events.length);
    expect(durable.ids).toEqual(distinctIds(events));
  });

  it('SKIP LOCKED: a drain batch left open in one session does not block another drainer; its commit lands once', async () => {
    const stream = await createStream('open_batch');
    const { events } = makeEvents(2_000, 13, {}, 0);
    await stage('open_batch', events);

    const a = await connect('open-a');
    const b = await connect('open-b');
    await b.query(`SET lock_timeout = '10s'`);

    await a.query('BEGIN');
    const inA = await drainBatch(a, stream, 400, 'test/open-a'); // the drain statement, transaction still open
    expect(inA.moved).toBe(400);

    const inB = await drain(b, stream, 'test/open-b', 10_000);
    expect(inB.moved).toBe(events.length - 400);
    expect(inB.inserted).toBe(events.length - 400);
    // A's rows are neither visible in durable (uncommitted) nor takeable by B.
    expect((await durableIds(db, 'open_batch')).rows).toBe(events.length - 400);

    await a.query('COMMIT');
    expect(await stagedCount(db, 'open_batch')).toBe(0);
    const durable = await durableIds(db, 'open_batch');
    expect(durable.rows).toBe(events.length);
    expect(durable.ids).toEqual(distinctIds(events));
    // And a further drain finds nothing.
    expect((await drain(b, stream, 'test/open-b')).moved).toBe(0);
  });

  it('re-draining rows that are already durable changes nothing and reports them as duplicates', async () => {
    const stream = await createStream('redrain');
    const { events } = makeEvents(600, 14, {}, 0);
    await stage('redrain', events);
    const client = await connect('redrain');
    const firstRun = await drain(client, stream, 'test/redrain');
    expect(firstRun).toMatchObject({ moved: 600, inserted: 600, duplicates: 0 });
    const before = await db.query<{ event_id: string; payload: unknown }>(
      'SELECT event_id::text, payload FROM sluice_data.redrain ORDER BY event_id',
    );

    // The same keys again, straight into staging, with a different payload.
    const copied = await db.query(
      `INSERT INTO sluice_staging.redrain (event_id, occurred_at, payload)
       SELECT event_id, occurred_at, '{"redrained": true}'::jsonb FROM sluice_data.redrain WHERE event_id::text < '8'`,
    );
    expect(copied.rowCount).toBeGreaterThan(0);

    const again = await drain(client, stream, 'test/redrain');
    expect(again.moved).toBe(copied.rowCount);
    expect(again.inserted).toBe(0);
    expect(again.duplicates).toBe(copied.rowCount);
    expect(await stagedCount(db, 'redrain')).toBe(0);
    const after = await db.query('SELECT event_id::text, payload FROM sluice_data.redrain ORDER BY event_id');
    expect(after.rows).toEqual(before.rows); // ON CONFLICT DO NOTHING: first write wins, nothing added
  });

  it('creates a missing month partition inside the window on demand, and rejects rows outside it in the same step', async () => {
    const stream = await createStream('late');
    const sixMonthsAgo = utcMonth(-6);
    const twoAhead = utcMonth(2);
    const fiveYearsAgo = utcMonth(-60);
    const tooFarAhead = utcMonth(8); // premake 3 months: the window ends 4 months ahead
    for (const m of [sixMonthsAgo, twoAhead, fiveYearsAgo, tooFarAhead]) {
      expect(await relationExists(`sluice_data.late_p${m.suffix}`)).toBe(false);
    }

    // Straight into staging (the front doors would refuse out-of-window events): one batch mixing
    // current rows, rows for months without partitions inside the window, and rows outside it.
    const inserted = await db.query<{ event_id: string; kind: string }>(
      `INSERT INTO sluice_staging.late (event_id, occurred_at, payload)
       SELECT gen_random_uuid(), t.at + (g * interval '1 minute'), jsonb_build_object('kind', t.kind)
         FROM (VALUES ('now', now() - interval '1 hour', 100),
                      ('six_months_ago', $1::timestamptz + interval '14 days', 50),
                      ('two_ahead', $2::timestamptz + interval '3 days', 20),
                      ('five_years_ago', $3::timestamptz + interval '10 days', 30),
                      ('too_far_ahead', $4::timestamptz + interval '1 day', 10)) AS t(kind, at, n),
              generate_series(1, t.n) AS g
       RETURNING event_id::text, payload->>'kind' AS kind`,
      [sixMonthsAgo.start, twoAhead.start, fiveYearsAgo.start, tooFarAhead.start],
    );
    const idsOf = (...kinds: string[]) => new Set(inserted.rows.filter((r) => kinds.includes(r.kind)).map((r) => r.event_id));
    const valid = idsOf('now', 'six_months_ago', 'two_ahead');
    const outside = idsOf('five_years_ago', 'too_far_ahead');
    expect(valid.size).toBe(170);
    expect(outside.size).toBe(40);

    // Watch, from another session, that outside-window rows are always in staging or in rejects.
    const outsideList = [...outside];
    const observed: number[] = [];
    let draining = true;
    const watch = await connect('late-watch');
    const watcher = (async () => {
      do {
        const { rows } = await watch.query<{ n: number }>(
          `SELECT ((SELECT count(*) FROM sluice_staging.late WHERE event_id::text = ANY ($1))
                 + (SELECT count(*) FROM sluice.rejects WHERE stream = 'late' AND (raw::jsonb->>'event_id') = ANY ($1)))::int AS n`,
          [outsideList],
        );
        observed.push(rows[0]?.n ?? -1);
      } while (draining);
    })();

    const client = await connect('late');
    let run: DrainRunResult;
    try {
      run = await drain(client, stream, 'test/late', 1_000); // one batch holds every row
    } finally {
      draining = false;
      await watcher;
    }
    expect(run.partitionsCreated).toBe(2);
    expect(run.rejected).toBe(40);
    expect(run.inserted).toBe(170);

    expect(await relationExists(`sluice_data.late_p${sixMonthsAgo.suffix}`)).toBe(true);
    expect(await relationExists(`sluice_data.late_p${twoAhead.suffix}`)).toBe(true);
    expect(await relationExists(`sluice_data.late_p${fiveYearsAgo.suffix}`)).toBe(false);
    expect(await relationExists(`sluice_data.late_p${tooFarAhead.suffix}`)).toBe(false);

    const durable = await durableIds(db, 'late');
    expect(durable.ids).toEqual(valid);
    expect(durable.rows).toBe(170);
    const inPartition = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM sluice_data.late_p${sixMonthsAgo.suffix}`);
    expect(inPartition.rows[0]?.n).toBe(50);
    expect(await stagedCount(db, 'late')).toBe(0);

    const rejects = await db.query<{ source: string; reason: string; event_id: string; message: string }>(
      `SELECT source, reason, raw::jsonb->>'event_id' AS event_id, message FROM sluice.rejects WHERE stream = 'late'`,
    );
    expect(rejects.rows).toHaveLength(40);
    expect(new Set(rejects.rows.map((r) => r.event_id))).toEqual(outside);
    for (const r of rejects.rows) {
      expect(r.source).toBe('drain');
      expect(r.reason).toBe('no_partition');
      expect(r.message).toMatch(/outside the stream window/);
    }
    expect(observed.length).toBeGreaterThan(0);
    expect(new Set(observed)).toEqual(new Set([40]));
  });

  it('a month whose partition was detached (e.g. archived) does not wedge the stream: its rows go somewhere, the rest drain', async () => {
    const stream = await createStream('detached');
    const lastMonth = utcMonth(-1);
    const partition = `detached_p${lastMonth.suffix}`;
    // An operator archives last month's partition; the table stays, under the same name.
    // ("now" rows sit in this month whatever the time of day: an hour ago may be last month.)
    await db.query(`ALTER TABLE sluice_data.detached DETACH PARTITION sluice_data.${partition}`);
    const inserted = await db.query<{ event_id: string; kind: string }>(
      `INSERT INTO sluice_staging.detached (event_id, occurred_at, payload)
       SELECT gen_random_uuid(), t.at + (g * interval '1 minute'), jsonb_build_object('kind', t.kind)
         FROM (VALUES ('now', (date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC') + interval '1 hour', 100),
                      ('last_month', $1::timestamptz + interval '2 days', 20)) AS t(kind, at, n),
              generate_series(1, t.n) AS g
       RETURNING event_id::text, payload->>'kind' AS kind`,
      [lastMonth.start],
    );
    const current = new Set(inserted.rows.filter((r) => r.kind === 'now').map((r) => r.event_id));
    const late = new Set(inserted.rows.filter((r) => r.kind === 'last_month').map((r) => r.event_id));

    const client = await connect('detached');
    await expect(drain(client, stream, 'test/detached', 1_000)).resolves.toMatchObject({ more: false });

    expect(await stagedCount(db, 'detached')).toBe(0);
    const durable = await durableIds(db, 'detached');
    for (const id of current) expect(durable.ids.has(id)).toBe(true);
    const rejected = await db.query<{ event_id: string }>(
      `SELECT raw::jsonb->>'event_id' AS event_id FROM sluice.rejects WHERE stream = 'detached'`,
    );
    const rejectedIds = new Set(rejected.rows.map((r) => r.event_id));
    // Each late row is in exactly one place: durable (re-attached) or rejects.
    for (const id of late) expect(Number(durable.ids.has(id)) + Number(rejectedIds.has(id)), id).toBe(1);
  });

  it('tables have the promised shape: partitioned durable table with PK, BRIN, 3 months, no default; UNLOGGED index-free staging', async () => {
    await createStream('shape');
    const parent = await db.query<{ partdefid: string; relpersistence: string; relkind: string }>(
      `SELECT p.partdefid::text, c.relpersistence, c.relkind
         FROM pg_class c JOIN pg_partitioned_table p ON p.partrelid = c.oid WHERE c.oid = 'sluice_data.shape'::regclass`,
    );
    expect(parent.rows).toEqual([{ partdefid: '0', relpersistence: 'p', relkind: 'p' }]); // 0: no default partition

    const pk = await db.query<{ def: string }>(
      `SELECT pg_get_constraintdef(oid) AS def FROM pg_constraint WHERE conrelid = 'sluice_data.shape'::regclass AND contype = 'p'`,
    );
    expect(pk.rows.map((r) => r.def)).toEqual(['PRIMARY KEY (occurred_at, event_id)']);

    const indexes = await db.query<{ indexdef: string }>(
      `SELECT indexdef FROM pg_indexes WHERE schemaname = 'sluice_data' AND tablename = 'shape'`,
    );
    expect(indexes.rows.filter((r) => /USING brin \(occurred_at\)/.test(r.indexdef))).toHaveLength(1);

    const utc = await connect('shape-utc');
    await utc.query(`SET TimeZone = 'UTC'`); // partition bounds print in the session's zone
    const partitions = await utc.query<{ name: string; bound: string }>(
      `SELECT c.relname AS name, pg_get_expr(c.relpartbound, c.oid) AS bound
         FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'sluice_data.shape'::regclass ORDER BY c.relname`,
    );
    const expected = [-1, 0, 1].map((o) => utcMonth(o));
    expect(partitions.rows.map((r) => r.name)).toEqual(expected.map((m) => `shape_p${m.suffix}`));
    for (const [i, row] of partitions.rows.entries()) {
      expect(row.bound).not.toMatch(/DEFAULT/i);
      expect(row.bound).toContain(expected[i]?.start.toISOString().slice(0, 10));
    }

    const staging = await db.query<{ relpersistence: string; indexes: number }>(
      `SELECT c.relpersistence, (SELECT count(*)::int FROM pg_index x WHERE x.indrelid = c.oid) AS indexes
         FROM pg_class c WHERE c.oid = 'sluice_staging.shape'::regclass`,
    );
    expect(staging.rows).toEqual([{ relpersistence: 'u', indexes: 0 }]);
  });
});
