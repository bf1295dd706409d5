import { describe, expect, it } from 'vitest';
import { planConnections } from '../../src/db/budget.js';
import { poolNotice } from '../../src/worker/pool-notice.js';

describe('poolNotice: a pool below the job slots is said once, by sluice', () => {
  it('says nothing when every job slot has a pool connection (the default concurrency + 1, or pool = slots)', () => {
    expect(poolNotice(planConnections({ concurrency: 8, flushers: 1, drainers: 2 }), 16, false)).toBeUndefined();
    expect(poolNotice(planConnections({ concurrency: 8, flushers: 1, drainers: 2, poolSize: 8 }), 16, true)).toBeUndefined();
  });

  it('info for sluice tasks alone, naming the plan and the budget', () => {
    const notice = poolNotice(planConnections({ concurrency: 32, flushers: 1, drainers: 2, poolSize: 8 }), 16, false);
    expect(notice?.level).toBe('info');
    expect(notice?.message).toMatch(/pool of 8 connections for 32 job slots, as planned/);
    expect(notice?.message).toMatch(/= 11 within a budget of 16/);
    expect(notice?.fields).toMatchObject({ pool: 8, concurrency: 32, budget: 16 });
  });

  it('a warning when user tasks (--tasks) share the small pool', () => {
    const notice = poolNotice(planConnections({ concurrency: 8, flushers: 1, drainers: 2, poolSize: 2 }), 8, true);
    expect(notice?.level).toBe('warn');
    expect(notice?.message).toMatch(/--tasks/);
    expect(notice?.message).toMatch(/raise --pool-size/);
  });
});
