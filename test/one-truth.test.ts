/**
 * Rules that TypeScript and SQL both enforce, compared with Postgres as the
 * oracle: a stream's defaults and ranges, the stream-name rule, the column-name
 * rule and reserved names, and the allowed column types. TS holds each once
 * (src/streams/stream-defaults.ts, names.ts, column-types.ts); the migrations
 * keep their copies, and a change to either side alone fails here.
 *
 * Every probe runs under a savepoint of one transaction that is rolled back,
 * so the database is left as it was.
 */
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sqlState, SluiceError } from '../src/errors.js';
import { canonicalColumnType, SUPPORTED_COLUMN_TYPES } from '../src/codec/column-types.js';
import { assertColumnName, assertStreamName, RESERVED_COLUMN_NAMES } from '../src/streams/names.js';
import { STREAM_DEFAULTS, STREAM_SETTING_COLUMNS, STREAM_SETTING_RANGES, type StreamSettings } from '../src/streams/stream-defaults.js';
import { createTestDatabase } from './helpers/database.js';

const db = await createTestDatabase('one_truth');
let client: pg.PoolClient;

beforeAll(async () => {
  client = await db.pool.connect();
  await client.query('BEGIN');
});

afterAll(async () => {
  await client.query('ROLLBACK');
  client.release();
});

/** 'ok', or the SQLSTATE the statement raised; either way undone (savepoint). */
async function probe(sql: string, values: unknown[] = []): Promise<string> {
  await client.query('SAVEPOINT probe');
  try {
    await client.query(sql, values);
    return 'ok';
  } catch (err) {
    const code = sqlState(err);
    if (!code) throw err;
    return code;
  } finally {
    await client.query('ROLLBACK TO SAVEPOINT probe');
  }
}

/** TS verdict: 'ok', or the SluiceError code the assertion threw. */
function tsVerdict(assert: (name: unknown) => void, name: string): string {
  try {
    assert(name);
    return 'ok';
  } catch (err) {
    if (err instanceof SluiceError) return err.code;
    throw err;
  }
}

/** The row sluice.streams stores for `name`, as a StreamSettings. */
async function storedSettings(name: string): Promise<StreamSettings> {
  const columns = Object.entries(STREAM_SETTING_COLUMNS).map(([key, column]) => `${column} AS "${key}"`);
  const { rows } = await client.query<StreamSettings>(`SELECT ${columns.join(', ')} FROM sluice.streams WHERE name = $1`, [name]);
  expect(rows, `no sluice.streams row for ${name}`).toHaveLength(1);
  return rows[0] as StreamSettings;
}

const INSERT_BARE_STREAM = `INSERT INTO sluice.streams (name, staging_table, durable_table) VALUES ($1, 'x', 'x')`;

describe('stream defaults: src/streams/stream-defaults.ts vs migrations/00001 and 00002', () => {
  it("sluice.streams' column DEFAULTs (evaluated by Postgres on a bare insert) are STREAM_DEFAULTS", async () => {
    // Every settings column is one STREAM_SETTING_COLUMNS knows about, and vice versa.
    const { rows } = await client.query<{ column_name: string }>(
      `SELECT column_name FROM information_schema.columns
        WHERE table_schema = 'sluice' AND table_name = 'streams'
          AND column_name NOT IN ('name', 'columns', 'indexes', 'staging_table', 'durable_table', 'created_at', 'version')`,
    );
    expect(rows.map((r) => r.column_name).sort()).toEqual(Object.values(STREAM_SETTING_COLUMNS).sort());

    await client.query('SAVEPOINT bare');
    await client.query(INSERT_BARE_STREAM, ['defaults_bare']);
    expect(await storedSettings('defaults_bare')).toEqual(STREAM_DEFAULTS);
    await client.query('ROLLBACK TO SAVEPOINT bare');
  });

  it("sluice.create_stream with '{}' options stores STREAM_DEFAULTS (its coalesce defaults)", async () => {
    await client.query('SAVEPOINT created');
    await client.query(`SELECT sluice.create_stream('defaults_fn', '[]'::jsonb, '{}'::jsonb)`);
    expect(await storedSettings('defaults_fn')).toEqual(STREAM_DEFAULTS);
    await client.query('ROLLBACK TO SAVEPOINT created');
  });

  it("sluice.streams' CHECK ranges are STREAM_SETTING_RANGES, bound by bound", async () => {
    await client.query('SAVEPOINT ranges');
    await client.query(INSERT_BARE_STREAM, ['ranges']);
    for (const [key, { min, max }] of Object.entries(STREAM_SETTING_RANGES)) {
      const column = STREAM_SETTING_COLUMNS[key as keyof typeof STREAM_SETTING_COLUMNS];
      const update = `UPDATE sluice.streams SET ${column} = $1 WHERE name = 'ranges'`;
      const verdicts: Array<[number, string]> = [];
      for (const v of [min - 1, min, max, max + 1]) verdicts.push([v, await probe(update, [v])]); // one client: one at a time
      expect(verdicts, column).toEqual([
        [min - 1, '23514'],
        [min, 'ok'],
        [max, 'ok'],
        [max + 1, '23514'],
      ]);
    }
    await client.query('ROLLBACK TO SAVEPOINT ranges');
  });
});

describe('stream names: names.ts vs the sluice.streams CHECK and sluice.create_stream', () => {
  const corpus = [
    'a', 'clicks', 'page_views', 'x1', 'a_', 'a__b', 'a'.repeat(48), 'a'.repeat(49), `b${'9'.repeat(47)}`,
    '', '1a', '_a', 'Events', 'eVents', 'a-b', 'a b', ' a', 'a ', 'a\n', '\na', 'a.b', 'a"b', "a'b", 'a;b',
    'café', 'ａ', 'ſ', 'ı', 'é',
    'x_all', 'all', 'x_alls', 'x_all_', 'x_al', 'x_ALL', 'xall',
    'x_p202401', 'x_p000000', 'p202401', 'x_p20240', 'x_p2024011', 'x_p2024ab', 'x_p202401_', 'x_p202401x', 'x_q202401',
    `${'a'.repeat(39)}_p202401`, `${'a'.repeat(40)}_p202401`,
  ];

  it('each name of the corpus is accepted or refused alike by TS, the CHECK and create_stream', async () => {
    const disagreements: string[] = [];
    let accepted = 0;
    for (const name of corpus) {
      const ts = tsVerdict(assertStreamName, name) === 'ok';
      const check = await probe(INSERT_BARE_STREAM, [name]);
      const created = await probe(`SELECT sluice.create_stream($1, '[]'::jsonb, '{}'::jsonb)`, [name]);
      // Refusals must be the name rule's, not some other error.
      if (check !== 'ok') expect(check, JSON.stringify(name)).toBe('23514');
      if (created !== 'ok') expect(created, JSON.stringify(name)).toBe('42602');
      if (ts !== (check === 'ok') || ts !== (created === 'ok')) {
        disagreements.push(`${JSON.stringify(name)}: TS ${ts ? 'accepts' : 'refuses'}, CHECK ${check}, create_stream ${created}`);
      }
      if (ts) accepted++;
    }
    expect(disagreements).toEqual([]);
    // The corpus exercises both sides of the rule.
    expect(accepted).toBeGreaterThan(5);
    expect(corpus.length - accepted).toBeGreaterThan(20);
  });
});

describe('columns: names.ts and column-types.ts vs sluice.reserved_column_names(), allowed_column_types() and create_stream', () => {
  it('the reserved column names are the same set', async () => {
    const { rows } = await client.query<{ names: string[] }>('SELECT sluice.reserved_column_names() AS names');
    expect([...(rows[0]?.names ?? [])].sort()).toEqual([...RESERVED_COLUMN_NAMES].sort());
  });

  it('the allowed column types are the same set', async () => {
    const { rows } = await client.query<{ types: string[] }>('SELECT sluice.allowed_column_types() AS types');
    expect([...(rows[0]?.types ?? [])].sort()).toEqual([...SUPPORTED_COLUMN_TYPES].sort());
    // And each is Postgres' own canonical spelling, which TS maps to itself.
    for (const type of SUPPORTED_COLUMN_TYPES) {
      const { rows: r } = await client.query<{ t: string }>('SELECT $1::regtype::text AS t', [type]);
      expect(r[0]?.t).toBe(type);
      expect(canonicalColumnType(type)).toBe(type);
    }
  });

  it('each column name of a corpus is accepted or refused alike by TS and create_stream', async () => {
    const { rows } = await client.query<{ names: string[] }>('SELECT sluice.reserved_column_names() AS names');
    const corpus = new Set([
      'user_id', 'a', 'a'.repeat(63), 'a'.repeat(64), '', '1a', '_a', 'UserId', 'a-b', 'a b', 'café',
      'event_ids', 'payloads', 'oid', ...RESERVED_COLUMN_NAMES, ...(rows[0]?.names ?? []),
    ]);
    const disagreements: string[] = [];
    for (const name of corpus) {
      const ts = tsVerdict(assertColumnName, name) === 'ok';
      const created = await probe(`SELECT sluice.create_stream('col_probe', $1::jsonb, '{}'::jsonb)`, [
        JSON.stringify([{ name, type: 'text' }]),
      ]);
      if (created !== 'ok') expect(created, JSON.stringify(name)).toBe('42602');
      if (ts !== (created === 'ok')) disagreements.push(`${JSON.stringify(name)}: TS ${ts ? 'accepts' : 'refuses'}, create_stream ${created}`);
    }
    expect(disagreements).toEqual([]);
  });
});
