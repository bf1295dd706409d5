/**
 * `sluice stream create|list|drop` through the real CLI: declared columns get
 * their types in both tables, --index specs become (partial) btree indexes,
 * bad names and types are refused with a message saying what is allowed, drop
 * needs --yes and keeps the rejects; events then fill declared columns, and
 * keys nobody declared land in payload.
 */
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { drainUntilEmpty } from '../src/drain/drain-loop.js';
import { createIngestor } from '../src/ingest/create-ingestor.js';
import { silentLogger } from '../src/logger.js';
import { SUPPORTED_COLUMN_TYPES } from '../src/codec/column-types.js';
import { requireStream } from '../src/streams/registry.js';
import { createTestDatabase } from './helpers/database.js';
import { runCli, type CliResult, stderrMessages } from './helpers/cli.js';

const db = await createTestDatabase('streams_cli');

const drainClient = new pg.Client({ connectionString: db.url, application_name: 'sluice-test/drain' });
drainClient.on('error', () => undefined);
await drainClient.connect();
afterAll(async () => {
  await drainClient.end().catch(() => undefined);
});

function sluice(...args: string[]): Promise<CliResult> {
  return runCli(args, { env: { DATABASE_URL: db.url } });
}

async function relationExists(qualified: string): Promise<boolean> {
  const { rows } = await db.query<{ oid: string | null }>('SELECT to_regclass($1)::text AS oid', [qualified]);
  return rows[0]?.oid !== null;
}

async function columnTypes(schema: string, table: string): Promise<Record<string, string>> {
  const { rows } = await db.query<{ attname: string; type: string }>(
    `SELECT a.attname, format_type(a.atttypid, a.atttypmod) AS type
       FROM pg_attribute a
      WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped`,
    [`${schema}.${table}`],
  );
  return Object.fromEntries(rows.map((r) => [r.attname, r.type]));
}

async function streamNames(): Promise<string[]> {
  const { rows } = await db.query<{ name: string }>('SELECT name FROM sluice.streams ORDER BY name');
  return rows.map((r) => r.name);
}

const CREATE_CLICKS = ['stream', 'create', 'clicks', '--column', 'user_id:bigint', '--column', 'kind:text', '--index', 'user_id', '--index', "user_id WHERE kind = 'buy'"];

describe('sluice stream (CLI)', () => {
  it('stream create makes staging and durable tables with the declared columns, typed, and the indexes', async () => {
    const result = await sluice(...CREATE_CLICKS);
    expect(result.stderr).not.toMatch(/error/i);
    expect(result.code).toBe(0);
    expect(result.stderr).toMatch(/created stream clicks/);

    expect(await relationExists('sluice_staging.clicks')).toBe(true);
    expect(await relationExists('sluice_data.clicks')).toBe(true);
    for (const schema of ['sluice_staging', 'sluice_data']) {
      const types = await columnTypes(schema, 'clicks');
      expect(types).toMatchObject({ event_id: 'uuid', occurred_at: 'timestamp with time zone', user_id: 'bigint', kind: 'text', payload: 'jsonb' });
    }

    const { rows: indexes } = await db.query<{ indexname: string; indexdef: string }>(
      `SELECT indexname, indexdef FROM pg_indexes
        WHERE schemaname = 'sluice_data' AND tablename = 'clicks' AND indexdef LIKE '%btree (user_id)%'`,
    );
    expect(indexes).toHaveLength(2);
    const partial = indexes.filter((i) => / WHERE /.test(i.indexdef));
    expect(partial).toHaveLength(1);
    expect(partial[0]?.indexdef).toMatch(/WHERE \(kind = 'buy'::text\)/);
    // Declared on the partitioned parent: every partition has both as well.
    const { rows: perPartition } = await db.query<{ tablename: string; n: number }>(
      `SELECT tablename, count(*)::int AS n FROM pg_indexes
        WHERE schemaname = 'sluice_data' AND tablename LIKE 'clicks_p%' AND indexdef LIKE '%btree (user_id)%'
        GROUP BY tablename`,
    );
    expect(perPartition.length).toBeGreaterThanOrEqual(3);
    for (const p of perPartition) expect(p.n).toBe(2);
  });

  it('index names stay distinct on a long stream name (columns sharing a prefix)', async () => {
    const name = 'mobile_app_clickstream_events_by_region_v2_eu'; // 45 characters, within the 48 allowed
    const result = await sluice('stream', 'create', name, '--column', 'user_id:bigint', '--column', 'user_name:text', '--index', 'user_id', '--index', 'user_name');
    expect(result.stderr).not.toMatch(/already exists|error/i);
    expect(result.code).toBe(0);
    const { rows } = await db.query<{ indexdef: string }>(
      `SELECT indexdef FROM pg_indexes WHERE schemaname = 'sluice_data' AND tablename = $1 AND indexdef LIKE '%USING btree (user_%'`,
      [name],
    );
    expect(rows.map((r) => r.indexdef.replace(/.*USING btree /, '')).sort()).toEqual(['(user_id)', '(user_name)']);
  });

  it('stream list --json shows the stream with its columns and indexes', async () => {
    const result = await sluice('stream', 'list', '--json');
    expect(result.code).toBe(0);
    const streams = JSON.parse(result.stdout) as Array<{ name: string; columns: unknown; indexes: Array<{ columns: string[]; predicate: string | null }> }>;
    const clicks = streams.find((s) => s.name === 'clicks');
    expect(clicks).toBeDefined();
    expect(clicks?.columns).toEqual([
      { name: 'user_id', type: 'bigint' },
      { name: 'kind', type: 'text' },
    ]);
    expect(clicks?.indexes.map((i) => i.columns)).toEqual([['user_id'], ['user_id']]);
    expect(clicks?.indexes.filter((i) => i.predicate !== null)).toHaveLength(1);
    expect(streams.map((s) => s.name)).toContain('events');
  });

  it('creating a stream that exists fails clearly and changes nothing', async () => {
    const result = await sluice(...CREATE_CLICKS);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(/clicks.*already exists/);
    expect(result.stderr).not.toMatch(/at .*\.js:\d+/); // a message, not a stack trace
    expect((await streamNames()).filter((n) => n === 'clicks')).toHaveLength(1);
  });

  it('unsupported or malicious column types are refused with the list of supported types', async () => {
    await db.query('CREATE TABLE public.y (id int)');
    const specs = ['x:money', 'x:int; drop table y'];
    const results = await Promise.all(specs.map((spec) => sluice('stream', 'create', 'bad_types', '--column', spec)));
    for (const [i, result] of results.entries()) {
      const spec = specs[i];
      expect(result.code, spec).not.toBe(0);
      expect(result.stderr, spec).toMatch(/type must be one of/);
      for (const type of SUPPORTED_COLUMN_TYPES) expect(result.stderr, spec).toContain(type);
      expect(await relationExists('public.y')).toBe(true);
    }
    expect(await streamNames()).not.toContain('bad_types');
    expect(await relationExists('sluice_staging.bad_types')).toBe(false);
  });

  it('reserved column names are refused', async () => {
    const names = ['event_id', 'payload'];
    const results = await Promise.all(names.map((name) => sluice('stream', 'create', 'bad_names', '--column', `${name}:text`)));
    for (const [i, result] of results.entries()) {
      const name = names[i] as string;
      expect(result.code, name).not.toBe(0);
      expect(stderrMessages(result.stderr), name).toMatch(new RegExp(`"${name}" is reserved`));
    }
    expect(await streamNames()).not.toContain('bad_names');
  });

  it('events fill the declared columns; undeclared keys go to payload', async () => {
    const ingestor = await createIngestor({ connectionString: db.url, stream: 'clicks', ack: 'staged' });
    const now = Date.now();
    const events = [
      { event_id: '6f1c1f46-2c67-4a8e-9d2a-0f5f6b1e0001', occurred_at: new Date(now).toISOString(), user_id: 42, kind: 'buy', page: '/cart', qty: 3 },
      { event_id: '6f1c1f46-2c67-4a8e-9d2a-0f5f6b1e0002', occurred_at: new Date(now - 1000).toISOString(), user_id: '9007199254740993', kind: 'view' },
      { event_id: '6f1c1f46-2c67-4a8e-9d2a-0f5f6b1e0003', occurred_at: new Date(now - 2000).toISOString(), nested: { a: [1, { b: null }] } },
      { event_id: '6f1c1f46-2c67-4a8e-9d2a-0f5f6b1e0004', occurred_at: new Date(now - 3000).toISOString(), user_id: 'not a number', kind: 'buy' },
    ];
    const receipt = await ingestor.ingest(events);
    await ingestor.close();
    expect(receipt.accepted).toBe(3);
    expect(receipt.rejections).toEqual([expect.objectContaining({ index: 3, reason: 'invalid_column_value' })]);

    const stream = await requireStream(drainClient, 'clicks');
    const run = await drainUntilEmpty(async () => drainClient, { stream, batchRows: 100, drainer: 'test/clicks', maxMs: 30_000, log: silentLogger });
    expect(run.inserted).toBe(3);

    const { rows } = await db.query<{ event_id: string; user_id: string | null; kind: string | null; payload: unknown }>(
      'SELECT event_id::text, user_id::text, kind, payload FROM sluice_data.clicks ORDER BY event_id',
    );
    expect(rows).toEqual([
      { event_id: events[0]?.event_id, user_id: '42', kind: 'buy', payload: { page: '/cart', qty: 3 } },
      { event_id: events[1]?.event_id, user_id: '9007199254740993', kind: 'view', payload: {} },
      { event_id: events[2]?.event_id, user_id: null, kind: null, payload: { nested: { a: [1, { b: null }] } } },
    ]);
  });

  it('stream drop refuses without --yes, and with --yes drops the tables but keeps the rejects', async () => {
    const rejectsBefore = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM sluice.rejects WHERE stream = 'clicks'`);
    expect(rejectsBefore.rows[0]?.n).toBeGreaterThan(0);

    const refused = await sluice('stream', 'drop', 'clicks');
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/--yes/);
    expect(await relationExists('sluice_data.clicks')).toBe(true);
    expect(await streamNames()).toContain('clicks');

    const dropped = await sluice('stream', 'drop', 'clicks', '--yes');
    expect(dropped.stderr).not.toMatch(/error/i);
    expect(dropped.code).toBe(0);
    expect(await relationExists('sluice_data.clicks')).toBe(false);
    expect(await relationExists('sluice_staging.clicks')).toBe(false);
    expect(await relationExists('sluice_data.clicks_all')).toBe(false);
    const { rows: leftovers } = await db.query(
      `SELECT relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname IN ('sluice_data', 'sluice_staging') AND c.relname LIKE 'clicks%'`,
    );
    expect(leftovers).toEqual([]);
    expect(await streamNames()).not.toContain('clicks');
    const rejectsAfter = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM sluice.rejects WHERE stream = 'clicks'`);
    expect(rejectsAfter.rows[0]?.n).toBe(rejectsBefore.rows[0]?.n);

    const again = await sluice('stream', 'drop', 'clicks', '--yes');
    expect(again.code).not.toBe(0);
    expect(again.stderr).toMatch(/no stream named clicks/);
  });
});
