/**
 * The SQL front door, sluice.ingest(stream, events jsonb) (migrations/00012),
 * as producers call it: autocommit calls, each its own transaction.
 * - 100 events per call from one connection (against the Ingestor: one producer each);
 * - 1 event per call from 8 connections at once, against graphile-worker's
 *   add_job measured the same way (8 connections, 1 job per call, autocommit):
 *   the rate an app gets enqueueing one event per request.
 * Timed: first call → last call's commit. Counted: rows staged (jobs queued).
 */
import pg from 'pg';
import { stagingTable } from '../../streams/names.js';
import type { BenchContext, Workload } from '../bench-context.js';
import { result, verify, type Scenario } from '../scenario.js';

export const SQL_INGEST_CLIENTS = 8;
const INGEST_SQL = 'SELECT accepted, rejected FROM sluice.ingest($1, $2::jsonb)';
const ADD_JOB_SQL = `SELECT graphile_worker.add_job('sluice_bench_noop', $1::json)`;
const NOOP_JOBS = `SELECT count(*)::int AS n FROM graphile_worker.jobs WHERE task_identifier = 'sluice_bench_noop'`;
// graphile-worker's public API (complete_jobs deletes them), not its private tables.
const DELETE_NOOP_JOBS = `SELECT count(*) FROM graphile_worker.complete_jobs(ARRAY(SELECT id FROM graphile_worker.jobs WHERE task_identifier = 'sluice_bench_noop'))`;

/** Call `sql` once per batch, the batches dealt round-robin over `clients` connections; returns ms. */
async function callConcurrently(ctx: BenchContext, clients: number, batches: readonly unknown[][], sql: string, args: (batch: unknown[]) => unknown[]): Promise<number> {
  const connections = await Promise.all(
    Array.from({ length: clients }, async (_, i) => {
      const c = new pg.Client({ connectionString: ctx.url, application_name: `sluice/bench/sql-producer-${i}` });
      await c.connect();
      return c;
    }),
  );
  try {
    const started = performance.now();
    await Promise.all(
      connections.map(async (c, i) => {
        for (let b = i; b < batches.length; b += clients) await c.query(sql, args(batches[b] as unknown[]));
      }),
    );
    return performance.now() - started;
  } finally {
    await Promise.all(connections.map((c) => c.end()));
  }
}

function batchesOf(workload: Workload, size: number): unknown[][] {
  const out: unknown[][] = [];
  for (let i = 0; i < workload.events.length; i += size) out.push(workload.events.slice(i, i + size));
  return out;
}

export function sqlIngestScenario(eventsPerCall: number, clients: number): Scenario {
  return {
    id: `sluice_sql_ingest_${eventsPerCall}x${clients}`,
    title: `sluice SQL sluice.ingest(), ${eventsPerCall} event${eventsPerCall > 1 ? 's' : ''} per call, ${clients} connection${clients > 1 ? 's' : ''}`,
    group: 'sluice',
    async run({ ctx, workload, jobWorkload }) {
      const source = eventsPerCall === 1 ? jobWorkload : workload;
      const stream = await ctx.freshStream(`sql${eventsPerCall}x${clients}`);
      const ms = await callConcurrently(ctx, clients, batchesOf(source, eventsPerCall), INGEST_SQL, (batch) => [stream.name, JSON.stringify(batch)]);
      const actual = await ctx.countThenDrop(stagingTable(stream.name), stream.name);
      return result(this, {
        rows: source.events.length,
        ms,
        verified: verify(source.events.length, actual, 'rows staged'),
        options: { eventsPerCall, clients, transaction: 'one per call (autocommit)', timed: 'first call → last commit; rows staged, not drained' },
      });
    },
  };
}

/** graphile-worker's add_job, one job per call from `clients` connections (no worker: the enqueue rate). */
export function addJobConcurrent(clients: number): Scenario {
  return {
    id: `alt_gw_add_job_1x${clients}`,
    title: `graphile-worker add_job, 1 job per call, ${clients} connections (enqueue only)`,
    group: 'alternative',
    async run({ ctx, jobWorkload }) {
      await ctx.query(DELETE_NOOP_JOBS);
      const ms = await callConcurrently(ctx, clients, batchesOf(jobWorkload, 1), ADD_JOB_SQL, (batch) => [JSON.stringify({ events: batch })]);
      const actual = (await ctx.query<{ n: number }>(NOOP_JOBS)).rows[0]?.n ?? 0;
      await ctx.query(DELETE_NOOP_JOBS);
      return result(this, {
        rows: jobWorkload.events.length,
        ms,
        verified: verify(jobWorkload.events.length, actual, 'jobs queued'),
        options: { clients, payload: '{"events": [event]}', transaction: 'one per call (autocommit)', timed: 'first call → last commit' },
      });
    },
  };
}
