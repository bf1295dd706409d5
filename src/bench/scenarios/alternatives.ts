/**
 * What a user would build instead of sluice, writing the same events into the
 * same durable table (monthly partitions, PK, BRIN):
 * - row-at-a-time autocommit INSERT through a pg pool of 10;
 * - multi-row INSERT … VALUES (1,000 rows) ON CONFLICT DO NOTHING;
 * - COPY into one logged table with 7 indexes (one table doing everything:
 *   no staging, every index maintained on ingest).
 */
import pg from 'pg';
import { durableTable, quoteIdent } from '../../streams/names.js';
import type { GeneratedEvent } from '../../workload/event-generator.js';
import { result, verify, type Scenario } from '../scenario.js';

const ROW_POOL_SIZE = 10;
const MULTI_ROW_BATCH = 1_000;
const MULTI_ROW_CONNECTIONS = 2;
const INDEXED_COPY_BATCH = 5_000;

function rowValues(e: GeneratedEvent): unknown[] {
  return [e.event_id, e.occurred_at, e.type, e.user_id, JSON.stringify({ value: e.value })];
}

export const pooledRowInsert: Scenario = {
  id: 'alt_pooled_row_insert',
  title: `row-at-a-time autocommit INSERT, pg pool of ${ROW_POOL_SIZE}`,
  group: 'alternative',
  async run({ ctx, slowWorkload }) {
    const stream = await ctx.freshStream('rows');
    const sql = `INSERT INTO ${durableTable(stream.name)} (event_id, occurred_at, type, user_id, payload, received_at)
                 VALUES ($1, $2, $3, $4, $5, now()) ON CONFLICT DO NOTHING`;
    const pool = new pg.Pool({ connectionString: ctx.url, max: ROW_POOL_SIZE, application_name: 'sluice/bench/rows' });
    pool.on('error', () => undefined);
    let next = 0;
    const started = performance.now();
    await Promise.all(
      Array.from({ length: ROW_POOL_SIZE }, async () => {
        while (next < slowWorkload.json.length) {
          const event = JSON.parse(slowWorkload.json[next++] as string) as GeneratedEvent;
          await pool.query({ name: 'bench_row_insert', text: sql, values: rowValues(event) });
        }
      }),
    );
    const ms = performance.now() - started;
    await pool.end();
    const actual = await ctx.countThenDrop(durableTable(stream.name), stream.name);
    return result(this, {
      rows: slowWorkload.events.length,
      ms,
      verified: verify(slowWorkload.unique, actual, 'distinct rows durable'),
      options: { pool: ROW_POOL_SIZE, inFlight: ROW_POOL_SIZE, statement: 'INSERT … VALUES ($1…$5) ON CONFLICT DO NOTHING', preparedStatement: true, input: 'JSON text, parsed per event' },
    });
  },
};

export const multiRowInsert: Scenario = {
  id: 'alt_multi_row_insert',
  title: `multi-row INSERT … VALUES (${MULTI_ROW_BATCH.toLocaleString('en-US')} rows) ON CONFLICT DO NOTHING`,
  group: 'alternative',
  async run({ ctx, workload }) {
    const stream = await ctx.freshStream('multirow');
    const pool = new pg.Pool({ connectionString: ctx.url, max: MULTI_ROW_CONNECTIONS, application_name: 'sluice/bench/multirow' });
    pool.on('error', () => undefined);
    const table = durableTable(stream.name);
    let next = 0;
    const started = performance.now();
    await Promise.all(
      Array.from({ length: MULTI_ROW_CONNECTIONS }, async () => {
        while (next < workload.json.length) {
          const slice = workload.json.slice(next, next + MULTI_ROW_BATCH);
          next += MULTI_ROW_BATCH;
          // Sorted by key, so two concurrent statements that share re-sent keys cannot deadlock.
          const events = slice.map((j) => JSON.parse(j) as GeneratedEvent).sort((a, b) =>
            a.occurred_at === b.occurred_at ? (a.event_id < b.event_id ? -1 : 1) : a.occurred_at < b.occurred_at ? -1 : 1,
          );
          const values: unknown[] = [];
          const tuples = events.map((e, i) => {
            values.push(...rowValues(e));
            const p = i * 5;
            return `($${p + 1}, $${p + 2}, $${p + 3}, $${p + 4}, $${p + 5}, now())`;
          });
          await pool.query(
            `INSERT INTO ${table} (event_id, occurred_at, type, user_id, payload, received_at) VALUES ${tuples.join(', ')} ON CONFLICT DO NOTHING`,
            values,
          );
        }
      }),
    );
    const ms = performance.now() - started;
    await pool.end();
    const actual = await ctx.countThenDrop(table, stream.name);
    return result(this, {
      rows: workload.events.length,
      ms,
      verified: verify(workload.unique, actual, 'distinct rows durable'),
      options: { rowsPerStatement: MULTI_ROW_BATCH, connections: MULTI_ROW_CONNECTIONS, sortedByKey: true, input: 'JSON text, parsed per event' },
    });
  },
};

const INDEXED_TABLE = 'sluice_bench_indexed';
const SEVEN_INDEXES = [
  `CREATE INDEX ON ${INDEXED_TABLE} (occurred_at, event_id)`,
  `CREATE INDEX ON ${INDEXED_TABLE} (event_id)`,
  `CREATE INDEX ON ${INDEXED_TABLE} (type)`,
  `CREATE INDEX ON ${INDEXED_TABLE} (user_id)`,
  `CREATE INDEX ON ${INDEXED_TABLE} (type, occurred_at)`,
  `CREATE INDEX ON ${INDEXED_TABLE} (received_at)`,
  `CREATE INDEX ON ${INDEXED_TABLE} USING gin (payload jsonb_path_ops)`,
];

export const copyIntoIndexedTable: Scenario = {
  id: 'alt_copy_logged_7_indexes',
  title: 'COPY into a logged table with 7 indexes',
  group: 'alternative',
  async run({ ctx, workload }) {
    const stream = await ctx.freshStream('indexed');
    const { lines, columns } = ctx.encode(stream, workload.events);
    await ctx.dropStream(stream.name);
    await ctx.query(`DROP TABLE IF EXISTS ${INDEXED_TABLE}`);
    await ctx.query(
      `CREATE TABLE ${INDEXED_TABLE} (event_id uuid NOT NULL, occurred_at timestamptz NOT NULL, type text, user_id bigint,
                                      payload jsonb NOT NULL, received_at timestamptz NOT NULL DEFAULT now())`,
    );
    for (const ddl of SEVEN_INDEXES) await ctx.query(ddl);
    const client = await ctx.admin.connect();
    let ms: number;
    try {
      const started = performance.now();
      for (let i = 0; i < lines.length; i += INDEXED_COPY_BATCH) {
        await ctx.copyInto(client, INDEXED_TABLE, columns, lines.slice(i, i + INDEXED_COPY_BATCH));
      }
      ms = performance.now() - started;
    } finally {
      client.release();
    }
    const actual = await ctx.count(INDEXED_TABLE);
    await ctx.query(`DROP TABLE ${INDEXED_TABLE}`);
    return result(this, {
      rows: lines.length,
      ms,
      verified: verify(lines.length, actual, 'rows in the table (no unique key: COPY cannot skip re-sends)'),
      options: { batchRows: INDEXED_COPY_BATCH, indexes: SEVEN_INDEXES.map((s) => s.replace(`CREATE INDEX ON ${INDEXED_TABLE} `, '')), logged: true, input: 'pre-encoded COPY text' },
      notes: `columns ${columns.map(quoteIdent).join(', ')}`,
    });
  },
};
