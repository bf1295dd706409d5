/**
 * End to end: producers and drainers at once, measured until every event is
 * durable. At full speed (budget 16 and budget 4), and at half the measured
 * full-speed rate to report the staged→durable lag a live stream sees
 * (drained_at − received_at per row).
 */
import { openIngestor } from '../../ingest/create-ingestor.js';
import { durableTable, stagingTable } from '../../streams/names.js';
import { until, type BenchContext, type Workload } from '../bench-context.js';
import { verify, type Scenario, type ScenarioResult } from '../scenario.js';

export interface WorkerPlan {
  readonly budget: number;
  readonly concurrency: number;
  readonly drainers: number;
}

export const BUDGET_16: WorkerPlan = { budget: 16, concurrency: 8, drainers: 2 };
export const BUDGET_4: WorkerPlan = { budget: 4, concurrency: 1, drainers: 1 };

const LAG = `
SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY lag_ms) AS p50,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY lag_ms) AS p99,
       max(lag_ms) AS max
  FROM (SELECT extract(epoch FROM drained_at - received_at) * 1000 AS lag_ms FROM %TABLE%) l`;

async function lagOf(ctx: BenchContext, table: string): Promise<{ p50: number; p99: number; max: number }> {
  const { rows } = await ctx.query<{ p50: number; p99: number; max: number }>(LAG.replace('%TABLE%', table));
  const r = rows[0] ?? { p50: NaN, p99: NaN, max: NaN };
  return { p50: Math.round(Number(r.p50)), p99: Math.round(Number(r.p99)), max: Math.round(Number(r.max)) };
}

async function runEndToEnd(
  ctx: BenchContext,
  id: string,
  workload: Workload,
  plan: WorkerPlan,
  ratePerSecond: number | undefined,
): Promise<Omit<ScenarioResult, 'id' | 'title' | 'group'>> {
  const stream = await ctx.freshStream(id);
  const worker = await ctx.startWorker(id, [
    '--max-connections', String(plan.budget),
    '--concurrency', String(plan.concurrency),
    '--drainers', String(plan.drainers),
  ]);
  const sampler = ctx.sampleConnections(worker.id);
  const ingestor = await openIngestor({ connectionString: ctx.url, stream: stream.name, ack: 'staged', drainSlots: plan.drainers, clientId: `bench-${id}-producer` });
  const started = performance.now();
  if (ratePerSecond === undefined) {
    for (const json of workload.json) await ingestor.push(JSON.parse(json), json);
  } else {
    // Paced producer: every 5 ms, send what the target rate allows so far.
    let sent = 0;
    while (sent < workload.json.length) {
      const due = Math.min(workload.json.length, Math.floor(((performance.now() - started) / 1000) * ratePerSecond));
      for (; sent < due; sent++) {
        const json = workload.json[sent] as string;
        ingestor.offer(JSON.parse(json), json);
      }
      await new Promise((r) => setTimeout(r, 5));
    }
  }
  await ingestor.flush();
  await until(async () => (await ctx.query(`SELECT 1 FROM ${stagingTable(stream.name)} LIMIT 1`)).rowCount === 0, 'staging to drain', 600_000, 5);
  const ms = performance.now() - started;
  const peak = await sampler.stop();
  const rss = worker.peakRssMb();
  await ingestor.close();
  await worker.stop();
  const actual = await ctx.count(durableTable(stream.name));
  const lagMs = await lagOf(ctx, durableTable(stream.name));
  await ctx.dropStream(stream.name);
  return {
    rows: workload.events.length,
    seconds: ms / 1000,
    rowsPerSecond: (workload.events.length * 1000) / ms,
    verified: verify(workload.unique, actual, 'distinct rows durable, staging empty'),
    options: { ...plan, producer: 'one Ingestor (own connection), JSON in', ratePerSecond: ratePerSecond ?? 'max', worker: 'sluice worker child process' },
    peakConnections: peak,
    budget: plan.budget,
    workerPeakRssMb: rss,
    lagMs,
  };
}

export function endToEnd(id: string, title: string, plan: WorkerPlan): Scenario {
  return {
    id,
    title,
    group: 'sluice',
    async run({ ctx, workload }) {
      return { id: this.id, title: this.title, group: this.group, ...(await runEndToEnd(ctx, id, workload, plan, undefined)) };
    },
  };
}

/** At half the rate the full-speed run (budget 16) reached, to report lag under a live load. */
export const endToEndHalfRate: Scenario = {
  id: 'sluice_e2e_half_rate',
  title: 'sluice end to end at 50% of the measured max rate',
  group: 'sluice',
  async run({ ctx, workload, results }) {
    const max = results.get('sluice_e2e_budget16');
    if (!max) throw new Error('bench: sluice_e2e_half_rate needs sluice_e2e_budget16 to run first');
    const rate = Math.round(max.rowsPerSecond / 2);
    return { id: this.id, title: this.title, group: this.group, ...(await runEndToEnd(ctx, 'half', workload, BUDGET_16, rate)) };
  },
};

