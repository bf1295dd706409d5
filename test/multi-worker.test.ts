/**
 * Several workers at once (issue 17):
 * - three real `sluice worker` processes on one database, fed by several
 *   producers (two Ingestors, SQL add_job) over many batches and three
 *   streams: every event durable exactly once, every worker drained (its own
 *   drain log lines, whose inserted rows add up to exactly the events), and
 *   each worker's sampled peak of connections stays inside its own budget;
 * - workers in two databases of one cluster: the budget check counts the
 *   other database's workers (connections are a cluster resource). A worker
 *   in db2 that would not fit beside worker A of db1 is refused, naming A and
 *   db1; one that fits starts; two started at the same instant in the two
 *   databases never both register when together they would not fit.
 *
 * pg_stat_activity is cluster-wide and other test files run beside this one on
 * the same server: worker ids carry a random suffix, samplers filter by them,
 * and the capacity arithmetic leaves the other files' claims slack (the
 * refusals do not depend on it: other claims only make a refusal surer).
 */
import { randomBytes } from 'node:crypto';
import { run as runGraphileWorker, type Runner } from 'graphile-worker';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { createSluicePreset, createSluiceTasks, sluicePgTypes } from '../src/index.js';
import { clusterCapacity } from '../src/db/budget.js';
import { budgetClaimsElsewhere } from '../src/db/budget-claims.js';
import { ConnectionSampler } from '../src/db/connection-sampler.js';
import { SluiceError } from '../src/errors.js';
import { createIngestor } from '../src/ingest/create-ingestor.js';
import type { WorkerHandle } from '../src/worker/run-worker.js';
import { runCli, spawnCli, type SpawnedCli } from './helpers/cli.js';
import { createTestDatabase, type TestDatabase } from './helpers/database.js';
import { durableIds, makeEvents, stagedCount } from './helpers/events.js';
import { waitFor } from './helpers/wait.js';
import { startWorker } from './helpers/worker.js';

const db = await createTestDatabase('multi_worker');
const db2 = await createTestDatabase('multi_worker_two');
const run = randomBytes(3).toString('hex');
const RESERVE = 10;

const children: SpawnedCli[] = [];
const inProcess: WorkerHandle[] = [];
afterEach(async () => {
  for (const c of children.splice(0)) {
    if (c.child.exitCode === null && c.child.signalCode === null) c.child.kill('SIGKILL');
    await c.exited;
  }
  await Promise.all(inProcess.splice(0).map((w) => w.stop('test finished').catch(() => undefined)));
});

function spawnWorker(target: TestDatabase, id: string, flags: string[]): SpawnedCli {
  const w = spawnCli(['worker', '--worker-id', id, '--no-migrate', '--reserve', String(RESERVE), ...flags], {
    DATABASE_URL: target.url,
    SLUICE_LOG_LEVEL: 'info',
    SLUICE_BUDGET_SCOPE: 'cluster',
  });
  children.push(w);
  return w;
}

async function startInProcess(target: TestDatabase, id: string, budget: number): Promise<WorkerHandle> {
  const worker = await startWorker(target, {
    workerId: id,
    budgetScope: 'cluster',
    maxConnections: budget,
    concurrency: 2,
    flushers: 1,
    drainers: 1,
    reserve: RESERVE,
  });
  inProcess.push(worker);
  return worker;
}

async function refusal(p: Promise<unknown>): Promise<SluiceError> {
  const err = await p.then(
    (w) => {
      if (w && typeof w === 'object' && 'stop' in w) inProcess.push(w as WorkerHandle);
      return undefined;
    },
    (e: unknown) => e,
  );
  expect(err, 'expected the worker to be refused').toBeInstanceOf(SluiceError);
  return err as SluiceError;
}

interface DrainLine {
  msg?: string;
  worker?: string;
  stream?: string;
  rows?: number;
  inserted?: number;
}

/** Rows each drain of this worker moved and inserted, from its own log lines. */
function drainsOf(w: SpawnedCli): { drains: number; rows: number; inserted: number; streams: Set<string> } {
  const out = { drains: 0, rows: 0, inserted: 0, streams: new Set<string>() };
  for (const line of w.stderr().split('\n')) {
    if (!line.startsWith('{')) continue;
    let parsed: DrainLine;
    try {
      parsed = JSON.parse(line) as DrainLine;
    } catch {
      continue;
    }
    if (parsed.msg !== 'drain: moved rows to the durable table') continue;
    out.drains++;
    out.rows += parsed.rows ?? 0;
    out.inserted += parsed.inserted ?? 0;
    if (parsed.stream) out.streams.add(parsed.stream);
  }
  return out;
}

describe('several workers on one database', () => {
  it('three sluice worker processes ingest and drain together: exactly once, every worker drains, each inside its budget', async () => {
    const streams = ['events', 'mw_orders', 'mw_clicks'];
    for (const s of streams.slice(1)) await db.query(`SELECT sluice.create_stream($1)`, [s]);

    // Three budgets, three plans: pool (concurrency + 1) + flushers + drainers.
    const specs = [
      { id: `mw-${run}-0`, budget: 6, flags: ['--concurrency', '2', '--flushers', '1', '--drainers', '1'] }, // 3 + 1 + 1 = 5
      { id: `mw-${run}-1`, budget: 7, flags: ['--concurrency', '3', '--flushers', '1', '--drainers', '1'] }, // 4 + 1 + 1 = 6
      { id: `mw-${run}-2`, budget: 8, flags: ['--concurrency', '3', '--flushers', '1', '--drainers', '2'] }, // 4 + 1 + 2 = 7
    ];
    const workers = specs.map((s) => spawnWorker(db, s.id, ['--max-connections', String(s.budget), ...s.flags]));
    await Promise.all(workers.map((w) => w.waitForOutput(/worker: started/, 45_000)));
    const samplers = specs.map((s) => new ConnectionSampler(db.url, s.id, 20));

    // Each worker's budget is visible from the other database of the cluster, read from its sessions.
    const seen = await budgetClaimsElsewhere(db2.pool);
    for (const s of specs) {
      expect(seen.find((c) => c.id === s.id), `${s.id} seen from ${db2.name}`).toMatchObject({ database: db.name, budget: s.budget });
    }

    // Producers: an Ingestor per stream pair, SQL add_job batches, and a replay of already-sent events.
    const perStream = new Map(streams.map((s, i) => [s, makeEvents(3_000, 400 + i).events]));
    const expected = new Map(streams.map((s) => [s, new Set(perStream.get(s)!.map((e) => e.event_id))]));
    const clients = await Promise.all(
      ['a', 'b'].map((tag) => createIngestor({ connectionString: db.url, stream: 'events', clientId: `mw-${run}-client-${tag}`, flushRows: 300 })),
    );
    const rounds = 10;
    for (let round = 0; round < rounds; round++) {
      const work: Promise<unknown>[] = [];
      for (const [s, events] of perStream) {
        const slice = events.slice((round * events.length) / rounds, ((round + 1) * events.length) / rounds);
        if (s === 'events') {
          // Two Ingestors (COPY from outside the workers), half each.
          const half = Math.ceil(slice.length / 2);
          work.push(clients[0]!.ingest(slice.slice(0, half)), clients[1]!.ingest(slice.slice(half)));
        } else {
          // SQL producers: ingest jobs of 25 events, taken by whichever worker.
          for (let i = 0; i < slice.length; i += 25) {
            work.push(db.query(`SELECT graphile_worker.add_job('sluice_ingest', $1::json)`, [JSON.stringify({ stream: s, events: slice.slice(i, i + 25) })]));
          }
        }
      }
      // Replays: the previous round's first 40 events of each SQL stream, sent again.
      if (round > 0) {
        for (const s of streams.slice(1)) {
          const prev = perStream.get(s)!.slice(((round - 1) * 3_000) / rounds, ((round - 1) * 3_000) / rounds + 40);
          work.push(db.query(`SELECT graphile_worker.add_job('sluice_ingest', $1::json)`, [JSON.stringify({ stream: s, events: prev })]));
        }
      }
      await Promise.all(work);
      await new Promise((r) => setTimeout(r, 300));
    }
    await Promise.all(clients.map((c) => c.close()));

    await waitFor(
      async () => {
        const jobs = (await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM graphile_worker.jobs WHERE task_identifier = 'sluice_ingest'`)).rows[0]!.n;
        let staged = 0;
        let durable = 0;
        for (const s of streams) {
          staged += await stagedCount(db, s);
          durable += (await durableIds(db, s)).rows;
        }
        return { jobs, staged, durable };
      },
      (st) => st.jobs === 0 && st.staged === 0 && st.durable >= [...expected.values()].reduce((n, e) => n + e.size, 0),
      { what: 'every event drained', timeoutMs: 45_000 },
    );
    const peaks = await Promise.all(samplers.map((s) => s.stop()));

    // Exactly once, per stream.
    let total = 0;
    for (const s of streams) {
      const durable = await durableIds(db, s);
      expect(durable.ids, `stream ${s}`).toEqual(expected.get(s));
      expect(durable.rows, `stream ${s}: no duplicates`).toBe(expected.get(s)!.size);
      total += durable.rows;
    }

    // Every worker drained; the rows the workers report inserting add up to exactly the durable rows.
    const drains = workers.map(drainsOf);
    for (const [i, d] of drains.entries()) {
      expect(d.drains, `${specs[i]!.id} ran drains`).toBeGreaterThan(0);
      expect(d.inserted, `${specs[i]!.id} inserted rows`).toBeGreaterThan(0);
    }
    expect(drains.reduce((n, d) => n + d.inserted, 0)).toBe(total);

    // Each worker's sampled peak inside its own budget; the sum inside the summed budgets.
    for (const [i, p] of peaks.entries()) {
      const s = specs[i]!;
      expect(p.samples, `${s.id} sampled`).toBeGreaterThan(20);
      // The dedicated flush and drain connections are held throughout.
      expect(p.peak, `${s.id} peak`).toBeGreaterThanOrEqual(2);
      expect(p.peak, `${s.id} peak vs budget ${s.budget}`).toBeLessThanOrEqual(s.budget);
      // Every session carries the worker's budget for the other databases.
      expect([...p.names].filter((n) => !n.endsWith(`/b${s.budget}`))).toEqual([]);
    }
    const sumPeaks = peaks.reduce((n, p) => n + p.peak, 0);
    expect(sumPeaks).toBeLessThanOrEqual(specs.reduce((n, s) => n + s.budget, 0));
    process.stdout.write(
      `[multi-worker] ${total} events in 3 streams; per worker (peak/budget, drains, rows inserted): ` +
        specs.map((s, i) => `${s.id} ${peaks[i]!.peak}/${s.budget} ${drains[i]!.drains} ${drains[i]!.inserted}`).join('; ') +
        `; sum of peaks ${sumPeaks}/${specs.reduce((n, s) => n + s.budget, 0)}\n`,
    );

    for (const w of workers) w.child.kill('SIGTERM');
    const exits = await Promise.all(workers.map((w) => w.exited));
    for (const e of exits) expect(e.code, e.stderr.slice(-2000)).toBe(0);
    expect((await db.query(`SELECT id FROM sluice.workers WHERE id LIKE $1`, [`mw-${run}-%`])).rows).toEqual([]);
  });
});

describe('workers in two databases of one cluster', () => {
  it("db2 refuses a worker that would not fit beside db1's worker A, naming A; one that fits starts; racing starts never both fit", async () => {
    const capacity = await clusterCapacity(db.pool, RESERVE);
    // A fills most of what is available, leaving 30: 6 for a worker that fits and 24 of slack for
    // other test files' workers elsewhere on this server (they can only make a refusal surer).
    const aBudget = capacity.available - 30;
    expect(aBudget).toBeGreaterThanOrEqual(10);
    const aId = `mwa-${run}`;
    const a = spawnWorker(db, aId, ['--max-connections', String(aBudget), '--concurrency', '2', '--flushers', '1', '--drainers', '1']);
    await a.waitForOutput(/worker: started/, 45_000);

    // B asks for 31: with A's budget counted, one more than is available; A alone makes it not fit.
    const bId = `mwb-${run}`;
    const refused = await runCli(
      ['worker', '--worker-id', bId, '--no-migrate', '--reserve', String(RESERVE), '--max-connections', '31', '--concurrency', '2', '--flushers', '1', '--drainers', '1'],
      { env: { DATABASE_URL: db2.url, SLUICE_BUDGET_SCOPE: 'cluster' }, timeoutMs: 45_000 },
    );
    expect(refused.code, refused.stderr.slice(-2000)).not.toBe(0);
    expect(refused.code).not.toBeNull();
    expect(refused.stderr).toMatch(/cluster connection budget exceeded/);
    expect(refused.stderr).toContain(`${aId} (${aBudget}) in database ${db.name}`);
    expect(refused.stderr).toMatch(new RegExp(`only ${capacity.available} are available`));
    expect((await db2.query(`SELECT id FROM sluice.workers`)).rows).toEqual([]);
    // The refused worker's sessions (and with them its claim) are gone.
    await waitFor(
      async () => (await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE starts_with(application_name, $1)`, [`sluice/${bId}/`])).rows[0]!.n,
      (n) => n === 0,
      { what: `${bId}'s sessions to end` },
    );

    // The same refusal in-process, with its code.
    const err = await refusal(startInProcess(db2, `${bId}-api`, 31));
    expect(err.code).toBe('cluster_over_budget');
    expect(err.message).toContain(`${aId} (${aBudget}) in database ${db.name}`);

    // sluice's tasks inside a plain graphile-worker in db2 (budget = its dedicated connections): 1 + 1
    // fits and is seen from db1 with its budget; 1 + 30 does not, and its job fails naming A. (Before
    // a sluice worker runs in db2: it would take these jobs itself.)
    const hosted = await hostSluice(db2, `mwh-${run}`, 1);
    try {
      await db2.query(`SELECT graphile_worker.add_job('sluice_health_check', '{}', max_attempts => 1)`);
      await waitFor(async () => (await db2.query(`SELECT 1 FROM sluice.workers WHERE id = $1`, [`mwh-${run}`])).rowCount, (n) => n === 1, {
        what: 'the hosted sluice registered',
      });
      const claim = (await budgetClaimsElsewhere(db.pool)).find((c) => c.id === `mwh-${run}`);
      expect(claim).toEqual({ database: db2.name, id: `mwh-${run}`, budget: 2, connections: 2 });
    } finally {
      await hosted.stop();
    }
    const tooBig = await hostSluice(db2, `mwhbig-${run}`, 30);
    try {
      await db2.query(`SELECT graphile_worker.add_job('sluice_health_check', '{}', max_attempts => 1)`);
      const lastError = await waitFor(
        async () =>
          (await db2.query<{ last_error: string | null }>(`SELECT last_error FROM graphile_worker.jobs WHERE task_identifier = 'sluice_health_check'`)).rows[0]
            ?.last_error ?? null,
        (e) => e !== null,
        { what: 'the hosted sluice job refused' },
      );
      expect(lastError).toMatch(/cluster connection budget exceeded/);
      expect(lastError).toContain(`${aId} (${aBudget}) in database ${db.name}`);
      // Its dedicated connections (opened before the check, to publish the claim) are closed again.
      await waitFor(
        async () => (await db2.query(`SELECT 1 FROM pg_stat_activity WHERE starts_with(application_name, $1)`, [`sluice/mwhbig-${run}/`])).rowCount,
        (n) => n === 0,
        { what: 'the refused dedicated connections closed' },
      );
      expect((await db2.query(`SELECT 1 FROM sluice.workers WHERE id = $1`, [`mwhbig-${run}`])).rowCount).toBe(0);
    } finally {
      await tooBig.stop();
    }

    // A worker of 6 fits and starts; its registration saw A.
    const fit = await startInProcess(db2, `mwfit-${run}`, 6);
    expect(fit.registration.elsewhere.find((c) => c.id === aId)).toMatchObject({ database: db.name, budget: aBudget });
    expect(fit.registration.elsewhereBudget).toBeGreaterThanOrEqual(aBudget);
    expect((await db2.query(`SELECT id, budget FROM sluice.workers`)).rows).toEqual([{ id: `mwfit-${run}`, budget: 6 }]);

    // `sluice budget` in db2 lists A from db1 and counts it.
    const report = await runCli(['budget', '--json', '--reserve', String(RESERVE)], { env: { DATABASE_URL: db2.url, SLUICE_BUDGET_SCOPE: 'cluster' }, timeoutMs: 30_000 });
    expect(report.code, report.stderr).toBe(0);
    const parsed = JSON.parse(report.stdout) as {
      scope: string;
      workers: Array<{ id: string; budget: number }>;
      other_databases: Array<{ database: string; id: string; budget: number; connections: number }>;
      declared: number;
      headroom: number;
      capacity: { available: number };
    };
    expect(parsed.scope).toBe('cluster');
    expect(parsed.workers.map((w) => w.id)).toEqual([`mwfit-${run}`]);
    const aRow = parsed.other_databases.find((c) => c.id === aId);
    expect(aRow).toMatchObject({ database: db.name, budget: aBudget });
    expect(aRow!.connections).toBeGreaterThanOrEqual(2);
    expect(aRow!.connections).toBeLessThanOrEqual(aBudget);
    expect(parsed.declared).toBeGreaterThanOrEqual(aBudget + 6);
    expect(parsed.headroom).toBe(parsed.capacity.available - parsed.declared);
    const text = await runCli(['budget', '--reserve', String(RESERVE)], { env: { DATABASE_URL: db2.url, SLUICE_BUDGET_SCOPE: 'cluster' }, timeoutMs: 30_000 });
    expect(text.stdout).toMatch(/other databases of the cluster/);
    expect(text.stdout).toContain(db.name);
    expect(text.stdout).toContain(aId);

    // Racing starts: C in db1 and D in db2 at the same instant, 20 each. Either fits beside A and the
    // fitting worker (A + 6 + 20 = available − 4), both together do not: never both registered.
    for (let round = 0; round < 4; round++) {
      const ids = [`mwc-${run}-${round}`, `mwd-${run}-${round}`];
      const results = await Promise.allSettled([startWorker(db, race(ids[0]!)), startWorker(db2, race(ids[1]!))]);
      const started = results.filter((r): r is PromiseFulfilledResult<WorkerHandle> => r.status === 'fulfilled').map((r) => r.value);
      inProcess.push(...started);
      const refusedErrs = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected').map((r) => r.reason as unknown);
      expect(started.length, `round ${round}: started ${started.map((w) => w.id).join(', ')}`).toBeLessThanOrEqual(1);
      expect(refusedErrs.length).toBeGreaterThanOrEqual(1);
      for (const e of refusedErrs) {
        expect(e).toBeInstanceOf(SluiceError);
        expect((e as SluiceError).code).toBe('cluster_over_budget');
        expect((e as SluiceError).message).toContain(`${aId} (${aBudget})`);
      }
      const registered = [
        ...(await db.query<{ id: string }>(`SELECT id FROM sluice.workers WHERE id = $1`, [ids[0]])).rows,
        ...(await db2.query<{ id: string }>(`SELECT id FROM sluice.workers WHERE id = $1`, [ids[1]])).rows,
      ];
      expect(registered.length).toBeLessThanOrEqual(1);
      await Promise.all(started.map((w) => w.stop()));
    }

    // --budget-scope database opts out: such a worker is not counted elsewhere, and counts nothing elsewhere.
    const apart = await startWorker(db2, { workerId: `mwdb-${run}`, budgetScope: 'database', maxConnections: 31, concurrency: 2, flushers: 1, drainers: 1, reserve: RESERVE });
    inProcess.push(apart);
    expect(apart.registration.elsewhere).toEqual([]);
    expect((await budgetClaimsElsewhere(db.pool)).find((c) => c.id === `mwdb-${run}`)).toBeUndefined();
    await apart.stop();

    await fit.stop();
    a.child.kill('SIGTERM');
    expect((await a.exited).code).toBe(0);
  });
});

function race(id: string) {
  return { workerId: id, budgetScope: 'cluster' as const, maxConnections: 20, concurrency: 2, flushers: 1, drainers: 1, reserve: RESERVE };
}

/** sluice's task list in a plain graphile-worker run() on `target`, under --budget-scope cluster. */
async function hostSluice(target: TestDatabase, workerId: string, drainers: number): Promise<{ runner: Runner; stop: () => Promise<void> }> {
  const sluice = createSluiceTasks({
    connectionString: target.url,
    flags: { workerId, flushers: 1, drainers, migrate: false, budgetScope: 'cluster', reserve: RESERVE },
    env: {},
  });
  const pgPool = new pg.Pool({ connectionString: target.url, max: 3, types: sluicePgTypes });
  pgPool.on('error', () => undefined);
  const runner = await runGraphileWorker({ pgPool, concurrency: 1, noHandleSignals: true, preset: createSluicePreset(sluice), taskList: sluice.taskList });
  return {
    runner,
    stop: async () => {
      await runner.stop();
      await pgPool.end();
    },
  };
}
