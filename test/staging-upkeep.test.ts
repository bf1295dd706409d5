/**
 * A drain that finds staging empty hands its bloated heap back (TRUNCATE), and
 * only when no one uses staging: a producer's uncommitted row, a reader's open
 * transaction or another session's row lock make it skip, and what they hold
 * is drained afterwards, exactly once. And drains vacuum what they empty, every
 * VACUUM_EVERY_ROWS rows, so the heap's dead space is reused while rows keep
 * coming (autovacuum does not keep up with a queue).
 */
import pg from 'pg';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { drainUntilEmpty } from '../src/drain/drain-loop.js';
import { forgetResetTries, RESET_MIN_BYTES, VACUUM_EVERY_ROWS } from '../src/drain/staging-upkeep.js';
import { createLogger } from '../src/logger.js';
import { getStream, type StreamDefinition } from '../src/streams/registry.js';
import { createTestDatabase } from './helpers/database.js';
import { durableIds, stagedCount } from './helpers/events.js';

const db = await createTestDatabase('staging_reset');
const log = createLogger('silent');
let drainer: pg.Client;
let other: pg.Client;

beforeAll(async () => {
  drainer = new pg.Client({ connectionString: db.url, application_name: 'sluice-test-drainer' });
  other = new pg.Client({ connectionString: db.url, application_name: 'sluice-test-other' });
  await Promise.all([drainer.connect(), other.connect()]);
});
afterAll(async () => {
  await Promise.all([drainer.end(), other.end()]);
});
beforeEach(() => forgetResetTries());

async function stream(name: string): Promise<StreamDefinition> {
  await db.query(`SELECT sluice.create_stream($1)`, [name]);
  return (await getStream(db.pool, name)) as StreamDefinition;
}

/** Stage `n` rows with a payload big enough that the heap passes the reset floor. */
async function stage(name: string, n: number): Promise<void> {
  await db.query(
    `INSERT INTO sluice_staging.${name} (event_id, occurred_at, payload)
     SELECT gen_random_uuid(), now(), jsonb_build_object('pad', repeat('x', 200)) FROM generate_series(1, $1)`,
    [n],
  );
}

const heapBytes = async (name: string) => Number((await db.query<{ b: string }>(`SELECT pg_relation_size('sluice_staging.${name}') AS b`)).rows[0]?.b);
const drain = (s: StreamDefinition) => drainUntilEmpty(async () => drainer, { stream: s, batchRows: 10_000, drainer: 'test/drain-0', maxMs: 60_000, log });

describe('resetting an empty, bloated staging table', () => {
  it('drains 60,000 rows, then truncates the empty heap (it was over the floor); every row durable once', async () => {
    const s = await stream('reset_empty');
    await stage('reset_empty', 60_000);
    expect(await heapBytes('reset_empty')).toBeGreaterThan(RESET_MIN_BYTES);
    const run = await drain(s);
    expect(run.moved).toBe(60_000);
    expect(await stagedCount(db, 'reset_empty')).toBe(0);
    expect(await heapBytes('reset_empty')).toBe(0);
    expect((await durableIds(db, 'reset_empty')).rows).toBe(60_000);
  });

  it("skips while another session uses staging (an uncommitted producer's row, a reader, a row lock), and that session's row is drained afterwards", async () => {
    const s = await stream('reset_busy');
    await stage('reset_busy', 60_000);
    await drain(s);
    expect(await heapBytes('reset_busy')).toBe(0);

    await stage('reset_busy', 60_000);
    const users: Array<[string, () => Promise<unknown>]> = [
      ['a producer with an uncommitted row', () => other.query(`INSERT INTO sluice_staging.reset_busy (event_id, occurred_at) VALUES (gen_random_uuid(), now())`)],
      ['a reader in an open transaction', () => other.query(`SELECT count(*) FROM sluice_staging.reset_busy`)],
    ];
    for (const [who, use] of users) {
      await drain(s); // staging empty again, its heap as big as before
      const bloated = await heapBytes('reset_busy');
      expect(bloated, who).toBeGreaterThan(RESET_MIN_BYTES);
      await other.query('BEGIN');
      await use();
      forgetResetTries();
      const run = await drain(s);
      expect(run.moved, who).toBe(0);
      expect(await heapBytes('reset_busy'), who).toBe(bloated); // not truncated
      await other.query('COMMIT');
      await stage('reset_busy', 60_000);
    }
    // The producer's row committed after the skipped reset: it is drained with the rest, once.
    forgetResetTries();
    await drain(s);
    expect(await stagedCount(db, 'reset_busy')).toBe(0);
    expect((await durableIds(db, 'reset_busy')).rows).toBe(4 * 60_000 + 1);

    // A row another session holds FOR UPDATE: the drain skips it (SKIP LOCKED), and the reset must not take it.
    await stage('reset_busy', 60_000);
    await drain(s);
    await db.query(`INSERT INTO sluice_staging.reset_busy (event_id, occurred_at) VALUES (gen_random_uuid(), now())`);
    await other.query('BEGIN');
    expect((await other.query(`SELECT 1 FROM sluice_staging.reset_busy FOR UPDATE`)).rowCount).toBe(1);
    forgetResetTries();
    expect((await drain(s)).moved).toBe(0);
    expect(await stagedCount(db, 'reset_busy')).toBe(1);
    await other.query('COMMIT');
    forgetResetTries();
    expect((await drain(s)).moved).toBe(1);
    expect((await durableIds(db, 'reset_busy')).rows).toBe(5 * 60_000 + 2);
    // The next drain finds it empty, with no one using it: the heap goes.
    forgetResetTries();
    await drain(s);
    expect(await heapBytes('reset_busy')).toBe(0);
  });

  it(`vacuums staging every ${VACUUM_EVERY_ROWS.toLocaleString('en-US')} rows it drains, while rows keep coming`, async () => {
    const s = await stream('vacuumed');
    await db.query(`ALTER TABLE sluice_staging.vacuumed SET (autovacuum_enabled = false)`); // only the drain's own VACUUM counts
    const vacuums = async () =>
      Number((await db.query<{ n: string }>(`SELECT vacuum_count AS n FROM pg_stat_all_tables WHERE relid = 'sluice_staging.vacuumed'::regclass`)).rows[0]?.n);
    const before = await vacuums();
    // Drained in rounds of 60,000 (each under the reset floor, so only VACUUMs count), past two VACUUM_EVERY_ROWS marks.
    const round = 60_000;
    let drained = 0;
    while (drained < 2 * VACUUM_EVERY_ROWS + round) {
      await db.query(`INSERT INTO sluice_staging.vacuumed (event_id, occurred_at) SELECT gen_random_uuid(), now() FROM generate_series(1, $1)`, [round]);
      drained += (await drain(s)).moved;
    }
    await new Promise((r) => setTimeout(r, 1_200)); // the statistics arrive within about a second
    expect(await vacuums()).toBe(before + Math.floor(drained / VACUUM_EVERY_ROWS));
    expect((await durableIds(db, 'vacuumed')).rows).toBe(drained);
  });
});
