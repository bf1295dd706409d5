/**
 * Connection budgets: a worker whose plan exceeds its declared budget is
 * refused (API and CLI) with a hint that works; a worker that does not fit the
 * cluster (max_connections − reserved − --reserve, minus live workers' budgets)
 * is refused, stale registry rows do not count; and under load a worker never
 * holds more connections than its budget, every one named sluice/<id>/<role>.
 */
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { planConnections } from '../src/db/budget.js';
import { ConnectionSampler, workerConnections } from '../src/db/connection-sampler.js';
import { SluiceError } from '../src/errors.js';
import { createIngestor } from '../src/ingest/create-ingestor.js';
import { runCli } from './helpers/cli.js';
import { createTestDatabase } from './helpers/database.js';
import { durableIds, makeEvents, stagedCount } from './helpers/events.js';
import { waitFor } from './helpers/wait.js';
import { startWorker } from './helpers/worker.js';

const db = await createTestDatabase('budget');

interface ServerSlots {
  maxConnections: number;
  superuserReserved: number;
  /** PG 16+ reserved_connections; 0 on older servers. */
  reserved: number;
}

async function serverSlots(): Promise<ServerSlots> {
  const { rows } = await db.query<{ max: number; su: number; reserved: number | null }>(
    `SELECT current_setting('max_connections')::int AS max,
            current_setting('superuser_reserved_connections')::int AS su,
            current_setting('reserved_connections', true)::int AS reserved`,
  );
  const r = rows[0]!;
  return { maxConnections: r.max, superuserReserved: r.su, reserved: r.reserved ?? 0 };
}

/** Sessions standing in for the fake workers' connections (a registration with no session is dead at once). */
const fakeSessions: pg.Client[] = [];
// After every test, whether it passed or not: one failure must not leave fake workers that refuse the next test's worker.
afterEach(async () => {
  await Promise.all(fakeSessions.splice(0).map((c) => c.end().catch(() => undefined)));
  await db.query(`DELETE FROM sluice.workers`);
});

/** Fake live workers whose budgets add up to `total` (split over a few rows), each with one open session. */
async function insertFakeWorkers(total: number, prefix: string): Promise<void> {
  const parts = [Math.floor(total / 3), Math.floor(total / 3)];
  parts.push(total - parts[0]! - parts[1]!);
  for (const [i, budget] of parts.entries()) {
    if (budget <= 0) continue;
    await db.query(
      `INSERT INTO sluice.workers (id, host, pid, version, budget, plan, heartbeat_at)
       VALUES ($1, 'elsewhere', $2, 'fake', $3, $4::jsonb, now())`,
      [`${prefix}-${i}`, 10_000 + i, budget, JSON.stringify({ pool: budget, flushers: 0, drainers: 0, total: budget })],
    );
    const session = new pg.Client({ connectionString: db.url, application_name: `sluice/${prefix}-${i}/fake` });
    await session.connect();
    fakeSessions.push(session);
  }
}

async function registeredIds(): Promise<string[]> {
  const { rows } = await db.query<{ id: string }>(`SELECT id FROM sluice.workers ORDER BY id`);
  return rows.map((r) => r.id);
}

function connectionsOf(workerId: string): Promise<string[]> {
  return workerConnections(db.pool, workerId);
}

/**
 * A refused worker has closed its connections when it rejects, but a backend leaves
 * pg_stat_activity a moment after its client hung up (it exits asynchronously): wait
 * for the list to empty, and fail if one is still there after 10 s.
 */
function noConnectionsLeft(workerId: string): Promise<string[]> {
  return waitFor(() => connectionsOf(workerId), (names) => names.length === 0, {
    timeoutMs: 10_000,
    what: `no session named sluice/${workerId}/… in pg_stat_activity`,
  });
}

async function refusal(p: Promise<unknown>): Promise<SluiceError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, 'expected the worker to be refused').toBeInstanceOf(SluiceError);
  return err as SluiceError;
}

describe('connection budget', () => {
  it('refuses a plan larger than the declared budget, naming the total and a fix that works', async () => {
    const flags = { concurrency: 8, drainers: 2, flushers: 1, maxConnections: 6 };
    const total = flags.concurrency + 1 + flags.flushers + flags.drainers;

    const err = await refusal(startWorker(db, { ...flags, workerId: 'budget-too-big' }));
    expect(err.code).toBe('over_budget');
    expect(err.message).toMatch(new RegExp(`\\b${total}\\b`));
    expect(err.message).toMatch(new RegExp(`\\b${flags.maxConnections}\\b`));
    const hint = /--concurrency (\d+)/.exec(err.message);
    expect(hint, `message suggests a smaller --concurrency: ${err.message}`).not.toBeNull();
    expect(await registeredIds()).toEqual([]);
    expect(await noConnectionsLeft('budget-too-big')).toEqual([]);

    // The suggested concurrency really fits the same budget.
    const suggested = Number(hint![1]);
    expect(planConnections({ ...flags, concurrency: suggested }).total).toBeLessThanOrEqual(flags.maxConnections);
    const fitted = await startWorker(db, { ...flags, concurrency: suggested, workerId: 'budget-fitted' });
    expect(await registeredIds()).toEqual(['budget-fitted']);
    await fitted.stop();
    expect(await registeredIds()).toEqual([]);
  });

  it('sluice worker with a plan over --max-connections exits non-zero and explains on stderr', async () => {
    const result = await runCli(
      ['worker', '--max-connections', '4', '--concurrency', '8', '--no-migrate', '--worker-id', 'budget-cli-refused'],
      { env: { DATABASE_URL: db.url }, timeoutMs: 30_000 },
    );
    expect(result.signal).toBeNull();
    expect(result.code).not.toBe(0);
    expect(result.code).not.toBeNull();
    expect(result.stderr).toMatch(/budget/i);
    expect(result.stderr).toMatch(/\b4\b/);
    // A plan of 4 exists (--concurrency 1 --drainers 1), so the message can say what to shrink.
    expect(result.stderr, 'stderr suggests a smaller --concurrency').toMatch(/--concurrency \d+/);
    expect(result.stderr).not.toMatch(/running/);
    expect(await registeredIds()).toEqual([]);
  });

  it('refuses a worker when live workers leave too little of max_connections; stale rows do not count', async () => {
    const slots = await serverSlots();
    const reserve = 10;
    const budget = 6;
    const flags = { workerId: 'budget-cluster', maxConnections: budget, concurrency: 2, flushers: 1, drainers: 1, reserve };
    const available = slots.maxConnections - slots.superuserReserved - slots.reserved - reserve;
    const live = available - budget + 1; // one connection short
    expect(live).toBeGreaterThan(0);
    await insertFakeWorkers(live, 'fake-live');

    const err = await refusal(startWorker(db, flags));
    expect(err.code).toBe('cluster_over_budget');
    expect(err.message).toMatch(new RegExp(`\\b${live}\\b`));
    expect(err.message).toMatch(new RegExp(`\\b${budget}\\b`));
    expect(err.message).toMatch(new RegExp(`\\b${available}\\b`));
    expect(err.message).toMatch(new RegExp(`max_connections ${slots.maxConnections}\\b`));
    expect(err.message).toMatch(new RegExp(`superuser_reserved_connections ${slots.superuserReserved}\\b`));
    expect(await registeredIds()).not.toContain('budget-cluster');
    expect(await noConnectionsLeft('budget-cluster')).toEqual([]);

    // The same rows, an hour without a heartbeat: dead workers, their budgets no longer count.
    await db.query(`UPDATE sluice.workers SET heartbeat_at = now() - interval '1 hour' WHERE id LIKE 'fake-live-%'`);
    const worker = await startWorker(db, flags);
    expect(worker.registration.liveBudget).toBe(0);
    expect(worker.registration.liveWorkers).toBe(0);
    expect(await registeredIds()).toContain('budget-cluster');
    await worker.stop();
  });

  it('--reserve is part of the cluster check: a worker that fits exactly with reserve 0 is refused with reserve 10', async () => {
    const slots = await serverSlots();
    const budget = 6;
    const flags = { workerId: 'budget-reserve', maxConnections: budget, concurrency: 2, flushers: 1, drainers: 1 };
    const availableNoReserve = slots.maxConnections - slots.superuserReserved - slots.reserved;
    const live = availableNoReserve - budget; // leaves exactly `budget` with reserve 0
    await insertFakeWorkers(live, 'fake-reserve');

    const err = await refusal(startWorker(db, { ...flags, reserve: 10 }));
    expect(err.code).toBe('cluster_over_budget');
    expect(err.message).toMatch(/reserve 10\b/);
    expect(err.message).toMatch(new RegExp(`\\b${availableNoReserve - 10}\\b`));
    expect(await registeredIds()).not.toContain('budget-reserve');

    const worker = await startWorker(db, { ...flags, reserve: 0 });
    expect(worker.registration.liveBudget).toBe(live);
    expect(worker.registration.capacity.available).toBe(availableNoReserve);
    expect(await registeredIds()).toContain('budget-reserve');
    await worker.stop();
  });

  it('under load a worker never holds more connections than its budget, and sluice budget reports it', async () => {
    const budget = 6;
    const worker = await startWorker(db, { maxConnections: budget, concurrency: 3, flushers: 1, drainers: 1, flushRows: 500 });
    expect(worker.plan.total).toBeLessThanOrEqual(budget);

    // Sample pg_stat_activity every ~20 ms until told to stop.
    const sampler = new ConnectionSampler(db.pool, worker.id, 20);

    // Load: 120 SQL jobs of 20 events, and a client pushing 4000 events.
    const sql = makeEvents(2_400, 31, {}, 0).events;
    const client = makeEvents(4_000, 32, {}, 0).events;
    const ingestor = await createIngestor({ connectionString: db.url, stream: 'events', clientId: 'budget-client', drainSlots: 1, flushRows: 400 });
    const clientDone = (async () => {
      for (let i = 0; i < client.length; i += 250) await ingestor.ingest(client.slice(i, i + 250));
      await ingestor.close();
    })();
    for (let i = 0; i < sql.length; i += 20) {
      await db.query(`SELECT graphile_worker.add_job('sluice_ingest', $1::json)`, [
        JSON.stringify({ stream: 'events', events: sql.slice(i, i + 20) }),
      ]);
    }
    await clientDone;
    const expected = new Set([...sql, ...client].map((e) => e.event_id));
    await waitFor(
      async () => ({
        staged: await stagedCount(db),
        jobs: (await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM graphile_worker.jobs WHERE task_identifier = 'sluice_ingest'`)).rows[0]!.n,
        durable: (await durableIds(db)).rows,
      }),
      (s) => s.staged === 0 && s.jobs === 0 && s.durable >= expected.size,
      { what: 'all load drained', timeoutMs: 60_000 },
    );

    // While the worker is still live: `sluice budget --json`.
    const cli = await runCli(['budget', '--json'], { env: { DATABASE_URL: db.url }, timeoutMs: 30_000 });
    const { peak, samples, names } = await sampler.stop();

    expect((await durableIds(db)).ids).toEqual(expected);
    expect(samples).toBeGreaterThan(10);
    expect(peak).toBeGreaterThan(0);
    expect(peak).toBeLessThanOrEqual(budget);
    const pattern = new RegExp(`^sluice/${worker.id}/(pool|flush-\\d+|drain-\\d+)$`);
    expect([...names].filter((n) => !pattern.test(n))).toEqual([]);
    expect([...names]).toEqual(expect.arrayContaining([`sluice/${worker.id}/pool`, `sluice/${worker.id}/flush-0`, `sluice/${worker.id}/drain-0`]));

    expect(cli.code, cli.stderr).toBe(0);
    const report = JSON.parse(cli.stdout) as {
      capacity: { max_connections: number; superuser_reserved: number; reserved: number; reserve: number; available: number };
      workers: Array<{ id: string; budget: number; connections: number; plan: { total: number } }>;
      declared: number;
      headroom: number;
    };
    const slots = await serverSlots();
    expect(report.capacity).toMatchObject({ max_connections: slots.maxConnections, superuser_reserved: slots.superuserReserved, reserved: slots.reserved, reserve: 10 });
    expect(report.capacity.available).toBe(slots.maxConnections - slots.superuserReserved - slots.reserved - 10);
    expect(report.workers.map((w) => w.id)).toEqual([worker.id]);
    const row = report.workers[0]!;
    expect(row.budget).toBe(budget);
    expect(row.plan.total).toBe(worker.plan.total);
    // The dedicated flush and drain connections are always held; never more than the budget.
    expect(row.connections).toBeGreaterThanOrEqual(2);
    expect(row.connections).toBeLessThanOrEqual(budget);
    expect(report.declared).toBe(budget);
    expect(report.headroom).toBe(report.capacity.available - budget);

    await worker.stop();
    // Backends exit just after their clients hang up: wait for them to go.
    await waitFor(() => connectionsOf(worker.id), (c) => c.length === 0, { what: `no connections of ${worker.id} left`, timeoutMs: 10_000 });
  });
});
