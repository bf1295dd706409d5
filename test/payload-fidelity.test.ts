/**
 * Payload fidelity, with Postgres as the oracle (issue 12, bugs 3 and 7).
 *
 * A corpus of awkward JSON lines (big, tiny and long numbers, exponents, 1.0
 * vs 1, -0, escapes, non-BMP characters, duplicate keys, nesting, unicode
 * keys) goes in through each front door: `sluice ingest FILE`, SQL
 * `graphile_worker.add_job('sluice_ingest', …)` (single and batch jobs), and
 * the TS Ingestor for the values a JS object can express. For every line:
 *   - where Postgres takes `line::jsonb` (and the declared column values),
 *     the stored payload is textually `line::jsonb` minus the envelope and the
 *     declared columns, `amount` (numeric) is `(line::jsonb->>'amount')::numeric`
 *     and `user_id` (bigint) is `(line::jsonb->>'user_id')::bigint`;
 *   - where Postgres refuses it, sluice stores nothing and rejects the event
 *     with a reason.
 * Textual comparison (payload::text) is stricter than jsonb `=` (1.0 = 1).
 */
import { randomUUID } from 'node:crypto';
import { unlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { createIngestor } from '../src/ingest/create-ingestor.js';
import { runCli } from './helpers/cli.js';
import { createTestDatabase } from './helpers/database.js';
import { stagedCount } from './helpers/events.js';
import { waitFor } from './helpers/wait.js';
import { startWorker } from './helpers/worker.js';

const db = await createTestDatabase('payload_fidelity');

const COLUMNS = '[{"name":"amount","type":"numeric"},{"name":"user_id","type":"bigint"}]';

/** Test-only helpers: Postgres' verdict on a text, NULL where it refuses it. */
const ORACLE_FUNCTIONS = `
CREATE FUNCTION public.try_jsonb(t text) RETURNS jsonb LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN RETURN t::jsonb; EXCEPTION WHEN others THEN RETURN NULL; END $$;
CREATE FUNCTION public.try_bigint(t text) RETURNS bigint LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN RETURN t::bigint; EXCEPTION WHEN others THEN RETURN NULL; END $$;
CREATE TABLE public.fidelity_source (stream text NOT NULL, event_id uuid NOT NULL, line text NOT NULL);
`;

/** Per source line: what Postgres makes of it, and what sluice stored or rejected. */
const COMPARE = (stream: string) => `
WITH src AS (
  SELECT s.event_id, s.line, public.try_jsonb(s.line) AS j FROM public.fidelity_source s WHERE s.stream = $1
), verdict AS (
  SELECT src.*,
         j IS NOT NULL
           AND (j->'user_id' IS NULL OR jsonb_typeof(j->'user_id') = 'null' OR public.try_bigint(j->>'user_id') IS NOT NULL) AS postgres_takes
    FROM src
)
SELECT v.line, v.postgres_takes,
       d.event_id IS NOT NULL AS stored,
       d.payload::text AS got_payload,
       (v.j - 'event_id' - 'occurred_at' - 'amount' - 'user_id')::text AS want_payload,
       d.amount::text AS got_amount, (v.j->>'amount')::numeric::text AS want_amount,
       d.user_id::text AS got_user_id, CASE WHEN v.postgres_takes THEN (v.j->>'user_id')::bigint::text END AS want_user_id,
       (SELECT string_agg(r.reason, ',') FROM sluice.rejects r WHERE r.stream = $1 AND strpos(r.raw, v.event_id::text) > 0) AS rejected
  FROM verdict v
  LEFT JOIN sluice_data.${stream} d ON d.event_id = v.event_id
 ORDER BY v.line`;

interface Verdict {
  line: string;
  postgres_takes: boolean;
  stored: boolean;
  got_payload: string | null;
  want_payload: string | null;
  got_amount: string | null;
  want_amount: string | null;
  got_user_id: string | null;
  want_user_id: string | null;
  rejected: string | null;
}

/** Payload member values, each as JSON text exactly as a producer would send it. */
const VALUES: readonly string[] = [
  // integers past 2^53, and many digits
  '12345678901234567890', '-12345678901234567890', '9007199254740993', '123456789012345678901234567890123',
  '100000000000000000000000000000000000001',
  // decimals, trailing zeros, 1.0 vs 1
  '1.0', '1', '1.50', '0.10', '0.1', '0.30000000000000004', '3.14159265358979323846264338327950288419716939937510',
  '0.000000000000000000000000000001', '123456789.123456789123456789',
  // -0 and friends
  '-0', '-0.0', '0.0', '0e5', '-0e-5',
  // exponents, both cases and signs
  '1e2', '1E2', '1e+2', '1E+2', '1e-2', '1E-2', '1.5e-10', '1e-7', '1e21', '123.456e-5', '-2.5E+30',
  // beyond a double, and at Postgres numeric's limits
  '1e400', '1E-400', '-1e400', '1.7976931348623157e309', '5e-324', '4.9e-325', '1e131071', '1e-16383',
  '1e131072', '1e-16384', '0.0e-20000',
  // strings: escapes, non-BMP as raw UTF-8 and as a surrogate-pair escape, digits inside strings
  String.raw`"\u0041\/\"\\\n\t\b\f\r"`, '"😀 raw"', String.raw`"\ud83d\ude00 escaped"`, String.raw`"\u00e9 é \u20ac"`,
  '"1.0"', String.raw`"quote \" 1.0 \\"`, String.raw`"\\"`, '""',
  // strings Postgres jsonb refuses
  String.raw`"\u0000"`, String.raw`"nul \u0000 inside"`, String.raw`"\ud800"`, String.raw`"lone \udc00 low"`, String.raw`"\ud83d"`,
  // nesting, empties, literals
  '[1.0,[2.50,[12345678901234567890]],{"a":{"b":-0,"c":1e400}}]', '{}', '[]', '[{},[],{"x":[]}]', '{"":1.0}',
  'true', 'false', 'null', '[null,true,"x",1,1.0]',
];

/** Whole lines (after the envelope) for key-level awkwardness and declared columns. */
const MEMBERS: readonly string[] = [
  // duplicate keys: the last wins, in JSON.parse and in jsonb
  '"d":1,"d":1.0', '"d":1.0,"d":1', '"d":{"x":1},"d":[2.50]', '"amount":1,"amount":2.50', '"v":"a","v":12345678901234567890',
  // unicode, escaped and odd keys
  '"é":1.0,"😀":2,"\\u00e9x":3,"\\ud83d\\ude00y":4.0', '"__proto__":{"x":1.0}', '"constructor":1.0,"toString":"x"', '"a\\"b":1.0,"a\\\\":2',
  // whitespace between tokens
  ' "w" : [ 1.0 , 2 ] , "x" :\t{ "y" : -0 } ',
  // declared columns: numeric keeps every digit, bigint is exact or refused
  '"amount":12345678901234567890.5', '"amount":1e400', '"amount":-0', '"amount":1.50', '"amount":0.1', '"amount":1E-400',
  '"amount":123', '"amount":null', '"amount":1e131072',
  '"user_id":9007199254740993', '"user_id":9223372036854775807', '"user_id":-9223372036854775808', '"user_id":42',
  '"user_id":9223372036854775808', '"user_id":-9223372036854775809', '"user_id":1.5', '"user_id":12345678901234567890123',
  '"user_id":null', '"amount":98765432109876543210.123456789,"user_id":9007199254740993,"rest":1.0',
];

function corpusLines(): Array<{ id: string; line: string }> {
  const at = new Date().toISOString();
  const bodies = [...VALUES.map((v) => `"v":${v}`), ...MEMBERS];
  return bodies.map((body) => {
    const id = randomUUID();
    return { id, line: `{"event_id":"${id}","occurred_at":"${at}",${body}}` };
  });
}

async function createStream(name: string): Promise<void> {
  await db.query(`SELECT sluice.create_stream($1, $2::jsonb)`, [name, COLUMNS]);
}

async function remember(stream: string, lines: ReadonlyArray<{ id: string; line: string }>): Promise<void> {
  await db.query(
    `INSERT INTO public.fidelity_source (stream, event_id, line) SELECT $1, * FROM unnest($2::uuid[], $3::text[])`,
    [stream, lines.map((l) => l.id), lines.map((l) => l.line)],
  );
}

/** Wait until every source line is either durable or rejected, then compare each with Postgres. */
async function expectFaithful(stream: string, lineCount: number): Promise<Verdict[]> {
  const rows = await waitForSettled(stream, lineCount);
  expect(rows).toHaveLength(lineCount);
  const wrong = rows.filter((r) =>
    r.postgres_takes
      ? !r.stored || r.rejected !== null || r.got_payload !== r.want_payload || r.got_amount !== r.want_amount || r.got_user_id !== r.want_user_id
      : r.stored || r.rejected === null,
  );
  // One readable list of every mismatch (line, what Postgres keeps, what sluice did).
  expect(wrong).toEqual([]);
  // The corpus really exercises both outcomes.
  expect(rows.filter((r) => r.postgres_takes).length).toBeGreaterThan(50);
  expect(rows.filter((r) => !r.postgres_takes).length).toBeGreaterThanOrEqual(10);
  return rows;
}

beforeAll(async () => {
  await db.query(ORACLE_FUNCTIONS);
  await startWorker(db, { concurrency: 2, drainers: 1 });
});

describe('payload fidelity: Postgres jsonb is the oracle', () => {
  it('sluice ingest FILE: every line stored as Postgres would keep it, or rejected where Postgres refuses it', async () => {
    await createStream('fid_file');
    const lines = corpusLines();
    await remember('fid_file', lines);
    const file = path.join(os.tmpdir(), `sluice-fidelity-${process.pid}-${randomUUID()}.ndjson`);
    await writeFile(file, lines.map((l) => l.line).join('\n') + '\n');
    try {
      const result = await runCli(['ingest', file, '--stream', 'fid_file', '--json'], { env: { DATABASE_URL: db.url } });
      expect(result.code, result.stderr).toBe(0);
    } finally {
      await unlink(file).catch(() => undefined);
    }
    const rows = await expectFaithful('fid_file', lines.length);
    // Spot checks that read as the issue does.
    const payloadOf = (needle: string) => rows.find((r) => r.line.includes(needle))?.got_payload;
    expect(payloadOf('"v":12345678901234567890}')).toBe('{"v": 12345678901234567890}');
    expect(payloadOf('"v":1.0}')).toBe('{"v": 1.0}');
    expect(rows.find((r) => r.line.includes('"amount":12345678901234567890.5'))?.got_amount).toBe('12345678901234567890.5');
    expect(rows.find((r) => r.line.includes('"user_id":9007199254740993}'))?.got_user_id).toBe('9007199254740993');
  });

  it('SQL add_job(sluice_ingest), single and batch jobs: the same, although node-pg parses job payloads with JSON.parse', async () => {
    await createStream('fid_sql');
    const lines = corpusLines();
    await remember('fid_sql', lines);
    // Payload text built by hand, so every token reaches the jobs table as written.
    const events = (part: ReadonlyArray<{ line: string }>) => `{"stream":"fid_sql","events":[${part.map((l) => l.line).join(',')}]}`;
    const third = Math.ceil(lines.length / 3);
    const payloads = [
      events(lines.slice(0, third)),
      `[${events(lines.slice(third, 2 * third))},${events(lines.slice(2 * third, 2 * third + 5))}]`,
      ...lines.slice(2 * third + 5).map((l) => events([l])),
    ];
    for (const payload of payloads) await db.query(`SELECT graphile_worker.add_job('sluice_ingest', $1::json)`, [payload]);
    await waitFor(
      async () => (await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM graphile_worker.jobs WHERE task_identifier = 'sluice_ingest'`)).rows[0]?.n,
      (n) => n === 0,
      { what: 'all sluice_ingest jobs completed' },
    );
    await expectFaithful('fid_sql', lines.length);
  });

  it('TS Ingestor: bigints and awkward strings are kept as Postgres keeps their JSON text', async () => {
    await createStream('fid_ts');
    const at = new Date().toISOString();
    // [event fields, the same fields as the JSON text a producer would mean]
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ v: 12345678901234567890n }, '"v":12345678901234567890'],
      [{ v: -(2n ** 100n) }, `"v":${-(2n ** 100n)}`],
      [{ user_id: 9007199254740993n, amount: 123456789012345678901234567890n }, '"user_id":9007199254740993,"amount":123456789012345678901234567890'],
      [{ user_id: 2n ** 63n }, `"user_id":${2n ** 63n}`],
      [{ v: { deep: [1n, 2.5, -0, 'A', [10n ** 40n]] } }, `"v":{"deep":[1,2.5,-0,"A",[${10n ** 40n}]]}`],
      [{ v: 0.1, w: 1e21, x: 5e-324, y: Number.MAX_VALUE }, '"v":0.1,"w":1e21,"x":5e-324,"y":1.7976931348623157e308'],
      [{ v: '😀 \ud83d\ude00 \u00e9 "q" \\ \n' }, String.raw`"v":"😀 \ud83d\ude00 \u00e9 \"q\" \\ \n"`],
      [{ v: 'lone \ud800' }, String.raw`"v":"lone \ud800"`],
      [{ v: 'nul \u0000' }, String.raw`"v":"nul \u0000"`],
      [{ constructor: 1n, toString: 'x' }, '"constructor":1,"toString":"x"'],
    ];
    const ids = cases.map(() => randomUUID());
    const events = cases.map(([fields], i) => ({ event_id: ids[i], occurred_at: at, ...fields }));
    const lines = cases.map(([, text], i) => ({ id: ids[i] as string, line: `{"event_id":"${ids[i]}","occurred_at":"${at}",${text}}` }));
    await remember('fid_ts', lines);
    const ingestor = await createIngestor({ connectionString: db.url, stream: 'fid_ts', ack: 'staged' });
    try {
      const receipt = await ingestor.ingest(events);
      expect(receipt.accepted + receipt.rejected).toBe(events.length);
    } finally {
      await ingestor.close();
    }
    const rows = await waitForSettled('fid_ts', lines.length);
    expect(rows).toHaveLength(lines.length);
    const wrong = rows.filter((r) =>
      r.postgres_takes ? !r.stored || r.got_payload !== r.want_payload || r.got_amount !== r.want_amount || r.got_user_id !== r.want_user_id : r.stored || r.rejected === null,
    );
    expect(wrong).toEqual([]);
  });
});

describe('a declared column named like an Object.prototype member (constructor)', () => {
  const STREAM_COLUMNS = '[{"name":"constructor","type":"text"},{"name":"n","type":"bigint"}]';

  async function rowsOf(stream: string, count: number): Promise<Array<{ event_id: string; constructor: string | null; n: string | null; payload: string }>> {
    await waitFor(async () => ({ staged: await stagedCount(db, stream), durable: (await db.query(`SELECT 1 FROM sluice_data.${stream}`)).rowCount }), (s) => s.staged === 0 && s.durable === count, {
      what: `${count} rows durable in ${stream}`,
      timeoutMs: 60_000,
    });
    const { rows } = await db.query(`SELECT event_id::text, "constructor", n::text, payload::text FROM sluice_data.${stream} AS d ORDER BY d.n`);
    return rows as Array<{ event_id: string; constructor: string | null; n: string | null; payload: string }>;
  }

  function events(count: number): Array<Record<string, unknown>> {
    const at = new Date().toISOString();
    // Every other event lacks the key; none may be rejected for it.
    return Array.from({ length: count }, (_, i) => ({ event_id: randomUUID(), occurred_at: at, n: i, ...(i % 2 === 0 ? { constructor: `c${i}` } : { other: i }) }));
  }

  it('TS Ingestor: events without the key store NULL there, not Object.prototype.constructor', async () => {
    await db.query(`SELECT sluice.create_stream('ctor_ts', $1::jsonb)`, [STREAM_COLUMNS]);
    const sent = events(40);
    const ingestor = await createIngestor({ connectionString: db.url, stream: 'ctor_ts', ack: 'staged' });
    try {
      const receipt = await ingestor.ingest(sent);
      expect(receipt).toMatchObject({ accepted: 40, rejected: 0 });
    } finally {
      await ingestor.close();
    }
    const rows = await rowsOf('ctor_ts', 40);
    expect(rows.map((r) => r.constructor)).toEqual(sent.map((e, i) => (i % 2 === 0 ? `c${i}` : null)));
    expect(rows.filter((r) => r.constructor === null).every((r) => /^\{"other": \d+\}$/.test(r.payload))).toBe(true);
  });

  it('sluice ingest - (NDJSON on stdin): the same', async () => {
    await db.query(`SELECT sluice.create_stream('ctor_cli', $1::jsonb)`, [STREAM_COLUMNS]);
    const sent = events(40);
    const result = await runCli(['ingest', '-', '--stream', 'ctor_cli', '--json'], {
      env: { DATABASE_URL: db.url },
      input: sent.map((e) => JSON.stringify(e)).join('\n'),
    });
    expect(result.code, result.stderr).toBe(0);
    expect(JSON.parse(result.stdout)).toMatchObject({ accepted: 40, rejected: 0 });
    const rows = await rowsOf('ctor_cli', 40);
    expect(rows.map((r) => r.constructor)).toEqual(sent.map((e, i) => (i % 2 === 0 ? `c${i}` : null)));
    const { rows: rejects } = await db.query(`SELECT reason FROM sluice.rejects WHERE stream = 'ctor_cli'`);
    expect(rejects).toEqual([]);
  });
});

async function waitForSettled(stream: string, lineCount: number): Promise<Verdict[]> {
  await waitFor(
    async () => {
      const { rows } = await db.query<Verdict>(COMPARE(stream), [stream]);
      return { settled: rows.filter((r) => r.stored || r.rejected !== null).length, staged: await stagedCount(db, stream) };
    },
    (s) => s.settled === lineCount && s.staged === 0,
    { what: `all ${lineCount} lines of ${stream} durable or rejected`, timeoutMs: 60_000 },
  );
  return (await db.query<Verdict>(COMPARE(stream), [stream])).rows;
}
