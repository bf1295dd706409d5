/**
 * `--max-connections N` alone: the plan's defaults fit N for every N from the
 * smallest budget (4) to 32, and a real worker started with only N holds no
 * more than N connections while it works. Explicit flags that cannot fit are
 * still refused, with the hints.
 */
import { describe, expect, it } from 'vitest';
import { loadConfig, MIN_BUDGET } from '../src/config.js';
import { assertPlanFitsBudget, planConnections } from '../src/db/budget.js';
import { createTestDatabase } from './helpers/database.js';
import { durableIds, makeEvents } from './helpers/events.js';
import { waitFor } from './helpers/wait.js';
import { startWorker } from './helpers/worker.js';

const db = await createTestDatabase('budget_fit');

describe('--max-connections N alone', () => {
  it('fits the plan to every N from the minimum to 32, the pool never under 2', () => {
    expect(MIN_BUDGET).toBe(4);
    for (let n = MIN_BUDGET; n <= 32; n++) {
      const config = loadConfig({ maxConnections: n }, {});
      const plan = planConnections(config);
      expect(() => assertPlanFitsBudget(plan, n), `budget ${n}`).not.toThrow();
      expect(plan.total).toBeLessThanOrEqual(n);
      expect(plan.concurrency).toBeGreaterThanOrEqual(1);
      expect(plan.drainers).toBeGreaterThanOrEqual(1);
      expect(plan.pool).toBeGreaterThanOrEqual(2);
    }
    // The default budget keeps the default plan.
    expect(planConnections(loadConfig({}, {}))).toEqual({ concurrency: 8, pool: 9, flushers: 1, drainers: 2, total: 12 });
    expect(() => loadConfig({ maxConnections: MIN_BUDGET - 1 }, {})).toThrow(/--max-connections must be an integer from 4/);
  });

  it('refuses explicit flags that cannot fit, with the hints', () => {
    const config = loadConfig({ maxConnections: 8, concurrency: 8 }, {});
    expect(() => assertPlanFitsBudget(planConnections(config), 8)).toThrow(/needs 12 connections.*--concurrency 4/);
    const drainers = loadConfig({ maxConnections: 4, drainers: 3 }, {});
    expect(() => assertPlanFitsBudget(planConnections(drainers), 4)).toThrow(/needs 6 connections/);
  });

  for (const n of [MIN_BUDGET, 5, 8]) {
    it(`a worker started with only --max-connections ${n} works and stays within ${n} connections`, async () => {
      const stream = `fit_${n}`;
      await db.query(`SELECT sluice.create_stream($1)`, [stream]);
      const worker = await startWorker(db, { maxConnections: n });
      expect(worker.plan.total).toBeLessThanOrEqual(n);
      let peak = 0;
      let sampling = true;
      const sampler = (async () => {
        while (sampling) {
          const { rows } = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name LIKE $1`, [
            `sluice/${worker.id}/%`,
          ]);
          peak = Math.max(peak, rows[0]?.n ?? 0);
          await new Promise((r) => setTimeout(r, 20));
        }
      })();
      const { events, unique } = makeEvents(2_000, n);
      for (let i = 0; i < events.length; i += 100) {
        await db.query(`SELECT graphile_worker.add_job('sluice_ingest', $1::json)`, [JSON.stringify({ stream, events: events.slice(i, i + 100) })]);
      }
      await waitFor(async () => (await durableIds(db, stream)).rows, (rows) => rows === unique, { what: `events durable at budget ${n}` });
      sampling = false;
      await sampler;
      await worker.stop('test done');
      expect(peak).toBeGreaterThan(0);
      expect(peak).toBeLessThanOrEqual(n);
    });
  }
});
