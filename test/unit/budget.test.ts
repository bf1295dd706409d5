/**
 * Connection plans: a worker opens pool (concurrency + 1) + flushers +
 * drainers connections; a plan over the declared budget is refused with a
 * message that names concrete smaller settings, each of which really fits.
 */
import { describe, expect, it } from 'vitest';
import { assertPlanFitsBudget, describePlan, planConnections, type PlanInput } from '../../src/db/budget.js';
import { CONCURRENCY_DEFAULT, DRAINERS_DEFAULT, FLUSHERS_DEFAULT, loadConfig, MAX_CONNECTIONS_DEFAULT } from '../../src/config.js';
import { SluiceError } from '../../src/errors.js';
import { prng } from '../../src/workload/event-generator.js';

function overBudget(input: PlanInput, budget: number): SluiceError {
  try {
    assertPlanFitsBudget(planConnections(input), budget);
  } catch (err) {
    expect(err).toBeInstanceOf(SluiceError);
    expect((err as SluiceError).code).toBe('over_budget');
    return err as SluiceError;
  }
  throw new Error(`plan ${JSON.stringify(input)} was accepted with budget ${budget}`);
}

type Suggestion = Partial<Record<'concurrency' | 'drainers' | 'flushers' | 'max-connections', number>>;

/** The alternatives after "e.g.", split on " or "; each is a set of `--flag N` to apply together. */
function suggestions(message: string): Suggestion[] {
  const at = message.indexOf('e.g. ');
  expect(at, message).toBeGreaterThan(0);
  return message
    .slice(at + 'e.g. '.length)
    .split(' or ')
    .map((alternative) => {
      const flags = [...alternative.matchAll(/--(concurrency|drainers|flushers|max-connections) (\d+)/g)];
      expect(flags.length, alternative).toBeGreaterThan(0);
      return Object.fromEntries(flags.map((m) => [m[1] as string, Number(m[2])])) as Suggestion;
    });
}

describe('planConnections', () => {
  it('counts the pool as concurrency + 1 (the LISTEN client) plus dedicated flushers and drainers', () => {
    expect(planConnections({ concurrency: 8, flushers: 1, drainers: 2 })).toEqual({ concurrency: 8, pool: 9, flushers: 1, drainers: 2, total: 12 });
    expect(planConnections({ concurrency: 1, flushers: 1, drainers: 1 })).toEqual({ concurrency: 1, pool: 2, flushers: 1, drainers: 1, total: 4 });
  });

  it('an explicit pool size replaces concurrency + 1, and then the hint shrinks the pool, not concurrency', () => {
    const plan = planConnections({ concurrency: 32, poolSize: 8, flushers: 1, drainers: 2 });
    expect(plan).toEqual({ concurrency: 32, pool: 8, flushers: 1, drainers: 2, total: 11 });
    expect(describePlan(plan)).toContain('pool 8 (for concurrency 32');
    const e = overBudget({ concurrency: 32, poolSize: 8, flushers: 1, drainers: 2 }, 9);
    expect(e.message).toContain('--pool-size 6');
    expect(e.message).not.toContain('--concurrency');
  });

  it('the default configuration fits the default budget', () => {
    const config = loadConfig({}, {});
    const plan = planConnections(config);
    expect(plan.total).toBe(CONCURRENCY_DEFAULT + 1 + FLUSHERS_DEFAULT + DRAINERS_DEFAULT);
    expect(plan.total).toBeLessThanOrEqual(MAX_CONNECTIONS_DEFAULT);
    expect(() => assertPlanFitsBudget(plan, config.maxConnections)).not.toThrow();
  });

  it('describePlan spells out each part and the total', () => {
    const text = describePlan(planConnections({ concurrency: 4, flushers: 2, drainers: 3 }));
    expect(text).toContain('concurrency 4');
    expect(text).toContain('flushers 2');
    expect(text).toContain('drainers 3');
    expect(text).toMatch(/= 10$/);
  });
});

describe('assertPlanFitsBudget', () => {
  it('accepts a plan equal to the budget and refuses one connection more', () => {
    const input = { concurrency: 5, flushers: 1, drainers: 2 }; // 9
    expect(() => assertPlanFitsBudget(planConnections(input), 9)).not.toThrow();
    overBudget(input, 8);
  });

  it('says how many connections the plan needs, the budget, and by how much to shrink', () => {
    const e = overBudget({ concurrency: 8, flushers: 1, drainers: 2 }, 10);
    expect(e.message).toContain('needs 12 connections');
    expect(e.message).toContain('is 10');
    expect(e.message).toContain('shrink it by 2');
    expect(e.message).toContain('--max-connections');
    expect(suggestions(e.message)).toEqual([{ concurrency: 6 }, { 'max-connections': 12 }]);
  });

  it('suggests drainers and flushers too when they can absorb the excess, never a value below 1', () => {
    const e = overBudget({ concurrency: 2, flushers: 4, drainers: 5 }, 10); // 3 + 4 + 5 = 12
    expect(suggestions(e.message)).toEqual([{ drainers: 3 }, { flushers: 2 }, { 'max-connections': 12 }]);
  });

  it('when no single setting can absorb the excess, suggests a combination that fits', () => {
    const input = { concurrency: 3, flushers: 3, drainers: 3 }; // 4 + 3 + 3 = 10
    const alternatives = suggestions(overBudget(input, 6).message);
    const shrinks = alternatives.filter((a) => a['max-connections'] === undefined);
    expect(shrinks.length, JSON.stringify(alternatives)).toBeGreaterThan(0);
    for (const a of shrinks) expect(planConnections({ ...input, ...a }).total).toBeLessThanOrEqual(6);
  });

  it('every suggested value is smaller (or the plan itself) and really makes the plan fit', () => {
    const random = prng(4242);
    let checked = 0;
    for (let i = 0; i < 600; i++) {
      const input = {
        concurrency: 1 + Math.floor(random() * 40),
        flushers: 1 + Math.floor(random() * 8),
        drainers: 1 + Math.floor(random() * 16),
      };
      const plan = planConnections(input);
      const budget = 3 + Math.floor(random() * plan.total * 1.2);
      if (plan.total <= budget) {
        expect(() => assertPlanFitsBudget(plan, budget)).not.toThrow();
        continue;
      }
      const alternatives = suggestions(overBudget(input, budget).message);
      expect(alternatives).toContainEqual({ 'max-connections': plan.total });
      // The smallest possible plan is 4 (concurrency 1 + listener, 1 flusher, 1 drainer): above that, shrinking is always possible.
      if (budget >= 4) expect(alternatives.length, JSON.stringify({ input, budget })).toBeGreaterThan(1);
      for (const alternative of alternatives) {
        if (alternative['max-connections'] !== undefined) {
          expect(Object.keys(alternative)).toEqual(['max-connections']);
          expect(() => assertPlanFitsBudget(plan, alternative['max-connections'] as number)).not.toThrow();
          continue;
        }
        const shrunk = { ...input };
        for (const [flag, value] of Object.entries(alternative) as Array<[keyof typeof input, number]>) {
          expect(value, `${flag} in ${JSON.stringify(input)}`).toBeGreaterThanOrEqual(1);
          expect(value).toBeLessThan(input[flag]);
          shrunk[flag] = value;
        }
        expect(() => assertPlanFitsBudget(planConnections(shrunk), budget), JSON.stringify({ input, budget, alternative })).not.toThrow();
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(50);
  });
});
