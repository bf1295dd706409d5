/**
 * The one key casing of sluice's JSON: every object key, however deep (arrays,
 * class instances, null-prototype rows), becomes snake_case; values (dates,
 * strings holding camelCase, data keys already lower-case) are left alone.
 */
import { describe, expect, it } from 'vitest';
import { snakeCase, toSnakeJson } from '../../src/json-keys.js';

describe('snake_case JSON', () => {
  it('renames camelCase keys, leaves snake_case and lower-case ones', () => {
    expect(snakeCase('oldestStagedAgeS')).toBe('oldest_staged_age_s');
    expect(snakeCase('rowsPerSecond')).toBe('rows_per_second');
    expect(snakeCase('workerPeakRssMb')).toBe('worker_peak_rss_mb');
    expect(snakeCase('p50')).toBe('p50');
    expect(snakeCase('rejects_by_reason')).toBe('rejects_by_reason');
    expect(snakeCase('shared_buffers')).toBe('shared_buffers');
  });

  it('converts nested objects, arrays of objects, class instances and null-prototype rows; dates become strings', () => {
    class Plan {
      poolSize = 3;
      drainConnections = 2;
    }
    const row = Object.assign(Object.create(null) as Record<string, unknown>, { lastRunAt: 'x' });
    const takenAt = new Date('2026-01-02T03:04:05.000Z');
    const parsed = JSON.parse(
      toSnakeJson({ takenAt, streams: [{ streamName: 'clickStream', lagMs: { p50: 1 } }], plan: new Plan(), row, nothing: null }),
    ) as unknown;
    expect(parsed).toEqual({
      taken_at: '2026-01-02T03:04:05.000Z',
      streams: [{ stream_name: 'clickStream', lag_ms: { p50: 1 } }],
      plan: { pool_size: 3, drain_connections: 2 },
      row: { last_run_at: 'x' },
      nothing: null,
    });
  });
});
