/**
 * Races between sessions, driven against real Postgres:
 *
 * - worker registration under `default_transaction_isolation = 'repeatable read'`:
 *   concurrent registrations never declare more than the cluster has;
 * - partition creation: many sessions creating the same new month at once
 *   (directly, through premake, through the drain's repair path) all succeed and
 *   exactly one creates it, whatever the isolation level;
 * - staleness: each registration is judged by its own heartbeat window, not by
 *   the observer's --stale-after-ms.
 *
 * "At once" is made certain rather than hoped for: a holder session takes the
 * advisory lock the code under test serialises on, the contenders are started
 * and seen waiting on it in pg_locks, and only then does the holder act and
 * commit. Free-running rounds (no holder) run alongside.
 */
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { planConnections } from '../src/db/budget.js';
import { drainBatch } from '../src/drain/drain-batch.js';
import { SluiceError } from '../src/errors.js';
import { silentLogger } from '../src/logger.js';
import { rotateStream } from '../src/partitions/rotate.js';
import { budgetReport } from '../src/status/budget-report.js';
import { workerStatuses } from '../src/status/stream-status.js';
import { requireStream } from '../src/streams/registry.js';
import { registerWorker } from '../src/worker/worker-registry.js';
import { runCli } from './helpers/cli.js';
import { createTestDatabase } from './helpers/database.js';
import { waitFor } from './helpers/wait.js';

const db = await createTestDatabase('races');

const clients: pg.Client[] = [];
afterAll(async () => {
  await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
});

type Isolation = 'read committed' | 'repeatable read';

/** A session of our own; `isolation` sets its default_transaction_isolation. */
async function connect(name: string, isolation?: Isolation): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: db.url, application_name: `sluice-test/${name}` });
  client.on('error', () => undefined);
  await client.connect();
  clients.push(client);
  if (isolation) await client.query(`SELECT set_config('default_transaction_isolation', $1, false)`, [isolation]);
  return client;
}

/** Sessions of this database waiting for an advisory lock. */
async function advisoryWaiters(): Promise<number> {
  const { rows } = await db.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM pg_locks
      WHERE locktype = 'advisory' AND NOT granted
        AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`,
  );
  return rows[0]!.n;
}

/**
 * Hold the advisory lock `key` (hashtext) in an open transaction until the
 * `waiters` contenders queue behind it, then run `act` in that transaction and
 * commit: every contender has started (and taken its snapshot or cached its
 * catalog look-ups) before the holder's change commits.
 */
async function underHeldLock<T>(holder: pg.Client, key: string, waiters: number, contenders: () => Promise<T>, act: () => Promise<void>): Promise<T> {
  await holder.query('BEGIN ISOLATION LEVEL READ COMMITTED');
  await holder.query('SELECT pg_advisory_xact_lock(hashtext($1))', [key]);
  const running = contenders();
  running.catch(() => undefined);
  await waitFor(advisoryWaiters, (n) => n >= waiters, { what: `${waiters} session(s) waiting on ${key}`, timeoutMs: 20_000 });
  await act();
  await holder.query('COMMIT');
  return running;
}

function settledErrors(results: PromiseSettledResult<unknown>[]): unknown[] {
  return results.filter((r): r is PromiseRejectedResult => r.status === 'rejected').map((r) => r.reason);
}

describe('worker registration under repeatable read (issue 12, bug 5)', () => {
  it('concurrent registrations never declare more connections than the cluster has', async () => {
    await db.query(`ALTER DATABASE ${pg.escapeIdentifier(db.name)} SET default_transaction_isolation = 'repeatable read'`);
    const sessions = await Promise.all([0, 1, 2, 3].map((i) => connect(`register-${i}`)));
    for (const s of sessions) {
      // The premise: these sessions really default to repeatable read.
      expect((await s.query<{ level: string }>(`SELECT current_setting('default_transaction_isolation') AS level`)).rows[0]!.level).toBe('repeatable read');
    }
    const holder = await connect('register-holder');

    const slots = (
      await db.query<{ max: number; su: number; reserved: number | null }>(
        `SELECT current_setting('max_connections')::int AS max, current_setting('superuser_reserved_connections')::int AS su,
                current_setting('reserved_connections', true)::int AS reserved`,
      )
    ).rows[0]!;
    const available = 20;
    const reserve = slots.max - slots.su - (slots.reserved ?? 0) - available;
    const budget = 15; // two never fit in 20
    const plan = planConnections({ concurrency: budget - 3, flushers: 1, drainers: 1 });
    expect(plan.total).toBe(budget);

    for (let round = 0; round < 20; round++) {
      const n = 2 + (round % 3);
      // Each registers on a session of its own worker's (a registration with no session left is dead).
      await Promise.all(sessions.slice(0, n).map((s, i) => s.query(`SELECT set_config('application_name', $1, false)`, [`sluice/race-${round}-${i}/pool`])));
      const register = () =>
        Promise.allSettled(
          sessions.slice(0, n).map((s, i) =>
            // One database's race; other test files' workers elsewhere on the server must not count (scope 'database').
            registerWorker(s, { workerId: `race-${round}-${i}`, budget, plan, reserve, staleAfterMs: 30_000, heartbeatMs: 5_000, scope: 'database' }),
          ),
        );
      // Even rounds: every registration is queued on the registry lock before any may go on.
      const results =
        round % 2 === 0 ? await underHeldLock(holder, 'sluice.workers', n, register, async () => undefined) : await register();

      const { rows } = await db.query<{ declared: number; workers: number }>(
        `SELECT coalesce(sum(budget), 0)::int AS declared, count(*)::int AS workers FROM sluice.workers`,
      );
      expect(rows[0]!.declared, `round ${round}: ${n} registrations of ${budget} against ${available}`).toBeLessThanOrEqual(available);
      expect(rows[0]!.workers, `round ${round}`).toBe(1);
      const errors = settledErrors(results);
      expect(errors).toHaveLength(n - 1);
      for (const err of errors) {
        expect(err).toBeInstanceOf(SluiceError);
        expect((err as SluiceError).code).toBe('cluster_over_budget');
      }
      await db.query('DELETE FROM sluice.workers');
    }
    await db.query(`ALTER DATABASE ${pg.escapeIdentifier(db.name)} RESET default_transaction_isolation`);
  });
});

describe('partition creation races (issue 12, bug 6)', () => {
  /** Attached partitions of `stream` named like `suffix` (YYYYMM). */
  async function attached(stream: string, suffix: string): Promise<number> {
    const { rows } = await db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = to_regclass($1) AND c.relname = $2`,
      [`sluice_data.${stream}`, `${stream}_p${suffix}`],
    );
    return rows[0]!.n;
  }

  function monthOf(base: string, offset: number): { date: string; suffix: string } {
    const d = new Date(`${base}T00:00:00Z`);
    const m = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + offset, 1));
    const yyyy = m.getUTCFullYear();
    const mm = String(m.getUTCMonth() + 1).padStart(2, '0');
    return { date: `${yyyy}-${mm}-01`, suffix: `${yyyy}${mm}` };
  }

  const ENSURE = `SELECT sluice.ensure_partition($1::text, $2::date) AS created`;

  it('many sessions ensuring the same far-future month at once: all succeed, exactly one creates (both isolation levels)', async () => {
    const stream = 'far_future';
    await db.query('SELECT sluice.create_stream($1)', [stream]);
    const holder = await connect('ensure-holder');
    const readCommitted = await Promise.all([0, 1, 2, 3].map((i) => connect(`ensure-rc-${i}`, 'read committed')));
    const repeatableRead = await Promise.all([0, 1, 2, 3].map((i) => connect(`ensure-rr-${i}`, 'repeatable read')));

    for (let round = 0; round < 24; round++) {
      const month = monthOf('2031-01-01', round);
      const sessions = round % 4 < 2 ? readCommitted : repeatableRead;
      const ensure = () => Promise.allSettled(sessions.map((s) => s.query<{ created: boolean }>(ENSURE, [stream, month.date])));
      let holderCreated: boolean | undefined;
      // Rounds 0, 2 (and 4, 6, …): the contenders wait on the partition lock while the holder creates the month.
      const results =
        round % 2 === 0
          ? await underHeldLock(holder, `sluice.partition:${stream}`, sessions.length, ensure, async () => {
              holderCreated = (await holder.query<{ created: boolean }>(ENSURE, [stream, month.date])).rows[0]!.created;
            })
          : await ensure();

      const what = `round ${round} (${month.suffix}, ${round % 4 < 2 ? 'read committed' : 'repeatable read'})`;
      expect(settledErrors(results).map((e) => (e as Error).message), what).toEqual([]);
      const created = results.map((r) => (r as PromiseFulfilledResult<pg.QueryResult<{ created: boolean }>>).value.rows[0]!.created);
      if (holderCreated !== undefined) created.push(holderCreated);
      expect(created.filter(Boolean), what).toHaveLength(1);
      expect(await attached(stream, month.suffix), what).toBe(1);
    }
  });

  it('concurrent premakes of a new stream all succeed and create each month once', async () => {
    const sessions = await Promise.all([0, 1, 2, 3].map((i) => connect(`premake-${i}`, i % 2 ? 'repeatable read' : 'read committed')));
    for (let round = 0; round < 8; round++) {
      const stream = `premake_race_${round}`;
      // create_stream makes last, this and next month; premake adds the 11 after those.
      await db.query(`SELECT sluice.create_stream($1, '[]'::jsonb, '{"premake_months": 12}'::jsonb)`, [stream]);
      const results = await Promise.allSettled(sessions.map((s) => s.query<{ created: number }>('SELECT sluice.premake_partitions($1) AS created', [stream])));
      expect(settledErrors(results).map((e) => (e as Error).message), `round ${round}`).toEqual([]);
      const total = results.reduce((n, r) => n + (r as PromiseFulfilledResult<pg.QueryResult<{ created: number }>>).value.rows[0]!.created, 0);
      expect(total, `round ${round}`).toBe(11);
      const { rows } = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM pg_inherits WHERE inhparent = to_regclass($1)`, [
        `sluice_data.${stream}`,
      ]);
      expect(rows[0]!.n).toBe(14);
    }
  });

  it('the hourly premake loses the race to another creator without skipping the stream', async () => {
    const stream = 'premake_loser';
    await db.query(`SELECT sluice.create_stream($1, '[]'::jsonb, '{"premake_months": 4}'::jsonb)`, [stream]);

    const holder = await connect('premake-loser-holder');
    const premaker = await connect('premake-loser', 'repeatable read');
    const twoAhead = (await db.query<{ month: string }>(`SELECT to_char(sluice.utc_month(now()) + interval '2 months', 'YYYY-MM-DD') AS month`)).rows[0]!.month;
    const result = await underHeldLock(
      holder,
      `sluice.partition:${stream}`,
      1,
      async () => rotateStream(premaker, db.pool, await requireStream(db.pool, stream), { now: new Date(), runner: 'test', log: silentLogger }),
      async () => {
        // Another session (a drain's repair, say) creates month +2 while premake waits for it.
        expect((await holder.query<{ created: boolean }>(ENSURE, [stream, twoAhead])).rows[0]!.created).toBe(true);
      },
    );
    expect(result.skipped).toEqual([]);
    expect(result.error).toBeUndefined();
    expect(result.created).toHaveLength(2); // +3 and +4; +2 was the holder's
    const { rows } = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM pg_inherits WHERE inhparent = to_regclass($1)`, [
      `sluice_data.${stream}`,
    ]);
    expect(rows[0]!.n).toBe(6); // -1 .. +4, +2 only once
  });

  it('a month whose name is taken by a table that is not attached: ensure_partition says so, premake makes the other months', async () => {
    const stream = 'detached_month';
    await db.query(`SELECT sluice.create_stream($1, '[]'::jsonb, '{"premake_months": 3}'::jsonb)`, [stream]);
    const nextMonth = (await db.query<{ month: string; suffix: string }>(
      `SELECT to_char(sluice.utc_month(now()) + interval '1 month', 'YYYY-MM-DD') AS month,
              to_char(sluice.utc_month(now()) + interval '1 month', 'YYYYMM') AS suffix`,
    )).rows[0]!;
    await db.query(`ALTER TABLE sluice_data.${stream} DETACH PARTITION sluice_data.${stream}_p${nextMonth.suffix}`);

    const err = await db.query(ENSURE, [stream, nextMonth.month]).then(
      () => undefined,
      (e: unknown) => e as { code?: string; message: string; hint?: string },
    );
    expect(err?.code).toBe('55000');
    expect(err?.message).toMatch(new RegExp(`${stream}_p${nextMonth.suffix} exists but is not attached`));
    expect(err?.hint).toMatch(/ATTACH PARTITION/);

    // premake: a warning for that month, the months after it still made.
    const premaker = await connect('premake-detached', 'read committed');
    const notices: string[] = [];
    premaker.on('notice', (n) => notices.push(n.message ?? ''));
    const { rows } = await premaker.query<{ created: number }>('SELECT sluice.premake_partitions($1) AS created', [stream]);
    expect(rows[0]!.created).toBe(2); // +2 and +3
    expect(notices.join('\n')).toMatch(/premake skipped a month: .*not attached/);
    expect(await attached(stream, nextMonth.suffix)).toBe(0);
  });

  it("the drain's repair path does not fail when another session creates the month first", async () => {
    const stream = 'repair_loser';
    await db.query(`SELECT sluice.create_stream($1, '[]'::jsonb, '{"premake_months": 6}'::jsonb)`, [stream]);
    const definition = await requireStream(db.pool, stream);
    const holder = await connect('repair-holder');
    const drainers = await Promise.all([0, 1, 2].map((i) => connect(`repair-drainer-${i}`, 'read committed')));

    for (let round = 0; round < 4; round++) {
      // Month +2+round has no partition (create_stream makes -1..+1): the drain takes its slow path.
      const month = (await db.query<{ month: string }>(`SELECT to_char(sluice.utc_month(now()) + make_interval(months => $1), 'YYYY-MM-DD') AS month`, [2 + round])).rows[0]!.month;
      await db.query(
        `INSERT INTO sluice_staging.${stream} (event_id, occurred_at, payload)
         SELECT gen_random_uuid(), $1::timestamptz + make_interval(mins => g), '{}' FROM generate_series(1, 30) g`,
        [`${month} 00:00:00+00`],
      );
      const results = await underHeldLock(
        holder,
        `sluice.partition:${stream}`,
        drainers.length,
        // Small batches: each drainer holds staging rows of the missing month.
        () => Promise.allSettled(drainers.map((d, i) => drainBatch(d, definition, 10, `test/repair-${i}`))),
        async () => {
          expect((await holder.query<{ created: boolean }>(ENSURE, [stream, month])).rows[0]!.created).toBe(true);
        },
      );
      expect(settledErrors(results).map((e) => (e as Error).message), `round ${round}`).toEqual([]);
      const moved = results.reduce((n, r) => n + (r as PromiseFulfilledResult<{ moved: number }>).value.moved, 0);
      expect(moved, `round ${round}`).toBe(30);
      const rejects = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM sluice.rejects WHERE stream = $1`, [stream]);
      expect(rejects.rows[0]!.n).toBe(0);
    }
  });
});

describe("staleness is judged by each worker's own heartbeat window (issue 12, risk)", () => {
  const plan = planConnections({ concurrency: 2, flushers: 1, drainers: 1 });

  async function ageHeartbeat(id: string, seconds: number): Promise<void> {
    await db.query(`UPDATE sluice.workers SET heartbeat_at = now() - make_interval(secs => $2) WHERE id = $1`, [id, seconds]);
  }

  async function register(id: string, heartbeatMs: number, staleAfterMs: number) {
    const client = await connect(id);
    // The worker's own session: a registration with no session left is dead at once.
    await client.query(`SELECT set_config('application_name', $1, false)`, [`sluice/${id}/pool`]);
    return registerWorker(client, { workerId: id, budget: plan.total, plan, reserve: 0, heartbeatMs, staleAfterMs, scope: 'database' });
  }

  it('a worker with a 20 s heartbeat stays live to an observer with --stale-after-ms 3000, and dies after its own window', async () => {
    await db.query('DELETE FROM sluice.workers');
    // A heartbeats every 20 s (its stale window: 60 s, three heartbeats).
    await register('slow-a', 20_000, 60_000);
    await ageHeartbeat('slow-a', 10);

    // B, an observer with a short window of its own, registers: A's budget counts.
    const b = await register('quick-b', 1_000, 3_000);
    expect(b.liveWorkers).toBe(1);
    expect(b.liveBudget).toBe(plan.total);

    const statuses = await workerStatuses(db.pool, 3_000);
    expect(statuses.find((w) => w.id === 'slow-a')).toMatchObject({ live: true });
    const budget = await budgetReport(db.pool, 0, 3_000);
    expect(budget.workers.map((w) => w.id).sort()).toEqual(['quick-b', 'slow-a']);

    const status = await runCli(['status', '--json'], { env: { DATABASE_URL: db.url, SLUICE_STALE_AFTER_MS: '3000', SLUICE_HEARTBEAT_MS: '1000' }, timeoutMs: 30_000 });
    expect(status.code, status.stderr).toBe(0);
    const report = JSON.parse(status.stdout) as { workers: Array<{ id: string; live: boolean }> };
    expect(report.workers.find((w) => w.id === 'slow-a')?.live).toBe(true);

    // Past A's own window (60 s): dead, even to an observer whose own window is an hour.
    await ageHeartbeat('slow-a', 61);
    // quick-b's own window is 3 s and the CLI above may take longer on a loaded box: it heartbeats now.
    await ageHeartbeat('quick-b', 0);
    expect((await workerStatuses(db.pool, 3_600_000)).find((w) => w.id === 'slow-a')).toMatchObject({ live: false });
    expect((await budgetReport(db.pool, 0, 3_600_000)).workers.map((w) => w.id)).toEqual(['quick-b']);
    const c = await register('observer-c', 60_000, 3_600_000);
    expect(c.liveWorkers).toBe(1); // quick-b only
    await db.query('DELETE FROM sluice.workers');
  });

  it('a worker with a short window is dead to an observer with a long one once its own window has passed', async () => {
    await db.query('DELETE FROM sluice.workers');
    await register('short-d', 1_000, 3_000);
    await ageHeartbeat('short-d', 10);
    expect((await workerStatuses(db.pool, 30_000)).find((w) => w.id === 'short-d')).toMatchObject({ live: false });
    const e = await register('observer-e', 5_000, 30_000);
    expect(e.liveWorkers).toBe(0);
    await db.query('DELETE FROM sluice.workers');
  });
});
