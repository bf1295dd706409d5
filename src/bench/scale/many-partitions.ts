/**
 * "Over 1,000 partitions": a separate stream with a thousand monthly
 * partitions (this month back ~83 years, through sluice.ensure_partition, as
 * the drain's on-demand creation makes them), then `sluice health` and
 * `sluice partitions list` timed on it — the same functions the commands run
 * (runHealthChecks, readPartitions), in this process, without CLI start-up.
 */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { STALE_AFTER_MS_DEFAULT } from '../../config.js';
import { PACKAGE_ROOT } from '../../paths.js';
import { runHealthChecks } from '../../health/report.js';
import { summarise } from '../../health/store.js';
import { readPartitions } from '../../partitions/catalog.js';
import { quoteIdent } from '../../streams/names.js';
import { median } from '../scenario.js';
import { BENCH_COLUMNS, type BenchContext } from '../bench-context.js';

export const MANY_PARTITIONS_STREAM = 'bench_scale_many';
export const MANY_PARTITIONS_TARGET = 1_000;
const TIMING_RUNS = 3;
/** Months per statement: each partition locks its table and indexes until commit. */
const MONTHS_PER_CALL = 25;

const ENSURE_MONTHS_BACK = `
SELECT count(*) FILTER (WHERE sluice.ensure_partition($1, (sluice.utc_month(now()) - make_interval(months => m))::date))::int AS created
  FROM generate_series($2::int, $3::int) AS m`;

export interface TimedCall {
  readonly median_ms: number;
  readonly runs_ms: number[];
}

export interface ManyPartitionsResult {
  readonly stream: string;
  readonly partitions: number;
  readonly oldest: string;
  readonly create_seconds: number;
  /** The health report on the same database before the thousand partitions were made. */
  readonly health_before: TimedCall;
  readonly health: TimedCall & { readonly status: string; readonly findings: number; readonly worst: ReturnType<typeof summarise>['worst'] };
  readonly partitions_list: TimedCall & { readonly listed: number };
  /** The commands themselves, once each, as a user runs them: wall time including Node's start-up. */
  readonly cli_ms: { readonly health: number; readonly partitions_list: number };
  readonly how: string;
}

/** Wall time of `sluice ARGS` (exit codes 0–2 are answers: health exits 1 on warn, 2 on critical). */
function timeCli(url: string, args: string[]): Promise<number> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [path.join(PACKAGE_ROOT, 'bin', 'sluice.js'), ...args],
      { env: { ...process.env, DATABASE_URL: url, SLUICE_LOG_LEVEL: 'warn' }, maxBuffer: 1 << 26 },
      (err, _stdout, stderr) => {
        const code = (err as { code?: unknown } | null)?.code;
        if (err && !(typeof code === 'number' && code <= 2)) reject(new Error(`bench: sluice ${args.join(' ')} failed: ${stderr.slice(-1000)}`));
        else resolve(Math.round(performance.now() - started));
      },
    );
  });
}

async function timed<T>(run: () => Promise<T>): Promise<{ timing: TimedCall; last: T }> {
  const runs: number[] = [];
  let last: T | undefined;
  for (let i = 0; i < TIMING_RUNS; i++) {
    const started = performance.now();
    last = await run();
    runs.push(Math.round(performance.now() - started));
  }
  return { timing: { median_ms: median(runs), runs_ms: runs }, last: last as T };
}

/** Make the stream and its partitions, time both reports, and leave the stream for dropManyPartitions. */
export async function timeManyPartitions(ctx: BenchContext, target = MANY_PARTITIONS_TARGET): Promise<ManyPartitionsResult> {
  const name = MANY_PARTITIONS_STREAM;
  await dropManyPartitions(ctx);
  const healthBefore = await timed(() => runHealthChecks(ctx.admin, { staleAfterMs: STALE_AFTER_MS_DEFAULT }));
  // max_past_months 1200 (the most a stream allows): the window admits a century back.
  await ctx.query('SELECT sluice.create_stream($1, $2::jsonb, $3::jsonb)', [name, JSON.stringify(BENCH_COLUMNS), JSON.stringify({ max_past_months: 1200 })]);
  const started = performance.now();
  let have = (await readPartitions(ctx.admin, name)).length;
  for (let back = 2; have < target; back += MONTHS_PER_CALL) {
    const last = back + Math.min(MONTHS_PER_CALL, target - have) - 1;
    const { rows } = await ctx.query<{ created: number }>(ENSURE_MONTHS_BACK, [name, back, last]);
    have += rows[0]?.created ?? 0;
    if (!rows[0]?.created) throw new Error(`bench: could not create partitions ${back}–${last} months back for ${name}`);
  }
  const createSeconds = (performance.now() - started) / 1000;
  const health = await timed(() => runHealthChecks(ctx.admin, { staleAfterMs: STALE_AFTER_MS_DEFAULT }));
  const list = await timed(() => readPartitions(ctx.admin, name));
  const partitions = list.last;
  const cli = {
    health: await timeCli(ctx.url, ['health', '--json']),
    partitions_list: await timeCli(ctx.url, ['partitions', 'list', '--stream', name, '--json']),
  };
  return {
    stream: name,
    partitions: partitions.length,
    oldest: partitions[0]?.name ?? '',
    create_seconds: +createSeconds.toFixed(2),
    health_before: healthBefore.timing,
    health: { ...health.timing, status: health.last.status, findings: health.last.findings.length, worst: summarise(health.last).worst },
    partitions_list: { ...list.timing, listed: partitions.length },
    cli_ms: cli,
    how: `in-process runHealthChecks (sluice health) and readPartitions (sluice partitions list), median of ${TIMING_RUNS} runs, over every table incl. the scale stream`,
  };
}

/**
 * Drop the stream, its partitions first in groups: one DROP of a thousand
 * partitions would lock them all in one transaction (past the lock table).
 */
export async function dropManyPartitions(ctx: BenchContext): Promise<void> {
  const names = (await readPartitions(ctx.admin, MANY_PARTITIONS_STREAM)).map((p) => `${quoteIdent(p.schema)}.${quoteIdent(p.name)}`);
  for (let i = 0; i < names.length; i += MONTHS_PER_CALL) {
    await ctx.query(`DROP TABLE IF EXISTS ${names.slice(i, i + MONTHS_PER_CALL).join(', ')}`);
  }
  await ctx.dropStream(MANY_PARTITIONS_STREAM);
}
