/**
 * `sluice status`'s durable estimate: premade months nobody wrote are never analysed (reltuples
 * -1 on PostgreSQL 14+), and must count as 0 rows, not make the estimate "not analysed" forever;
 * a partition that holds rows and was never analysed still does.
 */
import { describe, expect, it } from 'vitest';
import { createTestDatabase } from './helpers/database.js';
import { runCli } from './helpers/cli.js';
import { streamStatus } from '../src/status/stream-status.js';
import { readPartitions } from '../src/partitions/catalog.js';
import { quoteIdent } from '../src/streams/names.js';

const db = await createTestDatabase('status_estimate');

interface PartitionRow {
  name: string;
  current: boolean;
  previous: boolean;
  reltuples: number;
  bytes: number;
}

async function partitions(stream: string): Promise<PartitionRow[]> {
  const { rows } = await db.query<PartitionRow>(
    `SELECT c.relname AS name,
            c.relname = $1 || '_p' || to_char(now() AT TIME ZONE 'UTC', 'YYYYMM') AS current,
            c.relname = $1 || '_p' || to_char((now() AT TIME ZONE 'UTC') - interval '1 month', 'YYYYMM') AS previous,
            c.reltuples::float8 AS reltuples, pg_relation_size(c.oid)::float8 AS bytes
       FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
      WHERE i.inhparent = to_regclass('sluice_data.' || quote_ident($1)) ORDER BY c.relname`,
    [stream],
  );
  return rows;
}

async function insertRows(stream: string, n: number, at: string): Promise<void> {
  await db.query(
    `INSERT INTO sluice_data.${quoteIdent(stream)} (event_id, occurred_at, payload, received_at)
     SELECT gen_random_uuid(), ${at}, jsonb_build_object('n', g), now() FROM generate_series(1, $1::int) g`,
    [n],
  );
}

describe('sluice status: durable estimate with premade, never analysed partitions', () => {
  it('is a number once the partition holding rows is analysed; empty premade months count as 0', async () => {
    const stream = 'estimate_premade';
    await db.query(`SELECT sluice.create_stream($1)`, [stream]);
    const before = await partitions(stream);
    // Made at creation: last month, this month and the months ahead, all empty and never analysed.
    expect(before.filter((p) => !p.current).length).toBeGreaterThanOrEqual(2);
    expect(before.filter((p) => p.current)).toHaveLength(1);
    expect(before.every((p) => p.reltuples === -1 && p.bytes === 0), JSON.stringify(before)).toBe(true);
    // Autovacuum must not analyse for us while we look: only this test's ANALYZE counts.
    for (const p of before) await db.query(`ALTER TABLE sluice_data.${quoteIdent(p.name)} SET (autovacuum_enabled = false)`);

    // Empty and never analysed: 0, not "not analysed".
    expect((await streamStatus(db.pool, stream)).durableEstimate).toBe(0);

    await insertRows(stream, 700, 'now()');
    const current = before.find((p) => p.current)!;
    await db.query(`ANALYZE sluice_data.${quoteIdent(current.name)}`);
    const after = await partitions(stream);
    // The premade months are still never analysed (the case that used to say "not analysed" forever).
    expect(after.filter((p) => !p.current).every((p) => p.reltuples === -1)).toBe(true);
    expect(after.find((p) => p.current)?.reltuples).toBe(700);

    const status = await streamStatus(db.pool, stream);
    expect(status.durableEstimate).toBe(700);
    expect(status.partitions).toBe(before.length);
    const cli = await runCli(['status'], { env: { DATABASE_URL: db.url } });
    expect(cli.code, cli.stderr).toBe(0);
    const row = cli.stdout.split('\n').find((l) => l.startsWith(`${stream} `));
    expect(row, cli.stdout).toBeDefined();
    expect(row).not.toMatch(/not analysed/);
    expect(row).toMatch(/\b700\b/);

    // `sluice partitions` reads the same rule: empty months 0 rows, the analysed one 700.
    const parts = await readPartitions(db.pool, stream);
    expect(parts.map((p) => [p.name, p.estimatedRows])).toEqual(after.map((p) => [p.name, p.current ? 700 : 0]));
  });

  it('is still "not analysed" while a partition holding rows was never analysed', async () => {
    const stream = 'estimate_unanalysed';
    await db.query(`SELECT sluice.create_stream($1)`, [stream]);
    const parts = await partitions(stream);
    for (const p of parts) await db.query(`ALTER TABLE sluice_data.${quoteIdent(p.name)} SET (autovacuum_enabled = false)`);
    const current = parts.find((p) => p.current)!;
    const previous = parts.find((p) => p.previous)!;
    await insertRows(stream, 300, 'now()');
    await db.query(`ANALYZE sluice_data.${quoteIdent(current.name)}`);
    await insertRows(stream, 50, `now() - interval '1 month'`);
    const prev = (await partitions(stream)).find((p) => p.name === previous.name)!;
    expect(prev.reltuples).toBe(-1);
    expect(prev.bytes).toBeGreaterThan(0);

    expect((await streamStatus(db.pool, stream)).durableEstimate).toBe(-1);
    const cli = await runCli(['status'], { env: { DATABASE_URL: db.url } });
    const row = cli.stdout.split('\n').find((l) => l.startsWith(`${stream} `));
    expect(row, cli.stdout).toMatch(/not analysed/);
    expect((await readPartitions(db.pool, stream)).find((p) => p.name === previous.name)?.estimatedRows).toBe(-1);

    // Analysed: a number again.
    await db.query(`ANALYZE sluice_data.${quoteIdent(previous.name)}`);
    expect((await streamStatus(db.pool, stream)).durableEstimate).toBe(350);
  });
});
