/** `sluice partitions list|rotate`: what exists per stream, and the rotation (plan, then do it). */
import type { Argv, CommandModule } from 'yargs';
import { connectClient, createPool } from '../db/connections.js';
import { SluiceError } from '../errors.js';
import { readPartitions } from '../partitions/catalog.js';
import { headroomOf } from '../partitions/plan.js';
import { monthLabel, monthOf } from '../partitions/months.js';
import { rotateStreams, type RotationReport } from '../partitions/rotate.js';
import { listStreams, requireStream } from '../streams/registry.js';
import { formatBytes } from '../format.js';
import { printJson, globalOptions, say, withRuntime, type GlobalArgs } from './runtime.js';
import { renderTable } from './table.js';

const LAST_RUN = `
SELECT started_at, finished_at, created, detached, finalized, dropped, archived, rejected, skipped, blockers, error
  FROM sluice.partition_runs WHERE stream = $1 ORDER BY id DESC LIMIT 1`;

interface ListArgs extends GlobalArgs {
  stream?: string;
  json?: boolean;
}

/** The clock: --now, else the wall clock plus --clock-offset-ms / SLUICE_CLOCK_OFFSET_MS (as the worker). */
function clock(now: string | undefined, offsetMs: number): Date {
  if (now === undefined) return new Date(Date.now() + offsetMs);
  const at = new Date(now);
  if (Number.isNaN(at.getTime())) throw new SluiceError('invalid_now', `invalid --now ${JSON.stringify(now)}: an ISO date such as 2027-03-15`);
  return at;
}

const list: CommandModule<object, ListArgs> = {
  command: 'list',
  describe: 'Partitions per stream: name, range, estimated rows, size, state (attached / detach pending / detached / archived), premake headroom',
  builder: (y) =>
    globalOptions(y)
      .option('stream', { type: 'string', describe: 'Only this stream' })
      .option('json', { type: 'boolean', describe: 'Print JSON' }) as Argv<ListArgs>,
  handler: (argv) =>
    withRuntime(argv, async ({ db, config }) => {
      const client = await connectClient(db.url, 'sluice/cli/partitions');
      try {
        const streams = argv.stream ? [await requireStream(client, argv.stream)] : await listStreams(client);
        const thisMonth = monthOf(Date.now() + config.clockOffsetMs);
        const out = [];
        for (const stream of streams) {
          const partitions = await readPartitions(client, stream.name);
          const headroom = headroomOf(partitions, thisMonth);
          const run = (
            await client.query(LAST_RUN, [stream.name])
          ).rows[0];
          out.push({
            stream: stream.name,
            retention_months: stream.retentionMonths,
            retention_mode: stream.retentionMode,
            premake_months: stream.premakeMonths,
            headroom_months: headroom.monthsAhead,
            has_current_month: headroom.hasCurrent,
            partitions: partitions.map((p) => ({
              name: p.name,
              schema: p.schema,
              from: monthLabel(p.month),
              to: monthLabel(p.month + 1),
              state: p.state,
              estimated_rows: p.estimatedRows < 0 ? null : p.estimatedRows,
              bytes: p.bytes,
            })),
            last_run: run ?? null,
          });
        }
        if (argv.json) {
          printJson(out);
          return;
        }
        for (const s of out) {
          const retention = s.retention_months === null ? 'no retention' : `retention ${s.retention_months} months (${s.retention_mode})`;
          process.stdout.write(
            `${s.stream}: ${retention}; premake ${s.premake_months}, headroom ${s.headroom_months} months ahead${s.has_current_month ? '' : ' (NO partition for this month)'}\n`,
          );
          process.stdout.write(
            `${renderTable(
              ['partition', 'from', 'to', 'state', 'rows≈', 'size'],
              s.partitions.map((p) => [`${p.schema}.${p.name}`, p.from, p.to, p.state.replace('_', ' '), p.estimated_rows ?? 'not analysed', formatBytes(p.bytes)]),
            )}\n`,
          );
          const r = s.last_run as Record<string, unknown> | null;
          if (r) {
            process.stdout.write(
              `last rotation ${(r.started_at as Date).toISOString()}: created ${(r.created as string[]).length}, detached ${(r.detached as string[]).length}, ` +
                `finalized ${(r.finalized as string[]).length}, dropped ${(r.dropped as string[]).length}, archived ${(r.archived as string[]).length}, ` +
                `rejected ${r.rejected}, skipped ${(r.skipped as unknown[]).length}${r.error ? `, error: ${r.error}` : ''}\n`,
            );
          }
          process.stdout.write('\n');
        }
      } finally {
        await client.end();
      }
    }),
};

interface RotateArgs extends GlobalArgs {
  stream?: string;
  dryRun?: boolean;
  now?: string;
  json?: boolean;
}

function describePlan(r: RotationReport): string {
  const p = r.plan;
  if (!p) return `${r.stream}: no plan`;
  const names = (xs: ReadonlyArray<{ name: string }>) => (xs.length ? xs.map((x) => x.name).join(', ') : '—');
  return [
    `${r.stream} at ${r.clockAt} (window ${monthLabel(p.window.lo)} … ${monthLabel(p.window.hi - 1)}${p.keepFrom === undefined ? '' : `, keep from ${monthLabel(p.keepFrom)}`}):`,
    `  finalize: ${names(p.finalize)}`,
    `  premake:  ${names(p.premake)}`,
    `  expire:   ${names(p.expire)} (${p.mode})`,
    ...(p.dispose.length ? [`  ${p.mode}:    ${names(p.dispose)} (detached earlier)`] : []),
  ].join('\n');
}

const rotate: CommandModule<object, RotateArgs> = {
  command: 'rotate',
  describe: 'Print the rotation plan (finalize, premake, retention), then do it (what the hourly task does)',
  builder: (y) =>
    globalOptions(y)
      .option('stream', { type: 'string', describe: 'Only this stream' })
      .option('dry-run', { type: 'boolean', describe: 'Print the plan only' })
      .option('now', { type: 'string', describe: 'Plan at this time instead of now (ISO date), e.g. to preview retention' })
      .option('json', { type: 'boolean', describe: 'Print JSON reports' }) as Argv<RotateArgs>,
  handler: (argv) =>
    withRuntime(argv, async ({ db, config, log, signal }) => {
      const client = await connectClient(db.url, 'sluice/cli/partitions');
      const observer = createPool(db.url, 'sluice/cli/partitions-observer', 1, log);
      try {
        const streams = argv.stream ? [await requireStream(client, argv.stream)] : await listStreams(client);
        const options = { now: clock(argv.now, config.clockOffsetMs), runner: `cli/${config.workerId}`, log, signal };
        const plans = await rotateStreams(client, observer, streams, { ...options, dryRun: true });
        if (!argv.json) for (const r of plans) process.stdout.write(`${describePlan(r)}\n`);
        if (argv.dryRun) {
          if (argv.json) printJson(plans);
          return;
        }
        // Staged rows of expiring months are rejected with a reason here (a worker's run drains them first).
        const reports = await rotateStreams(client, observer, streams, options);
        if (argv.json) printJson(reports);
        for (const r of reports) {
          const line = `${r.stream}: created ${r.created.length}, finalized ${r.finalized.length}, detached ${r.detached.length}, dropped ${r.dropped.length}, archived ${r.archived.length}, rejected ${r.rejected} staged rows`;
          say(line);
          for (const s of r.skipped) say(`  skipped ${s.step}${s.partition ? ` ${s.partition}` : ''}: ${s.reason}`);
          if (r.error) say(`  error: ${r.error}`);
        }
        if (reports.some((r) => r.error)) process.exitCode = 1;
      } finally {
        await observer.end();
        await client.end();
      }
    }),
};

export const partitionsCommand: CommandModule = {
  command: 'partitions <command>',
  describe: 'Month partitions: list them, rotate them (premake, retention, finalize)',
  builder: (y) => y.command(list).command(rotate).demandCommand(1),
  handler: () => undefined,
};
