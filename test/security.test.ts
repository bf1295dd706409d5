/**
 * Identifiers from users never reach SQL unquoted, values are always
 * parameters or escaped: bad stream names are refused by every front door
 * (CLI, TypeScript client, SQL job, SQL function) with a sentinel table `y`
 * surviving every attempt; --index specs go through a closed grammar; event
 * values full of SQL and COPY metacharacters round-trip byte for byte; and
 * passwords (DATABASE_URL's, the embedded server's) never reach CLI output.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { redactUrl } from '../src/config.js';
import { SluiceError } from '../src/errors.js';
import { createIngestor } from '../src/ingest/create-ingestor.js';
import { parseIndexSpec } from '../src/streams/index-spec.js';
import { createTestDatabase } from './helpers/database.js';
import { embeddedHomes } from './helpers/embedded.js';
import { runCli, type CliResult } from './helpers/cli.js';
import { waitFor } from './helpers/wait.js';
import { startWorker } from './helpers/worker.js';

const db = await createTestDatabase('security');

const BAD_STREAM_NAMES = ['x"; drop table y; --', 'Events', 'a-b', 'a'.repeat(49), 'foo_all', 'foo_p202611', ''];

function sluice(args: string[], input?: string): Promise<CliResult> {
  return runCli(args, { env: { DATABASE_URL: db.url }, ...(input === undefined ? {} : { input }) });
}

/** Run CLI invocations a few at a time (each is a Node process). */
async function inParallel<T, R>(items: readonly T[], fn: (item: T) => Promise<R>, width = 4): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(width, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        results[i] = await fn(items[i] as T);
      }
    }),
  );
  return results;
}

/** The sentinel: table y exists and still holds its one row. */
async function expectSentinelIntact(): Promise<void> {
  const { rows } = await db.query<{ n: number | null }>(
    `SELECT CASE WHEN to_regclass('public.y') IS NULL THEN NULL ELSE (SELECT count(*)::int FROM public.y) END AS n`,
  );
  expect(rows[0]?.n, 'sentinel table y').toBe(1);
}

async function streamNames(): Promise<string[]> {
  const { rows } = await db.query<{ name: string }>('SELECT name FROM sluice.streams ORDER BY name');
  return rows.map((r) => r.name);
}

async function relationsIn(schemas: string[]): Promise<string[]> {
  const { rows } = await db.query<{ name: string }>(
    `SELECT n.nspname || '.' || c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = ANY ($1) ORDER BY 1`,
    [schemas],
  );
  return rows.map((r) => r.name);
}

beforeAll(async () => {
  await db.query(`CREATE TABLE public.y (id int); INSERT INTO public.y VALUES (1)`);
});

describe('stream names from users', () => {
  it('are refused by sluice stream create and sluice ingest --stream, with a clear message', async () => {
    const streamsBefore = await streamNames();
    const tablesBefore = await relationsIn(['sluice_staging', 'sluice_data', 'public']);
    const event = JSON.stringify({ event_id: randomUUID(), occurred_at: new Date().toISOString() });
    const runs = await inParallel(
      BAD_STREAM_NAMES.flatMap((name) => [
        { name, args: ['stream', 'create', name, '--column', 'user_id:bigint'] },
        { name, args: ['ingest', '-', '--stream', name], input: `${event}\n` },
      ]),
      async (run) => ({ ...run, result: await sluice(run.args, run.input) }),
    );
    for (const { name, args, result } of runs) {
      const what = `${args.slice(0, 2).join(' ')} ${JSON.stringify(name)}`;
      expect(result.code, what).toBe(1);
      expect(result.stderr, what).toMatch(/invalid stream name/);
      expect(result.stderr, what).not.toMatch(/syntax error|at .*\.js:\d+/);
    }
    await expectSentinelIntact();
    expect(await streamNames()).toEqual(streamsBefore);
    expect(await relationsIn(['sluice_staging', 'sluice_data', 'public'])).toEqual(tablesBefore);
  });

  it('are refused by createIngestor', async () => {
    for (const name of BAD_STREAM_NAMES) {
      const attempt = createIngestor({ connectionString: db.url, stream: name });
      await expect(attempt, JSON.stringify(name)).rejects.toBeInstanceOf(SluiceError);
      await expect(attempt, JSON.stringify(name)).rejects.toMatchObject({ code: 'invalid_stream_name' });
    }
    await expectSentinelIntact();
  });

  it('are refused by the SQL function sluice.create_stream', async () => {
    const streamsBefore = await streamNames();
    for (const name of BAD_STREAM_NAMES) {
      const attempt = db.query(`SELECT sluice.create_stream($1, '[{"name":"user_id","type":"bigint"}]'::jsonb)`, [name]);
      await expect(attempt, JSON.stringify(name)).rejects.toMatchObject({ code: '42602' }); // invalid_name
      await expect(attempt, JSON.stringify(name)).rejects.toThrow(/invalid stream name/);
    }
    await expectSentinelIntact();
    expect(await streamNames()).toEqual(streamsBefore);
  });

  it('sluice.create_stream refuses malicious column names, types and options', async () => {
    const streamsBefore = await streamNames();
    const attempts: Array<{ columns: unknown; options?: unknown; code: string }> = [
      { columns: [{ name: 'x"; drop table y; --', type: 'text' }], code: '42602' },
      { columns: [{ name: 'X', type: 'text' }], code: '42602' },
      { columns: [{ name: 'payload', type: 'text' }], code: '42602' },
      { columns: [{ name: 'x', type: 'int; drop table y' }], code: '42601' }, // ::regtype parses a type name only: syntax error
      { columns: [{ name: 'x', type: 'y' }], code: '22023' }, // y's row type: a real type, not an allowed one
      { columns: [{ name: 'x', type: 'money' }], code: '22023' },
      { columns: [], options: { premake_months: '1; drop table y' }, code: '22P02' },
    ];
    for (const a of attempts) {
      const what = JSON.stringify(a);
      await expect(
        db.query('SELECT sluice.create_stream($1, $2::jsonb, $3::jsonb)', ['sql_cols', JSON.stringify(a.columns), JSON.stringify(a.options ?? {})]),
        what,
      ).rejects.toMatchObject({ code: a.code });
      await expectSentinelIntact();
    }
    expect(await streamNames()).toEqual(streamsBefore);
  });

  it('make an add_job(sluice_ingest) fail permanently, naming the problem', async () => {
    await startWorker(db, { concurrency: 2, drainers: 1 });
    const ids: string[] = [];
    for (const name of BAD_STREAM_NAMES) {
      const payload = { stream: name, events: [{ event_id: randomUUID(), occurred_at: new Date().toISOString() }] };
      const { rows } = await db.query<{ id: string }>(`SELECT (graphile_worker.add_job('sluice_ingest', $1::json)).id::text AS id`, [
        JSON.stringify(payload),
      ]);
      ids.push(rows[0]?.id as string);
    }
    const jobs = await waitFor(
      async () =>
        (
          await db.query<{ id: string; attempts: number; max_attempts: number; last_error: string | null; locked_at: Date | null }>(
            `SELECT id::text, attempts, max_attempts, last_error, locked_at FROM graphile_worker.jobs WHERE id = ANY ($1::bigint[])`,
            [ids],
          )
        ).rows,
      (rows) => rows.length === ids.length && rows.every((r) => r.last_error !== null && r.locked_at === null),
      { what: 'every bad-name job to fail' },
    );
    for (const job of jobs) {
      expect(job.attempts, job.id).toBe(job.max_attempts); // permanent: no retry is scheduled
      expect(job.last_error, job.id).toMatch(/invalid stream name/);
    }
    await expectSentinelIntact();
  });
});

describe('--index specs', () => {
  const COLUMNS = ['--column', 'user_id:bigint', '--column', 'kind:text'];

  it('injection attempts are refused or end up as a harmless literal', async () => {
    const attempts = [
      { stream: 'inj_a', spec: 'user_id); drop table y; --' },
      { stream: 'inj_b', spec: 'user_id WHERE 1=1; drop table y' },
      { stream: 'inj_c', spec: "user_id WHERE kind = 'a'' or 1=1 --'" },
    ];
    const results = await inParallel(attempts, (a) => sluice(['stream', 'create', a.stream, ...COLUMNS, '--index', a.spec]));
    // The first two are not in the grammar at all.
    for (const i of [0, 1]) {
      expect(results[i]?.code, attempts[i]?.spec).toBe(1);
      expect(results[i]?.stderr, attempts[i]?.spec).toMatch(/invalid --index/);
    }
    expect(await streamNames()).not.toContain('inj_a');
    expect(await streamNames()).not.toContain('inj_b');

    // The third is a string literal containing a quote: refused, or kept as exactly that literal.
    const third = results[2] as CliResult;
    if (third.code === 0) {
      const { rows } = await db.query<{ predicate: string }>(
        `SELECT pg_get_expr(x.indpred, x.indrelid) AS predicate
           FROM pg_index x WHERE x.indrelid = 'sluice_data.inj_c'::regclass AND x.indpred IS NOT NULL`,
      );
      expect(rows.map((r) => r.predicate)).toEqual([`(kind = 'a'' or 1=1 --'::text)`]);
    } else {
      expect(third.stderr).toMatch(/invalid --index/);
      expect(await streamNames()).not.toContain('inj_c');
    }
    await expectSentinelIntact();
  });

  it('sluice.add_stream_index refuses column names that are not the stream\'s columns', async () => {
    await db.query(`SELECT sluice.create_stream('idx_sql', '[{"name":"user_id","type":"bigint"}]'::jsonb)`);
    for (const column of ['user_id); drop table y; --', 'user_id"', 'nope']) {
      await expect(db.query(`SELECT sluice.add_stream_index('idx_sql', ARRAY[$1::text])`, [column]), column).rejects.toMatchObject({
        code: '42703', // undefined_column
      });
    }
    await expectSentinelIntact();
  });

  describe('parseIndexSpec', () => {
    it('parses columns and renders predicates with quoted identifiers and escaped literals', () => {
      expect(parseIndexSpec('user_id')).toEqual({ columns: ['user_id'], predicate: undefined });
      expect(parseIndexSpec(' user_id , kind ')).toEqual({ columns: ['user_id', 'kind'], predicate: undefined });
      expect(parseIndexSpec('occurred_at, event_id')).toEqual({ columns: ['occurred_at', 'event_id'], predicate: undefined });
      expect(parseIndexSpec("user_id WHERE kind = 'buy'")).toEqual({ columns: ['user_id'], predicate: `"kind" = 'buy'` });
      expect(parseIndexSpec("user_id where kind != 'x'").predicate).toBe(`"kind" <> 'x'`);
      expect(parseIndexSpec("kind WHERE kind NOT IN ('a', 'b''c')").predicate).toBe(`"kind" NOT IN ('a', 'b''c')`);
      expect(parseIndexSpec('user_id WHERE kind IS NOT NULL').predicate).toBe(`"kind" IS NOT NULL`);
      expect(parseIndexSpec('user_id WHERE kind is null').predicate).toBe(`"kind" IS NULL`);
      expect(parseIndexSpec("user_id WHERE ((kind = 'a' OR kind = 'b') AND (user_id > 10 OR flag = true))").predicate).toBe(
        `(("kind" = 'a' OR "kind" = 'b') AND ("user_id" > 10 OR "flag" = TRUE))`,
      );
    });

    it('rendered predicates mean what the spec says when Postgres evaluates them', async () => {
      const cases: Array<{ spec: string; rows: Array<[[string | null, number | null, string | null, boolean | null], boolean | null]> }> = [
        { spec: "user_id WHERE kind = 'a''b\\c'", rows: [[["a'b\\c", 1, null, null], true], [["a'b", 1, null, null], false]] },
        { spec: "user_id WHERE kind NOT IN ('x', 'y')", rows: [[['x', 1, null, null], false], [['z', 1, null, null], true]] },
        { spec: 'user_id WHERE kind IS NOT NULL', rows: [[[null, 1, null, null], false], [['', 1, null, null], true]] },
        {
          spec: "user_id WHERE NOT (kind = 'a' OR (user_id >= -5 AND score < 1.5e2)) AND flag = FALSE",
          rows: [
            [['b', -10, '0', false], true],
            [['b', 0, '100', false], false],
            [['a', -10, '0', false], false],
            [['b', -10, '0', true], false],
          ],
        },
        { spec: "user_id WHERE kind = 'a' OR kind = 'b' AND user_id = 1", rows: [[['a', 2, null, null], true], [['b', 2, null, null], false], [['b', 1, null, null], true]] },
      ];
      for (const { spec, rows } of cases) {
        const { predicate } = parseIndexSpec(spec);
        expect(predicate, spec).toBeDefined();
        for (const [values, expected] of rows) {
          const { rows: out } = await db.query<{ hit: boolean | null }>(
            `SELECT (${predicate}) AS hit FROM (VALUES ($1::text, $2::bigint, $3::numeric, $4::boolean)) AS t(kind, user_id, score, flag)`,
            values,
          );
          expect(out[0]?.hit, `${spec} with ${JSON.stringify(values)}`).toBe(expected);
        }
      }
    });

    it('refuses specs outside the grammar', () => {
      const invalid = [
        '',
        '   ',
        'user_id,',
        '"user_id"',
        'User_id',
        'user_id; drop table y',
        'user_id WHERE',
        "user_id WHERE (kind = 'a'",
        "user_id WHERE ((kind = 'a') OR (kind = 'b')",
        "user_id WHERE kind = 'a')",
        "user_id WHERE kind = 'unterminated",
        "user_id WHERE kind = 'a'; drop table y",
        "user_id WHERE kind = 'a' -- comment",
        "user_id WHERE kind = 'a' /* comment */",
        'user_id WHERE kind = other_column',
        'user_id WHERE kind = $1',
        "user_id WHERE kind ~ 'a'",
        "user_id WHERE kind NOT = 'a'",
        'user_id WHERE kind IN ()',
        "user_id WHERE kind IN ('a' 'b')",
        "user_id WHERE lower(kind) = 'a'",
        "user_id WHERE Kind = 'a'",
        "user_id WHERE kind = E'\\x41'",
        'user_id WHERE kind IS NULL OR',
        'user_id WHERE null IS NULL',
        'user_id WHERE true',
        "user_id WHERE kind = 'a' kind = 'b'",
        'user_id WHERE 1=1',
      ];
      for (const spec of invalid) {
        let thrown: unknown;
        try {
          parseIndexSpec(spec);
        } catch (err) {
          thrown = err;
        }
        expect(thrown, JSON.stringify(spec)).toBeInstanceOf(SluiceError);
        expect((thrown as SluiceError).code, JSON.stringify(spec)).toBe('invalid_index');
      }
    });
  });
});

describe('event values', () => {
  const TRICKY = [
    "'); drop table y; --",
    "Robert'); DROP TABLE students;--",
    `it's "quoted" \`back\``,
    'C:\\path\\to\\file \\N \\. \\\\',
    '\\N',
    '\\.',
    '\n\\.\n',
    'tab\there\nnewline\r\ncrlf\rcr',
    '$$ dollar $$ $tag$ %s %I %L ${x} ?',
    'ünïcødé — 日本語 🎉 \u2028\u2029',
    'control \u0001\u0007\u001b\u007f',
    '    ',
    '',
  ];

  it('containing SQL and COPY metacharacters round-trip byte for byte (TypeScript client and SQL job)', async () => {
    await db.query(
      `SELECT sluice.create_stream('roundtrip', '[{"name":"note","type":"text"},{"name":"label","type":"varchar"},{"name":"doc","type":"jsonb"}]'::jsonb)`,
    );
    await startWorker(db, { concurrency: 2, drainers: 1 });
    const make = () =>
      TRICKY.map((s) => ({
        event_id: randomUUID(),
        occurred_at: new Date().toISOString(),
        note: s,
        label: s,
        doc: { v: s, [s]: [s] },
        extra: s,
        [`key ${s}`]: s,
      }));
    const viaClient = make();
    const viaJob = make();

    const ingestor = await createIngestor({ connectionString: db.url, stream: 'roundtrip', ack: 'durable', drainSlots: 1 });
    const receipt = await ingestor.ingest(viaClient);
    await ingestor.close();
    expect(receipt.rejections).toEqual([]);

    const { rows: job } = await db.query<{ id: string }>(`SELECT (graphile_worker.add_job('sluice_ingest', $1::json)).id::text AS id`, [
      JSON.stringify({ stream: 'roundtrip', events: viaJob, ack: 'durable' }),
    ]);
    await waitFor(
      async () => (await db.query(`SELECT last_error FROM graphile_worker.jobs WHERE id = $1::bigint`, [job[0]?.id])).rows,
      (rows) => rows.length === 0,
      { what: 'the sluice_ingest job to complete' },
    );

    const { rows } = await db.query<{
      event_id: string;
      note: string;
      label: string;
      doc: unknown;
      payload: Record<string, unknown>;
      note_hex: string;
    }>(`SELECT event_id::text, note, label, doc, payload, encode(convert_to(note, 'UTF8'), 'hex') AS note_hex FROM sluice_data.roundtrip`);
    const byId = new Map(rows.map((r) => [r.event_id, r]));
    expect(rows).toHaveLength(viaClient.length + viaJob.length);
    for (const e of [...viaClient, ...viaJob]) {
      const row = byId.get(e.event_id);
      const what = JSON.stringify(e.note);
      expect(row, what).toBeDefined();
      expect(row?.note, what).toBe(e.note);
      expect(row?.note_hex, what).toBe(Buffer.from(e.note, 'utf8').toString('hex'));
      expect(row?.label, what).toBe(e.label);
      expect(row?.doc, what).toEqual(e.doc);
      expect(row?.payload, what).toEqual({ extra: e.extra, [`key ${e.note}`]: e.note });
    }
    await expectSentinelIntact();
    const rejects = await db.query(`SELECT reason, message FROM sluice.rejects WHERE stream = 'roundtrip'`);
    expect(rejects.rows).toEqual([]);
  });
});

describe('passwords', () => {
  const PASSWORD = 'S3cretPassw0rd';
  const role = `sluice_secret_user_${randomBytes(3).toString('hex')}`;
  // As root the embedded cluster lives under /var/lib/sluice/clusters: embeddedHomes removes it too.
  const homes = embeddedHomes();
  let home: string | undefined;

  afterAll(async () => {
    await db.query(`DROP ROLE IF EXISTS ${role}`).catch(() => undefined);
    await homes.cleanUp();
  });

  it('redactUrl masks the password, encoded or not', () => {
    for (const password of [PASSWORD, 'p@ss:w/rd%?#&=']) {
      const url = `postgres://someone:${encodeURIComponent(password)}@db.example.com:6543/app?sslmode=require`;
      const redacted = redactUrl(url);
      expect(redacted).not.toContain(password);
      expect(redacted).not.toContain(encodeURIComponent(password));
      expect(redacted).toContain('someone');
      expect(redacted).toContain('db.example.com:6543/app');
    }
    expect(redactUrl(`postgres://someone:${PASSWORD}@[bad`)).not.toContain(PASSWORD);
  });

  it('never appear in CLI output: DATABASE_URL passwords and the embedded server password', async () => {
    await db.query(`CREATE ROLE ${role} LOGIN PASSWORD '${PASSWORD}'`);
    await db.query(`GRANT pg_read_all_data TO ${role}`);
    const withPassword = new URL(db.url);
    withPassword.username = role;
    withPassword.password = PASSWORD;
    const url = withPassword.toString();
    const unreachable = `postgres://${role}:${PASSWORD}@127.0.0.1:1/nowhere`;
    // The test server's own password, if it has one (the embedded one does).
    const serverPassword = decodeURIComponent(new URL(db.url).password);

    home = await homes.tempDir('security');
    const embedded = runCli(['migrate', '--home', path.join(home, 'home'), '--log-level', 'debug'], { cwd: home, timeoutMs: 120_000 });

    const runs = await inParallel(
      [
        { env: { DATABASE_URL: url }, args: ['status', '--log-level', 'debug'] },
        { env: { DATABASE_URL: url }, args: ['status', '--json', '--log-level', 'trace'] },
        { env: {}, args: ['status', '--database-url', url, '--log-level', 'debug'] },
        { env: { DATABASE_URL: url }, args: ['stream', 'create', 'Bad-Name', '--log-level', 'debug'] },
        { env: { DATABASE_URL: unreachable }, args: ['status', '--log-level', 'debug'] },
        { env: { DATABASE_URL: db.url }, args: ['status', '--log-level', 'debug'] },
      ],
      async (run) => ({ ...run, result: await runCli(run.args, { env: run.env }) }),
      3,
    );
    for (const { args, result } of runs) {
      const what = args.join(' ');
      const output = result.stdout + result.stderr;
      expect(output, what).not.toContain(PASSWORD);
      if (serverPassword) expect(output, what).not.toContain(serverPassword);
    }
    // The successful ones really ran with the password-bearing URL.
    expect(runs[0]?.result.code, runs[0]?.result.stderr).toBe(0);
    expect(runs[0]?.result.stdout).toMatch(/sluice status at/);
    expect(runs[1]?.result.code).toBe(0);
    expect(JSON.parse(runs[1]?.result.stdout ?? '').streams.length).toBeGreaterThan(0);
    expect(runs[2]?.result.code).toBe(0);
    expect(runs[3]?.result.code).toBe(1);
    expect(runs[4]?.result.code).toBe(1);
    expect(runs[5]?.result.code).toBe(0);

    const migrated = await embedded;
    const embeddedPassword = readFileSync(path.join(home, 'home', 'password'), 'utf8').trim();
    expect(embeddedPassword.length).toBeGreaterThanOrEqual(16);
    expect(migrated.code, migrated.stderr.slice(-2000)).toBe(0);
    expect(migrated.stderr).toMatch(/started embedded Postgres at postgres:\/\/postgres@127\.0\.0\.1:\d+\/sluice/);
    expect(migrated.stdout + migrated.stderr).not.toContain(embeddedPassword);
  });
});
