/**
 * Chaos: real `sluice worker` processes killed with SIGKILL while producers
 * keep ingesting through every front door (Ingestor with ack durable and ack
 * staged, SQL add_job with ack durable and ack staged, the SQL function
 * sluice.ingest() in the producer's transaction, and `sluice ingest FILE --ack
 * durable` processes). Kills rotate through four aims: a random instant, during
 * the worker's COPY into staging, mid-drain (inside the drain's transaction),
 * and during partition creation; an aimed kill holds a lock from a second
 * session so the worker is caught waiting at that step, then kills it (the
 * summary says how many aims were hit). After every kill a
 * new worker starts; the trial records how long until (c) it registered (not
 * refused), (b) the dead worker's jobs were released, (a) drains ran again.
 * At the end: every durable-acked event durable exactly once, every
 * staged-acked event durable (no Postgres crash here), no duplicates, no job
 * left locked, staging empty. Prints one summary line.
 */
import { randomInt } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { createIngestor, type ClientIngestor } from '../../src/ingest/create-ingestor.js';
import { spawnCli, type SpawnedCli } from '../helpers/cli.js';
import { createTestDatabase } from '../helpers/database.js';
import { makeEvents } from '../helpers/events.js';
import { waitFor } from '../helpers/wait.js';
import { startWorker } from '../helpers/worker.js';

const TRIALS = Number(process.env.SLUICE_CHAOS_TRIALS ?? 20);
const STREAM = 'chaos';
const db = await createTestDatabase('chaos');

interface Trial {
  aim: Aim;
  hit: boolean;
  registeredMs: number;
  refusals: number;
  releasedMs: number | null;
  drainingMs: number | null;
}

const count = async (sql: string, values?: unknown[]) => (await db.query<{ n: number }>(sql, values)).rows[0]?.n ?? 0;
const stagedCount = () => count(`SELECT count(*)::int AS n FROM sluice_staging.${STREAM}`);

/** A producer pushing batches until stopped; `acked` holds the event ids whose flush resolved. */
function producer(ingestor: ClientIngestor, seed: number, batch: number) {
  const acked: string[] = [];
  let stopped = false;
  let round = 0;
  const done = (async () => {
    while (!stopped) {
      const { events } = makeEvents(batch, seed * 100_000 + round++, {}, 0);
      for (const e of events) await ingestor.push(e);
      await ingestor.flush();
      acked.push(...events.map((e) => e.event_id));
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  return { acked, stop: async () => ((stopped = true), await done) };
}

/** SQL add_job producer: a job's events count once its job has completed (ack durable) or as soon as it is enqueued (ack staged). */
function sqlProducer(seed: number, ack: 'durable' | 'staged') {
  const jobs: Array<{ id: string; ids: string[] }> = [];
  let stopped = false;
  let round = 0;
  const done = (async () => {
    while (!stopped) {
      const { events } = makeEvents(40, seed * 100_000 + round++, {}, 0);
      const { rows } = await db.query<{ id: string }>(`SELECT (graphile_worker.add_job('sluice_ingest', $1::json)).id::text AS id`, [
        JSON.stringify({ stream: STREAM, events, ack }),
      ]);
      jobs.push({ id: rows[0]!.id, ids: events.map((e) => e.event_id) });
      await new Promise((r) => setTimeout(r, 50));
    }
  })();
  return { jobs, stop: async () => ((stopped = true), await done) };
}

/** sluice.ingest() producer: the events are staged (and must become durable) once its transaction commits. */
function sqlFunctionProducer(seed: number) {
  const acked: string[] = [];
  let stopped = false;
  let round = 0;
  const done = (async () => {
    while (!stopped) {
      const { events } = makeEvents(50, seed * 100_000 + round++, {}, 0);
      const { rows } = await db.query<{ accepted: number }>(`SELECT accepted FROM sluice.ingest($1, $2::jsonb)`, [STREAM, JSON.stringify(events)]);
      if (rows[0]?.accepted !== events.length) throw new Error(`sluice.ingest accepted ${rows[0]?.accepted} of ${events.length}`);
      acked.push(...events.map((e) => e.event_id));
      await new Promise((r) => setTimeout(r, 50));
    }
  })();
  return { acked, stop: async () => ((stopped = true), await done) };
}

/** `sluice ingest FILE --ack durable` processes, one after another: a file's events count once its process exits 0. */
function cliProducer(seed: number) {
  const acked: string[] = [];
  let stopped = false;
  let round = 0;
  let runs = 0;
  let failures = 0;
  const done = (async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'sluice-chaos-cli-'));
    try {
      while (!stopped) {
        const { events } = makeEvents(200, seed * 100_000 + round++, {}, 0);
        const file = path.join(dir, `batch-${round}.ndjson`);
        await writeFile(file, events.map((e) => JSON.stringify(e)).join('\n') + '\n');
        const run = await spawnCli(['ingest', file, '--stream', STREAM, '--ack', 'durable'], { DATABASE_URL: db.url }).exited;
        runs++;
        if (run.code === 0) acked.push(...events.map((e) => e.event_id));
        else failures++;
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  })();
  return { acked, runs: () => runs, failures: () => failures, stop: async () => ((stopped = true), await done) };
}

type Aim = 'random' | 'copy' | 'drain' | 'partition';
const AIMS: readonly Aim[] = ['random', 'copy', 'drain', 'partition'];

// A worker session caught waiting on a lock at the aimed step. Its sessions are named sluice/<worker-id>/<role>.
const CAUGHT_WAITING = `
SELECT count(*)::int AS n FROM pg_stat_activity
 WHERE datname = current_database() AND starts_with(application_name, $1)
   AND wait_event_type = 'Lock' AND query ~* $2`;
const AIM_QUERY: Record<Exclude<Aim, 'random'>, string> = {
  copy: '^\\s*COPY',
  drain: 'sluice_data\\.|sluice_staging\\.',
  partition: 'ensure_partition|PARTITION OF',
};

/**
 * Hold a lock that stops the worker at the aimed step, wait until one of its
 * sessions is seen waiting there, and return the blocker (to release after the
 * kill) and whether the aim was hit within 10 s.
 */
async function aimAt(aim: Exclude<Aim, 'random'>, workerId: string): Promise<{ blocker: pg.Client; hit: boolean }> {
  const blocker = new pg.Client({ connectionString: db.url, application_name: 'sluice-chaos-blocker' });
  await blocker.connect();
  await blocker.query('BEGIN');
  if (aim === 'copy') {
    // COPY takes ROW EXCLUSIVE on staging: SHARE blocks it (SQL ingest jobs keep coming, so the worker's flushers COPY soon).
    await blocker.query(`LOCK TABLE sluice_staging.${STREAM} IN SHARE MODE`);
  } else if (aim === 'drain') {
    // The drain's insert into the durable table waits inside its transaction.
    await blocker.query(`LOCK TABLE sluice_data.${STREAM} IN SHARE MODE`);
  } else {
    // Attaching a partition takes SHARE UPDATE EXCLUSIVE on the parent: holding it blocks the attach, not the drains.
    // Then one more premade month, and a rotation (rotations read the stream's row afresh; any that runs now is caught).
    await blocker.query(`LOCK TABLE sluice_data.${STREAM} IN SHARE UPDATE EXCLUSIVE MODE`);
    await db.query(`UPDATE sluice.streams SET premake_months = premake_months + 1 WHERE name = $1`, [STREAM]);
    await db.query(`SELECT graphile_worker.add_job('sluice_rotate_partitions', '{}'::json)`);
  }
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if ((await count(CAUGHT_WAITING, [`sluice/${workerId}/`, AIM_QUERY[aim]])) > 0) return { blocker, hit: true };
    await new Promise((r) => setTimeout(r, 20));
  }
  return { blocker, hit: false };
}

async function startChild(id: string): Promise<{ w: SpawnedCli; refusals: number }> {
  for (let refusals = 0; ; refusals++) {
    const w = spawnCli(['worker', '--worker-id', id, '--no-migrate', '--concurrency', '4', '--drainers', '1'], { DATABASE_URL: db.url, SLUICE_LOG_LEVEL: 'info' });
    try {
      await w.waitForOutput(/worker: started/, 60_000);
      return { w, refusals };
    } catch (err) {
      if (!/cluster connection budget exceeded/.test(w.stderr()) || refusals > 50) throw err;
    }
  }
}

describe('chaos: SIGKILL workers under continuous ingest', () => {
  it(`${TRIALS} kill trials: nothing acknowledged is lost or duplicated, no job left locked, staging drains`, async () => {
    await db.query(`SELECT sluice.create_stream($1)`, [STREAM]);
    const durableIngestor = await createIngestor({ connectionString: db.url, stream: STREAM, ack: 'durable', flushRows: 200, flushAgeMs: 50 });
    const stagedIngestor = await createIngestor({ connectionString: db.url, stream: STREAM, ack: 'staged', flushRows: 200, flushAgeMs: 50 });
    const durable = producer(durableIngestor, 1, 100);
    const staged = producer(stagedIngestor, 2, 200);
    const sql = sqlProducer(3, 'durable');
    const sqlStaged = sqlProducer(4, 'staged');
    const sqlFunction = sqlFunctionProducer(5);
    const cli = cliProducer(6);
    const premadeBefore = await count(`SELECT premake_months AS n FROM sluice.streams WHERE name = $1`, [STREAM]);

    const trials: Trial[] = [];
    let current = await startChild('chaos-0');
    for (let t = 1; t <= TRIALS; t++) {
      const aim = AIMS[(t - 1) % AIMS.length]!;
      await new Promise((r) => setTimeout(r, randomInt(200, aim === 'random' ? 2500 : 1000)));
      const deadId = `chaos-${t - 1}`;
      const lockIds = (await db.query<{ job_lock_ids: string[] }>(`SELECT job_lock_ids FROM sluice.workers WHERE id = $1`, [deadId])).rows[0]?.job_lock_ids ?? [];
      const aimed = aim === 'random' ? undefined : await aimAt(aim, deadId);
      current.w.child.kill('SIGKILL');
      await current.w.exited;
      const killedAt = Date.now();
      if (aimed) {
        await aimed.blocker.query('COMMIT');
        await aimed.blocker.end();
      }
      current = await startChild(`chaos-${t}`);
      const startedAt = Date.now();
      const registeredMs = startedAt - killedAt;
      const stagedAtStart = await stagedCount();
      let releasedMs: number | null = null;
      let drainingMs: number | null = null;
      const deadline = startedAt + 20_000;
      while ((releasedMs === null || drainingMs === null) && Date.now() < deadline) {
        if (releasedMs === null) {
          const locked = await count(`SELECT count(*)::int AS n FROM graphile_worker._private_jobs WHERE locked_by = ANY($1::text[])`, [lockIds]);
          if (locked === 0) releasedMs = Date.now() - startedAt;
        }
        if (drainingMs === null && (stagedAtStart === 0 || (await stagedCount()) < stagedAtStart)) drainingMs = Date.now() - startedAt;
        await new Promise((r) => setTimeout(r, 50));
      }
      trials.push({ aim, hit: aimed?.hit ?? true, registeredMs, refusals: current.refusals, releasedMs, drainingMs });
    }

    await Promise.all([durable.stop(), staged.stop(), sql.stop(), sqlStaged.stop(), sqlFunction.stop(), cli.stop()]);
    await Promise.all([durableIngestor.close(), stagedIngestor.close()]);
    current.w.child.kill('SIGTERM');
    await current.w.exited;
    const final = await startWorker(db, { drainers: 1, concurrency: 4 });
    await waitFor(stagedCount, (n) => n === 0, { what: 'staging drained', timeoutMs: 120_000 });
    await waitFor(() => count(`SELECT count(*)::int AS n FROM graphile_worker.jobs WHERE task_identifier = 'sluice_ingest'`), (n) => n === 0, {
      what: 'every SQL ingest job completed',
      timeoutMs: 120_000,
    });
    // Partition creation killed half-way: every month up to the premake horizon exists once the final worker rotated.
    const premadeAfter = await count(`SELECT premake_months AS n FROM sluice.streams WHERE name = $1`, [STREAM]);
    await db.query(`SELECT graphile_worker.add_job('sluice_rotate_partitions', '{}'::json)`);
    const monthsMissing = await waitFor(
      () =>
        count(
          `SELECT count(*)::int AS n FROM generate_series(0, $2::int) AS m
            WHERE to_regclass(format('sluice_data.%I', sluice.partition_name($1, (date_trunc('month', now() AT TIME ZONE 'UTC') + make_interval(months => m))::date))) IS NULL`,
          [STREAM, premadeAfter],
        ),
      (n) => n === 0,
      { what: 'every month up to the premake horizon partitioned', timeoutMs: 60_000 },
    );
    await final.stop();
    // Every worker is stopped now: a job still locked was left by a dead one.
    const locked = await count(`SELECT count(*)::int AS n FROM graphile_worker._private_jobs WHERE locked_by IS NOT NULL`);

    const sqlDurableIds = sql.jobs.flatMap((j) => j.ids);
    const stagedAcked = [...staged.acked, ...sqlStaged.jobs.flatMap((j) => j.ids), ...sqlFunction.acked];
    const durableAcked = [...durable.acked, ...sqlDurableIds, ...cli.acked];
    const expected = new Set([...durableAcked, ...stagedAcked]);
    const { rows } = await db.query<{ event_id: string; n: number }>(`SELECT event_id::text, count(*)::int AS n FROM sluice_data.${STREAM} GROUP BY 1`);
    const found = new Map(rows.map((r) => [r.event_id, r.n]));
    const missingDurable = durableAcked.filter((id) => !found.has(id)).length;
    const missingStaged = stagedAcked.filter((id) => !found.has(id)).length;
    const duplicates = rows.filter((r) => r.n > 1).length;
    const failedJobs = await count(`SELECT count(*)::int AS n FROM graphile_worker._private_jobs WHERE last_error IS NOT NULL`);
    const stat = (xs: Array<number | null>) => {
      const v = xs.filter((x): x is number => x !== null).sort((a, b) => a - b);
      return v.length ? `p50 ${v[Math.floor(v.length / 2)]} ms, max ${v.at(-1)} ms${v.length < xs.length ? `, ${xs.length - v.length} over 20 s` : ''}` : 'n/a';
    };
    const summary =
      `[chaos] trials ${trials.length} (${AIMS.map((a) => `${a} ${trials.filter((t) => t.aim === a && t.hit).length}/${trials.filter((t) => t.aim === a).length}`).join(', ')} aims hit); ` +
      `events acknowledged ${expected.size} (Ingestor durable ${durable.acked.length}, staged ${staged.acked.length}; add_job durable ${sql.jobs.length} jobs, ` +
      `staged ${sqlStaged.jobs.length} jobs; sluice.ingest() ${sqlFunction.acked.length}; sluice ingest --ack durable ${cli.acked.length} in ${cli.runs()} runs, ${cli.failures()} failed); ` +
      `found ${[...expected].filter((id) => found.has(id)).length}; missing durable-acked ${missingDurable}, staged-acked ${missingStaged}; duplicates ${duplicates}; ` +
      `jobs left locked ${locked}; refusals ${trials.reduce((n, t) => n + t.refusals, 0)}; ` +
      `recovery: registered after kill ${stat(trials.map((t) => t.registeredMs))}; jobs released ${stat(trials.map((t) => t.releasedMs))}; ` +
      `draining ${stat(trials.map((t) => t.drainingMs))}; failed jobs ${failedJobs}; premake ${premadeBefore} → ${premadeAfter} months, missing ${monthsMissing}`;
    process.stderr.write(`${summary}\n`);
    expect(missingDurable).toBe(0);
    expect(missingStaged).toBe(0);
    expect(duplicates).toBe(0);
    expect(locked).toBe(0);
    expect(trials.every((t) => t.releasedMs !== null)).toBe(true);
    expect(monthsMissing).toBe(0);
    // The aims are real: most aimed kills caught the worker at its step.
    for (const aim of AIMS) expect(trials.filter((t) => t.aim === aim && t.hit).length).toBeGreaterThan(0);
  });
});
