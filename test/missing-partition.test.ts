/**
 * isMissingPartition tells "no partition of relation … found for row" from
 * every other 23514 by the error's fields, not its English text: routing names
 * the table and no constraint, a CHECK violation names its constraint. The
 * errors are Postgres' own, raised here on a partitioned table.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isMissingPartition, isRowRefusal, SQLSTATE, sqlState } from '../src/errors.js';
import { createTestDatabase } from './helpers/database.js';

const db = await createTestDatabase('missing_partition');
let client: pg.Client;

beforeAll(async () => {
  client = new pg.Client({ connectionString: db.url });
  await client.connect();
  await client.query(`
    CREATE TABLE routed (at date NOT NULL, v int NOT NULL, CONSTRAINT positive CHECK (v > 0),
                         CONSTRAINT "no partition of relation routed" CHECK (v <> 13))
      PARTITION BY RANGE (at);
    CREATE TABLE routed_2020_01 PARTITION OF routed FOR VALUES FROM ('2020-01-01') TO ('2020-02-01');
    CREATE FUNCTION raise_check() RETURNS void LANGUAGE plpgsql AS
      $$ BEGIN RAISE EXCEPTION 'no partition of relation "routed" found for row' USING ERRCODE = 'check_violation'; END $$;`);
});
afterAll(async () => {
  await client.end();
});

async function errorOf(sql: string): Promise<Error> {
  try {
    await client.query(sql);
  } catch (err) {
    expect(sqlState(err)).toBe(SQLSTATE.CHECK_VIOLATION);
    return err as Error;
  }
  throw new Error(`no error from ${sql}`);
}

describe('isMissingPartition', () => {
  it('is true for the row with no partition', async () => {
    const err = await errorOf(`INSERT INTO routed VALUES ('2021-03-04', 1)`);
    expect(isMissingPartition(err)).toBe(true);
  });

  it('does not read the message: a localized one (lc_messages) still counts', async () => {
    const err = await errorOf(`INSERT INTO routed VALUES ('2021-03-04', 1)`);
    err.message = 'keine Partition von Relation »routed« für die Zeile gefunden';
    expect(isMissingPartition(err)).toBe(true);
  });

  it("is false for a user's CHECK violation, a row refusal", async () => {
    const err = await errorOf(`INSERT INTO routed VALUES ('2020-01-05', -1)`);
    expect(isMissingPartition(err)).toBe(false);
    expect(isRowRefusal(err)).toBe(true);
  });

  it("is false for a CHECK violation whose constraint's name reads like the routing message", async () => {
    const err = await errorOf(`INSERT INTO routed VALUES ('2020-01-05', 13)`);
    expect(err.message).toMatch(/no partition of relation/);
    expect(isMissingPartition(err)).toBe(false);
  });

  it('is false for a 23514 a function raises with the same words', async () => {
    const err = await errorOf('SELECT raise_check()');
    expect(isMissingPartition(err)).toBe(false);
  });
});
