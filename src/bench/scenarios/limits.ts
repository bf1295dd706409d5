/**
 * The physical limits sluice is measured against, on the same rows:
 * - ingest limit: one raw COPY into an UNLOGGED, index-free table;
 * - drain limits: one-shot INSERT INTO durable SELECT … FROM staging ON CONFLICT DO NOTHING,
 *   in heap order (the combined limit's), in key order (ORDER BY occurred_at, event_id: sorted
 *   inserts beat heap order on the primary key, so this is drain ×1's ceiling), and split over
 *   two connections at once (drain ×2's ceiling).
 */
import pg from 'pg';
import { durableTable, quoteIdent, stagingTable } from '../../streams/names.js';
import type { ScenarioInput } from '../scenario.js';
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

const ONE_SHOT_COLUMNS = ['event_id', 'occurred_at', 'type', 'user_id', 'payload', 'received_at'].map(quoteIdent).join(', ');

/**
 * INSERT … SELECT the staged workload into the durable table over `connections`
 * connections at once, each taking the rows whose hash of event_id falls in its
 * share (a duplicate's copies always go to the same connection), `orderBy` key order or heap order.
 */
async function oneShot(
  scenario: Pick<Scenario, 'id' | 'title' | 'group'>,
  { ctx, workload }: ScenarioInput,
  streamId: string,
  { connections, ordered }: { connections: number; ordered: boolean },
) {
  const stream = await ctx.freshStream(streamId);
  await ctx.fillStaging(stream, workload.events);
  await ctx.query(`VACUUM ANALYZE ${stagingTable(stream.name)}`);
  const clients = await Promise.all(
    Array.from({ length: connections }, async (_, i) => {
      const c = new pg.Client({ connectionString: ctx.url, application_name: `sluice/bench/one-shot-${i}` });
      await c.connect();
      return c;
    }),
  );
  const share = connections > 1 ? ' WHERE abs(hashtext(event_id::text)) % $1::int = $2::int' : '';
  const order = ordered ? ' ORDER BY occurred_at, event_id' : '';
  const statement = `INSERT INTO ${durableTable(stream.name)} (${ONE_SHOT_COLUMNS}) SELECT ${ONE_SHOT_COLUMNS} FROM ${stagingTable(stream.name)}${share}${order} ON CONFLICT DO NOTHING`;
  let ms: number;
  let inserted = 0;
  try {
    const started = performance.now();
    const counts = await Promise.all(clients.map((c, i) => c.query(statement, connections > 1 ? [connections, i] : [])));
    ms = performance.now() - started;
    inserted = counts.reduce((n, r) => n + (r.rowCount ?? 0), 0);
  } finally {
    await Promise.all(clients.map((c) => c.end()));
  }
  const actual = await ctx.countThenDrop(durableTable(stream.name), stream.name);
  return result(scenario, {
    rows: workload.events.length,
    ms,
    verified: verify(workload.unique, actual, `distinct rows durable (inserted ${inserted})`),
    options: {
      statement: `INSERT INTO durable SELECT … FROM staging${share ? ' (a hash share per connection)' : ''}${order} ON CONFLICT DO NOTHING`,
      connections,
      transactions: connections,
    },
  });
}

export const oneShotInsertSelect: Scenario = {
  id: 'limit_one_shot_insert_select',
  title: 'one-shot INSERT … SELECT FROM staging ON CONFLICT DO NOTHING (heap order; combined limit)',
  group: 'limit',
  run(input) {
    return oneShot(this, input, 'oneshot', { connections: 1, ordered: false });
  },
};

export const oneShotOrdered: Scenario = {
  id: 'limit_one_shot_ordered',
  title: 'one-shot INSERT … SELECT … ORDER BY occurred_at, event_id (key order; drain ×1 ceiling)',
  group: 'limit',
  run(input) {
    return oneShot(this, input, 'oneshot_ordered', { connections: 1, ordered: true });
  },
};

export const oneShotTwoConnections: Scenario = {
  id: 'limit_one_shot_2conn',
  title: 'one-shot INSERT … SELECT … ORDER BY key, on two connections at once, half each (drain ×2 ceiling)',
  group: 'limit',
  run(input) {
    return oneShot(this, input, 'oneshot_2conn', { connections: 2, ordered: true });
  },
};
