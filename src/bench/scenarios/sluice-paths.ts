/**
 * sluice's own paths: the Ingestor (JSON in, parsed and validated, COPY to
 * staging), `sluice ingest FILE`, SQL add_job with 1 and 100 events per job,
 * and the drain with 1 and 2 drainers.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { unlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { silentLogger } from '../../logger.js';
import { PACKAGE_ROOT } from '../../paths.js';
import { createIngestor } from '../../ingest/create-ingestor.js';
import { drainUntilEmpty } from '../../drain/drain-loop.js';
import { durableTable, stagingTable } from '../../streams/names.js';
import { until, type BenchContext } from '../bench-context.js';
import { result, verify, type Scenario } from '../scenario.js';
import type { GraphileSettings } from './graphile-jobs.js';

const execFileAsync = promisify(execFile);

export const ingestorToStaging: Scenario = {
  id: 'sluice_ingestor',
  title: 'sluice Ingestor → staging (JSON in, parsed + validated, COPY)',
  group: 'sluice',
  async run({ ctx, workload }) {
    const stream = await ctx.freshStream('ingestor');
    const ingestor = await createIngestor({ connectionString: ctx.url, stream: stream.name, ack: 'staged', clientId: 'bench-ingestor' });
    const started = performance.now();
    for (const json of workload.json) await ingestor.push(JSON.parse(json), json);
    await ingestor.flush();
    const ms = performance.now() - started;
    await ingestor.close();
    const actual = await ctx.countThenDrop(stagingTable(stream.name), stream.name);
    return result(this, {
      rows: workload.events.length,
      ms,
      verified: verify(workload.events.length, actual, 'rows staged'),
      options: { ack: 'staged', flushRows: 5_000, flushAgeMs: 50, flushers: 1, input: 'JSON text; JSON.parse + validation + COPY encoding inside the timing' },
    });
  },
};

export const ingestFile: Scenario = {
  id: 'sluice_ingest_file',
  title: 'sluice ingest FILE (NDJSON, CLI process)',
  group: 'sluice',
  async run({ ctx, workload }) {
    const stream = await ctx.freshStream('file');
    const file = path.join(os.tmpdir(), `sluice-bench-${randomBytes(4).toString('hex')}.ndjson`);
    await writeFile(file, `${workload.json.join('\n')}\n`);
    const started = performance.now();
    const { stdout } = await execFileAsync(
      process.execPath,
      [path.join(PACKAGE_ROOT, 'bin', 'sluice.js'), 'ingest', file, '--stream', stream.name, '--json', '--no-progress'],
      { env: { ...process.env, DATABASE_URL: ctx.url, SLUICE_LOG_LEVEL: 'warn' }, maxBuffer: 1 << 24 },
    );
    const wallMs = performance.now() - started;
    await unlink(file).catch(() => undefined);
    const summary = JSON.parse(stdout) as { accepted: number; duration_ms: number };
    const actual = await ctx.countThenDrop(stagingTable(stream.name), stream.name);
    return result(this, {
      rows: summary.accepted,
      ms: summary.duration_ms,
      verified: verify(workload.events.length, actual, 'rows staged'),
      options: { ack: 'staged', timed: 'read + parse + validate + COPY, as reported by the CLI', wallSecondsWithProcessStart: +(wallMs / 1000).toFixed(2) },
    });
  },
};

function workerFlags(settings: GraphileSettings, drainers: number, budget: number): string[] {
  return [
    '--max-connections', String(budget),
    '--concurrency', String(settings.concurrency),
    ...(settings.maxPoolSize ? ['--pool-size', String(settings.maxPoolSize)] : []),
    '--drainers', String(drainers),
    '--local-queue-size', String(settings.localQueueSize ?? 0),
    '--complete-job-batch-delay-ms', String(settings.completeJobBatchDelay ?? -1),
  ];
}

/** Enqueue sluice_ingest jobs in one transaction, then time commit → queue empty (rows staged). */
async function timeAddJob(ctx: BenchContext, payloads: readonly unknown[]): Promise<number> {
  const started = await ctx.enqueueJobs('graphile_worker', 'sluice_ingest', payloads);
  await until(
    async () => (await ctx.query(`SELECT 1 FROM graphile_worker.jobs WHERE task_identifier = 'sluice_ingest' LIMIT 1`)).rowCount === 0,
    'sluice_ingest jobs to complete',
    600_000,
    10,
  );
  return performance.now() - started;
}

export function addJobScenario(eventsPerJob: number, settings: GraphileSettings, drainers: number, budget: number): Scenario {
  return {
    id: `sluice_add_job_${eventsPerJob}`,
    title: `sluice SQL add_job('sluice_ingest'), ${eventsPerJob} event${eventsPerJob > 1 ? 's' : ''} per job`,
    group: 'sluice',
    async run({ ctx, workload, jobWorkload }) {
      const source = eventsPerJob === 1 ? jobWorkload : workload;
      const stream = await ctx.freshStream(`addjob${eventsPerJob}`);
      await ctx.query(`SELECT count(*) FROM graphile_worker.complete_jobs(ARRAY(SELECT id FROM graphile_worker.jobs))`);
      const payloads: unknown[] = [];
      for (let i = 0; i < source.events.length; i += eventsPerJob) {
        payloads.push({ stream: stream.name, events: source.events.slice(i, i + eventsPerJob) });
      }
      // An ingest-only worker (--drainers 0), like the Ingestor scenario: this measures
      // the job path into staging; a drain worker then empties staging, untimed.
      const worker = await ctx.startWorker(`addjob${eventsPerJob}`, workerFlags(settings, 0, budget));
      const sampler = ctx.sampleConnections(worker.id);
      const ms = await timeAddJob(ctx, payloads);
      const peak = await sampler.stop();
      const rss = worker.peakRssMb();
      await worker.stop();
      const drainer = await ctx.startWorker(`addjob${eventsPerJob}-drain`, ['--drainers', String(drainers), '--concurrency', '2']);
      await ctx.query(`SELECT graphile_worker.add_job('sluice_drain', json_build_object('stream', $1::text, 'slot', 0))`, [stream.name]);
      await until(async () => (await ctx.query(`SELECT 1 FROM ${stagingTable(stream.name)} LIMIT 1`)).rowCount === 0, 'staging to drain');
      await drainer.stop();
      const actual = await ctx.countThenDrop(durableTable(stream.name), stream.name);
      return result(this, {
        rows: source.events.length,
        ms,
        verified: verify(source.unique, actual, 'distinct rows durable'),
        options: {
          ...settings,
          eventsPerJob,
          jobs: payloads.length,
          drainers: 0,
          budget,
          timed: 'commit of the enqueue → every job completed (rows staged), on an ingest-only worker; drained afterwards, untimed',
        },
        peakConnections: peak,
        budget,
        workerPeakRssMb: rss,
      });
    },
  };
}

export function drainScenario(drainers: number): Scenario {
  return {
    id: `sluice_drain_${drainers}`,
    title: `sluice drain, ${drainers} drainer${drainers > 1 ? 's' : ''} (stream default batches)`,
    group: 'sluice',
    async run({ ctx, workload }) {
      const stream = await ctx.freshStream(`drain${drainers}`);
      await ctx.fillStaging(stream, workload.events);
      await ctx.query(`VACUUM ANALYZE ${stagingTable(stream.name)}`);
      const clients = await Promise.all(
        Array.from({ length: drainers }, async (_, i) => {
          const c = new pg.Client({ connectionString: ctx.url, application_name: `sluice/bench/drain-${i}` });
          await c.connect();
          return c;
        }),
      );
      const started = performance.now();
      const runs = await Promise.all(
        clients.map((c, i) =>
          drainUntilEmpty(async () => c, { stream, batchRows: stream.drainBatchRows, drainer: `bench/drain-${i}`, maxMs: 600_000, log: silentLogger }),
        ),
      );
      const ms = performance.now() - started;
      await Promise.all(clients.map((c) => c.end()));
      const actual = await ctx.count(durableTable(stream.name));
      const left = await ctx.count(stagingTable(stream.name));
      await ctx.dropStream(stream.name);
      return result(this, {
        rows: workload.events.length,
        ms,
        verified: verify(workload.unique, left === 0 ? actual : -left, 'distinct rows durable, staging empty'),
        options: { drainers, batchRows: stream.drainBatchRows, movedPerDrainer: runs.map((r) => r.moved) },
      });
    },
  };
}
