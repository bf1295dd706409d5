/**
 * The SQL front door, sluice.ingest(stream, events jsonb) (migrations/00012):
 * the same verdicts as the TypeScript encoder on a shared corpus (per event,
 * and in one batched call), rejects with source 'sql', transactional-outbox
 * semantics (a rolled-back producer stages and rejects nothing), committed
 * rows drained by a running worker through the commit-time notification,
 * exact numbers, and many producers at once.
 */
import { randomUUID } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { EventEncoder, Rejection } from '../src/ingest/event-encoder.js';
import { parseJsonExact } from '../src/codec/exact-json.js';
import { getStream } from '../src/streams/registry.js';
import { createTestDatabase } from './helpers/database.js';
import { durableIds, stagedCount } from './helpers/events.js';
import { waitFor } from './helpers/wait.js';
import { startWorker } from './helpers/worker.js';
import { tempFolders } from './helpers/temp.js';

const db = await createTestDatabase('sql_ingest');
const tempFolder = tempFolders();

const CORPUS_COLUMNS = [
  ['n', 'integer'], ['b', 'bigint'], ['s', 'smallint'], ['num', 'numeric'], ['r', 'real'], ['f', 'double precision'],
  ['flag', 'boolean'], ['u', 'uuid'], ['t', 'timestamp with time zone'], ['d', 'date'], ['j', 'jsonb'], ['name', 'text'],
].map(([name, type]) => ({ name, type }));

const now = new Date();
const NOW = now.toISOString();
/** February 29 of the first common year from this one (a real date only in leap years). */
const THIS_YEAR_FEB29_OR_COMMON = (() => {
  let y = now.getUTCFullYear();
  while ((y % 4 === 0 && y % 100 !== 0) || y % 400 === 0) y++;
  return `${y}-02-29T12:00:00Z`;
})();
/** The first instant past the default window (premake 3 months: this month + 4), which is out of it. */
const WINDOW_END = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 4, 1)).toISOString();
const id = () => randomUUID();

/** JSON texts: what a producer would send. Built as text so exact numbers stay exact. */
function corpus(): Array<{ label: string; json: string }> {
  const ev = (label: string, fields: string) => ({ label, json: `{"event_id":"${id()}","occurred_at":"${NOW}"${fields ? `,${fields}` : ''}}` });
  const envelope = (label: string, json: string) => ({ label, json });
  const u = id();
  return [
    ev('all columns valid', `"n":1,"b":"9223372036854775807","s":-32768,"num":"1e5","r":1.5,"f":"2.5e300","flag":"true","u":"${u}","t":${now.getTime()},"d":"2024-02-29","j":{"a":[1]},"name":12,"extra":1.10`),
    ev('nulls are NULL columns', `"n":null,"name":null,"t":null`),
    envelope('missing event_id', `{"occurred_at":"${NOW}"}`),
    envelope('null event_id', `{"event_id":null,"occurred_at":"${NOW}"}`),
    envelope('event_id not a uuid', `{"event_id":"bad","occurred_at":"${NOW}"}`),
    envelope('event_id a number', `{"event_id":123,"occurred_at":"${NOW}"}`),
    envelope('event_id with braces', `{"event_id":"{${u}}","occurred_at":"${NOW}"}`),
    envelope('missing occurred_at', `{"event_id":"${id()}"}`),
    envelope('null occurred_at', `{"event_id":"${id()}","occurred_at":null}`),
    envelope('month 13', `{"event_id":"${id()}","occurred_at":"2026-13-01T00:00:00Z"}`),
    envelope('no zone', `{"event_id":"${id()}","occurred_at":"${NOW.slice(0, 19)}"}`),
    envelope('boolean time', `{"event_id":"${id()}","occurred_at":true}`),
    envelope('February 30', `{"event_id":"${id()}","occurred_at":"2026-02-30T00:00:00Z"}`),
    envelope('offset +16:00', `{"event_id":"${id()}","occurred_at":"${NOW.slice(0, 19)}+16:00"}`),
    envelope('epoch past JS range', `{"event_id":"${id()}","occurred_at":9000000000000000}`),
    envelope('too old', `{"event_id":"${id()}","occurred_at":"1999-01-01T00:00:00Z"}`),
    envelope('epoch 0', `{"event_id":"${id()}","occurred_at":0}`),
    envelope('far future', `{"event_id":"${id()}","occurred_at":"2099-01-01T00:00:00Z"}`),
    envelope('epoch ms now', `{"event_id":"${id()}","occurred_at":${now.getTime()}}`),
    envelope('offset +05:30', `{"event_id":"${id()}","occurred_at":"${NOW.slice(0, 19)}+05:30"}`),
    envelope('lowercase z, 9 digits', `{"event_id":"${id()}","occurred_at":"${NOW.slice(0, 19)}.123456789z"}`),
    envelope('offset -0800', `{"event_id":"${id()}","occurred_at":"${NOW.slice(0, 19)}-0800"}`),
    envelope('offset minutes 60', `{"event_id":"${id()}","occurred_at":"${NOW.slice(0, 19)}+05:60"}`),
    envelope('dot without digits', `{"event_id":"${id()}","occurred_at":"${NOW.slice(0, 19)}.Z"}`),
    envelope('10-digit fraction', `{"event_id":"${id()}","occurred_at":"${NOW.slice(0, 19)}.1234567890Z"}`),
    envelope('lowercase t', `{"event_id":"${id()}","occurred_at":"${NOW.slice(0, 10)}t${NOW.slice(11)}"}`),
    envelope('hour 24', `{"event_id":"${id()}","occurred_at":"${NOW.slice(0, 10)}T24:00:00Z"}`),
    // At the edges of the fast path's "plainly valid" shape (migrations/00015): each must get the careful verdict.
    envelope('February 29 of a common year', `{"event_id":"${id()}","occurred_at":"${THIS_YEAR_FEB29_OR_COMMON}"}`),
    envelope('April 31', `{"event_id":"${id()}","occurred_at":"${NOW.slice(0, 4)}-04-31T00:00:00Z"}`),
    envelope('second 60', `{"event_id":"${id()}","occurred_at":"${NOW.slice(0, 17)}60Z"}`),
    envelope('minute 60', `{"event_id":"${id()}","occurred_at":"${NOW.slice(0, 14)}60:00Z"}`),
    envelope('year 0000', `{"event_id":"${id()}","occurred_at":"0000-01-01T00:00:00Z"}`),
    envelope('7 fraction digits', `{"event_id":"${id()}","occurred_at":"${NOW.slice(0, 19)}.1234567Z"}`),
    envelope('at the window end', `{"event_id":"${id()}","occurred_at":"${WINDOW_END}"}`),
    ev('bigint of 19 digits', `"b":1234567890123456789`),
    ev('integer of 10 digits', `"n":1234567890`),
    ev('smallint of 5 digits', `"s":12345`),
    ev('negative smallint', `"s":-1234`),
    envelope('uppercase uuid', `{"event_id":"${id().toUpperCase()}","occurred_at":"${NOW}"}`),
    envelope('space separator', `{"event_id":"${id()}","occurred_at":"${NOW.slice(0, 10)} ${NOW.slice(11)}"}`),
    ev('integer with a fraction', `"n":1.5`),
    ev('integer as text', `"n":"12"`),
    ev('integer 1.0', `"n":1.0`),
    ev('integer overflow', `"n":2147483648`),
    ev('integer not a number', `"n":"abc"`),
    ev('integer boolean', `"n":true`),
    ev('smallint overflow', `"s":40000`),
    ev('bigint overflow text', `"b":"9223372036854775808"`),
    ev('bigint exact max', `"b":9223372036854775807`),
    ev('numeric word', `"num":"abc"`),
    ev('numeric NaN', `"num":"NaN"`),
    ev('numeric exact', `"num":12345678901234567890.123456789012345`),
    ev('real overflow', `"r":1e39`),
    ev('real underflow text', `"r":"1e-50"`),
    ev('double overflow', `"f":1e400`),
    ev('double underflow text', `"f":"1e-400"`),
    ev('boolean yes', `"flag":"yes"`),
    ev('boolean false', `"flag":false`),
    ev('uuid bad', `"u":"not-a-uuid"`),
    ev('timestamptz date only', `"t":"2026-12-01"`),
    ev('date Feb 30', `"d":"2026-02-30"`),
    ev('date a number', `"d":20260101`),
    ev('text an object', `"name":{}`),
    ev('text boolean', `"name":true`),
    ev('too large', `"blob":"${'x'.repeat(2000)}"`),
    envelope('not an object: number', '5'),
    envelope('not an object: string', '"str"'),
    envelope('not an object: array', '[1]'),
  ];
}

async function createCorpusStream(name: string): Promise<void> {
  await db.query(`SELECT sluice.create_stream($1, $2::jsonb, '{"max_event_bytes": 1000}'::jsonb)`, [name, JSON.stringify(CORPUS_COLUMNS)]);
}

async function sqlVerdict(client: pg.ClientBase, stream: string, json: string): Promise<string> {
  const { rows } = await client.query<{ accepted: number; rejected: number }>(
    'SELECT * FROM sluice.ingest($1, jsonb_build_array($2::jsonb))', [stream, json]);
  if (rows[0]!.accepted === 1) return 'accepted';
  const { rows: r } = await client.query<{ reason: string; source: string }>(
    'SELECT reason, source FROM sluice.rejects WHERE stream = $1 ORDER BY id DESC LIMIT 1', [stream]);
  expect(r[0]!.source).toBe('sql');
  return r[0]!.reason;
}

describe('sluice.ingest: the SQL front door', () => {
  it('gives every corpus event the TypeScript encoder\'s verdict (reason for reason)', async () => {
    await createCorpusStream('corpus');
    const stream = (await getStream(db.pool, 'corpus'))!;
    const encoder = new EventEncoder(stream);
    const cases = corpus();
    const client = await db.pool.connect();
    try {
      const mismatches: string[] = [];
      const tsVerdicts: string[] = [];
      for (const c of cases) {
        const encoded = encoder.encode(parseJsonExact(c.json));
        const ts = encoded instanceof Rejection ? encoded.reason : 'accepted';
        tsVerdicts.push(ts);
        const sql = await sqlVerdict(client, 'corpus', c.json);
        if (ts !== sql) mismatches.push(`${c.label}: TS ${ts}, SQL ${sql}`);
      }
      expect(mismatches).toEqual([]);
      // The corpus exercises every envelope and column reason, and acceptance.
      expect(new Set(tsVerdicts)).toEqual(new Set(['accepted', 'missing_event_id', 'invalid_event_id', 'missing_occurred_at', 'invalid_occurred_at',
        'occurred_at_out_of_window', 'invalid_column_value', 'event_too_large', 'not_an_object']));

      // The same corpus in one call: same counts, same reasons (the batch path, and its fallback for casts that raise).
      await client.query('DELETE FROM sluice.rejects');
      await client.query('TRUNCATE sluice_staging.corpus');
      const batch = `[${cases.map((c) => c.json).join(',')}]`;
      const { rows } = await client.query('SELECT * FROM sluice.ingest($1, $2::jsonb)', ['corpus', batch]);
      const accepted = tsVerdicts.filter((v) => v === 'accepted').length;
      expect(rows[0]).toEqual({ accepted, rejected: cases.length - accepted });
      expect(await stagedCount(db, 'corpus')).toBe(accepted);
      const { rows: reasons } = await client.query<{ reason: string }>('SELECT reason FROM sluice.rejects WHERE stream = $1 AND source = $2', ['corpus', 'sql']);
      expect(reasons.map((r) => r.reason).sort()).toEqual(tsVerdicts.filter((v) => v !== 'accepted').sort());
    } finally {
      client.release();
    }
  });

  it('plainly valid events (the fast path) store exactly what the careful checks would: instants, integers, text', async () => {
    await db.query(`SELECT sluice.create_stream('plain', '[{"name":"n","type":"integer"},{"name":"b","type":"bigint"},{"name":"name","type":"text"}]'::jsonb)`);
    const y = now.getUTCFullYear();
    const m = now.getUTCMonth();
    const iso = (d: Date) => d.toISOString();
    const lastDay = (year: number, month: number) => new Date(Date.UTC(year, month + 1, 0));
    // Instants at the edges the fast path's shape check decides: month ends, the window's first instant, every fraction length.
    const lo = (await db.query<{ lo: string }>(`SELECT (lo::timestamp AT TIME ZONE 'UTC')::text AS lo FROM sluice.stream_window('plain')`)).rows[0]!.lo;
    const times = [
      `${iso(lastDay(y, m)).slice(0, 10)}T23:59:59.999999Z`,
      `${iso(lastDay(y, m + 1)).slice(0, 10)}T23:59:59Z`,
      `${iso(lastDay(y, m + 2)).slice(0, 10)}T00:00:00.5Z`,
      `${iso(new Date(lo)).slice(0, 10)}T00:00:00Z`,
      ...[1, 2, 3, 4, 5, 6].map((digits) => `${NOW.slice(0, 19)}.${'123456'.slice(0, digits)}Z`),
    ];
    const events = times.map((t, i) => ({ event_id: id(), occurred_at: t, n: i % 2 ? -123456789 : 999999999, b: i % 2 ? -Number.MAX_SAFE_INTEGER : Number.MAX_SAFE_INTEGER, name: i % 3 ? `x${i}` : 7 }));
    const { rows } = await db.query('SELECT * FROM sluice.ingest($1, $2::jsonb)', ['plain', JSON.stringify(events)]);
    expect(rows[0]).toEqual({ accepted: events.length, rejected: 0 });
    // Postgres as the oracle: the careful parser's instant and the careful casts, side by side with what was staged.
    const { rows: stored } = await db.query<{ same_at: boolean; same_n: boolean; same_b: boolean; same_name: boolean }>(
      `SELECT s.occurred_at = (sluice.parse_event_time(e->'occurred_at')).at AS same_at,
              s.n IS NOT DISTINCT FROM (e->>'n')::numeric::integer AS same_n,
              s.b IS NOT DISTINCT FROM (e->>'b')::numeric::bigint AS same_b,
              s.name IS NOT DISTINCT FROM (e->>'name') AS same_name
         FROM jsonb_array_elements($1::jsonb) AS e JOIN sluice_staging.plain s ON s.event_id = (e->>'event_id')::uuid`,
      [JSON.stringify(events)],
    );
    expect(stored).toHaveLength(events.length);
    expect(stored.every((r) => r.same_at && r.same_n && r.same_b && r.same_name)).toBe(true);
    // And the TypeScript encoder accepts each of them too.
    const encoder = new EventEncoder((await getStream(db.pool, 'plain'))!);
    expect(events.map((e) => encoder.encode(parseJsonExact(JSON.stringify(e)))).filter((r) => r instanceof Rejection)).toEqual([]);
  });

  it("refuses a column name written into sluice.streams by hand that could break out of the generated function's code", async () => {
    await db.query(`SELECT sluice.create_stream('victim')`);
    const hostile = [{ name: 'x$body$; CREATE TABLE public.sluice_pwned (); --', type: 'text' }];
    const err = await db
      .query(`UPDATE sluice.streams SET columns = $1::jsonb WHERE name = 'victim'`, [JSON.stringify(hostile)])
      .then(() => undefined, (e: { code?: string; message: string }) => e);
    expect(err?.code).toBe('22023');
    expect(err?.message).toMatch(/declares a column sluice.create_stream would refuse/);
    const { rows } = await db.query<{ t: string | null }>(`SELECT to_regclass('public.sluice_pwned')::text AS t`);
    expect(rows[0]!.t).toBeNull();
    // The stream still ingests with its real definition.
    const ok = await db.query('SELECT * FROM sluice.ingest($1, $2::jsonb)', ['victim', JSON.stringify([{ event_id: id(), occurred_at: NOW }])]);
    expect(ok.rows[0]).toEqual({ accepted: 1, rejected: 0 });
  });

  it("follows a stream's columns: its ingest function is regenerated when it is dropped and created again", async () => {
    await db.query(`SELECT sluice.create_stream('reshaped', '[{"name":"a","type":"bigint"}]'::jsonb)`);
    await db.query('SELECT * FROM sluice.ingest($1, $2::jsonb)', ['reshaped', JSON.stringify([{ event_id: id(), occurred_at: NOW, a: 1 }])]);
    await db.query(`SELECT sluice.drop_stream('reshaped')`);
    const gone = await db.query(`SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'sluice_ingest' AND p.proname = 'reshaped'`);
    expect(gone.rowCount).toBe(0);
    await db.query(`SELECT sluice.create_stream('reshaped', '[{"name":"c","type":"text"}]'::jsonb)`);
    const { rows } = await db.query('SELECT * FROM sluice.ingest($1, $2::jsonb)', ['reshaped', JSON.stringify([{ event_id: id(), occurred_at: NOW, a: 2, c: 'z' }])]);
    expect(rows[0]).toEqual({ accepted: 1, rejected: 0 });
    const staged = await db.query<{ c: string; payload: object }>(`SELECT c, payload FROM sluice_staging.reshaped`);
    expect(staged.rows).toEqual([{ c: 'z', payload: { a: 2 } }]);
  });

  it('stores declared columns cast, the rest as payload, numbers exactly as sent', async () => {
    await createCorpusStream('vals');
    const eventId = id();
    const json = `{"event_id":"${eventId}","occurred_at":"${NOW.slice(0, 19)}.1234567z","n":"12","b":9223372036854775807,` +
      `"num":12345678901234567890.123456789012345,"j":{"k":[1.10]},"big":123456789012345678901234567890,"tiny":1e-30}`;
    const { rows } = await db.query('SELECT * FROM sluice.ingest($1, $2::jsonb)', ['vals', json]); // one object, not an array
    expect(rows[0]).toEqual({ accepted: 1, rejected: 0 });
    const { rows: staged } = await db.query(
      `SELECT event_id::text, occurred_at = $2::timestamptz AS same_time, n, b::text, num::text, j::text, payload::text
         FROM sluice_staging.vals WHERE event_id = $1`, [eventId, `${NOW.slice(0, 19)}.123456Z`]);
    expect(staged).toEqual([{
      event_id: eventId, same_time: true, n: 12, b: '9223372036854775807', num: '12345678901234567890.123456789012345',
      j: '{"k": [1.10]}', payload: '{"big": 123456789012345678901234567890, "tiny": 1e-30}'.replace('1e-30', '0.000000000000000000000000000001'),
    }]);
  });

  it('a rolled-back producer stages nothing and rejects nothing; a committed one does', async () => {
    await createCorpusStream('outbox');
    const client = await db.pool.connect();
    try {
      await client.query('BEGIN');
      await client.query('SELECT sluice.ingest($1, $2::jsonb)', ['outbox', `[{"event_id":"${id()}","occurred_at":"${NOW}"},{"occurred_at":"${NOW}"}]`]);
      expect(await client.query('SELECT count(*)::int AS n FROM sluice_staging.outbox').then((r) => r.rows[0].n)).toBe(1); // seen inside
      await client.query('ROLLBACK');
      expect(await stagedCount(db, 'outbox')).toBe(0);
      expect((await db.query(`SELECT count(*)::int AS n FROM sluice.rejects WHERE stream = 'outbox'`)).rows[0]?.n).toBe(0);

      await client.query('BEGIN');
      await client.query('SELECT sluice.ingest($1, $2::jsonb)', ['outbox', `[{"event_id":"${id()}","occurred_at":"${NOW}"},{"occurred_at":"${NOW}"}]`]);
      expect(await stagedCount(db, 'outbox')).toBe(0); // not visible to others before the commit
      await client.query('COMMIT');
      expect(await stagedCount(db, 'outbox')).toBe(1);
      expect((await db.query(`SELECT count(*)::int AS n FROM sluice.rejects WHERE stream = 'outbox'`)).rows[0]?.n).toBe(1);
    } finally {
      client.release();
    }
  });

  it('refuses an unknown stream and a payload that is not an array or an object, as errors of the call', async () => {
    await expect(db.query(`SELECT sluice.ingest('no_such_stream', '[]')`)).rejects.toMatchObject({ code: '42704' });
    await expect(db.query(`SELECT sluice.ingest('events', '5')`)).rejects.toMatchObject({ code: '22023' });
  });

  it('committed rows drain to durable through the commit-time kick (no sweep scheduled), from many producers at once', async () => {
    await db.query(`SELECT sluice.create_stream('busy', '[{"name":"user_id","type":"bigint"}]'::jsonb)`);
    // No minute sweep: only the notification sent at commit can start these drains.
    const crontab = path.join(tempFolder('sluice-sql-ingest'), 'crontab');
    await writeFile(crontab, '# nothing scheduled\n');
    await startWorker(db, { concurrency: 2, drainers: 1, crontab });
    await waitFor(() => db.query(`SELECT count(*)::int AS n FROM graphile_worker.jobs`).then((r) => r.rows[0]?.n as number), (n) => n === 0,
      { what: 'the startup jobs done' });

    const producers = 8;
    const calls = 25;
    const perCall = 4;
    const ids: string[] = [];
    await Promise.all(Array.from({ length: producers }, async (_, p) => {
      const client = new pg.Client({ connectionString: db.url });
      await client.connect();
      try {
        for (let c = 0; c < calls; c++) {
          const events = Array.from({ length: perCall }, () => ({ event_id: id(), occurred_at: NOW, user_id: p }));
          ids.push(...events.map((e) => e.event_id));
          await client.query('BEGIN');
          const { rows } = await client.query('SELECT * FROM sluice.ingest($1, $2::jsonb)', ['busy', JSON.stringify(events)]);
          expect(rows[0]).toEqual({ accepted: perCall, rejected: 0 });
          await client.query('COMMIT');
        }
      } finally {
        await client.end();
      }
    }));
    const done = await waitFor(async () => ({ staged: await stagedCount(db, 'busy'), durable: await durableIds(db, 'busy') }),
      (s) => s.staged === 0 && s.durable.rows === producers * calls * perCall, { what: 'busy drained', timeoutMs: 30_000 });
    expect(done.durable.ids).toEqual(new Set(ids));
  });
});
