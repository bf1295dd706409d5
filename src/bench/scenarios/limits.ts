/**
 * The physical limits sluice is measured against, on the same rows:
 * - ingest limit: one raw COPY into an UNLOGGED, index-free table;
 * - drain limit: one-shot INSERT INTO durable SELECT … FROM staging ON CONFLICT DO NOTHING.
 */
import { durableTable, quoteIdent, stagingTable } from '../../streams/names.js';
import { result, verify, type Scenario } from '../scenario.js';

export const rawCopy: Scenario = {
  id: 'limit_raw_copy',
  title: 'raw COPY into UNLOGGED index-free table (ingest limit)',
  group: 'limit',
  async run({ ctx, workload }) {
    const stream = await ctx.freshStream('limit');
    const { lines, columns } = ctx.encode(stream, workload.events);
    await ctx.query('DROP TABLE IF EXISTS sluice_bench_raw_copy');
    await ctx.query(`CREATE UNLOGGED TABLE sluice_bench_raw_copy (LIKE ${stagingTable(stream.name)} INCLUDING DEFAULTS)`);
    const client = await ctx.admin.connect();
    let ms: number;
    try {
      const started = performance.now();
      await ctx.copyInto(client, 'sluice_bench_raw_copy', columns, lines);
      ms = performance.now() - started;
    } finally {
      client.release();
    }
    const actual = await ctx.count('sluice_bench_raw_copy');
    await ctx.query('DROP TABLE sluice_bench_raw_copy');
    await ctx.dropStream(stream.name);
    return result(this, {
      rows: lines.length,
      ms,
      verified: verify(lines.length, actual, 'rows in the table'),
      options: { statement: 'COPY … FROM STDIN (text), one statement, 1 MB writes', input: 'pre-encoded COPY text' },
    });
  },
};

export const oneShotInsertSelect: Scenario = {
  id: 'limit_one_shot_insert_select',
  title: 'one-shot INSERT … SELECT FROM staging ON CONFLICT DO NOTHING (drain limit)',
  group: 'limit',
  async run({ ctx, workload }) {
    const stream = await ctx.freshStream('oneshot');
    await ctx.fillStaging(stream, workload.events);
    await ctx.query(`VACUUM ANALYZE ${stagingTable(stream.name)}`);
    const columns = ['event_id', 'occurred_at', 'type', 'user_id', 'payload', 'received_at'].map(quoteIdent).join(', ');
    const started = performance.now();
    const inserted = await ctx.query(
      `INSERT INTO ${durableTable(stream.name)} (${columns}) SELECT ${columns} FROM ${stagingTable(stream.name)} ON CONFLICT DO NOTHING`,
    );
    const ms = performance.now() - started;
    const actual = await ctx.countThenDrop(durableTable(stream.name), stream.name);
    return result(this, {
      rows: workload.events.length,
      ms,
      verified: verify(workload.unique, actual, `distinct rows durable (inserted ${inserted.rowCount})`),
      options: { statement: 'INSERT INTO durable SELECT … FROM staging ON CONFLICT DO NOTHING', transactions: 1 },
    });
  },
};
