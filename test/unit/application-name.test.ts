/**
 * application_name carries a worker's budget claim intact (issue 17): the
 * longest id (40), role (drain-63) and budget (10000) make exactly 63 bytes,
 * Postgres' limit; a name that would be cut throws instead of publishing a
 * wrong budget. Without a budget, names are as before.
 */
import { describe, expect, it } from 'vitest';
import { applicationName, APPLICATION_NAME_MAX } from '../../src/db/connections.js';
import { CLAIM_PATTERN } from '../../src/db/budget-claims.js';
import { SETTINGS } from '../../src/config.js';

// The pattern other databases read claims with (src/db/budget-claims.ts).
const CLAIM = new RegExp(CLAIM_PATTERN);

describe('applicationName', () => {
  it('fits the longest id, role and budget into 63 bytes, parseable by the claim pattern', () => {
    const id = 'w'.repeat(40);
    const name = applicationName(id, `drain-${SETTINGS.drainers.max - 1}`, SETTINGS.maxConnections.max);
    expect(Buffer.byteLength(name)).toBeLessThanOrEqual(APPLICATION_NAME_MAX);
    expect(CLAIM.exec(name)?.slice(1)).toEqual([id, String(SETTINGS.maxConnections.max)]);
    const flush = applicationName(id, `flush-${SETTINGS.flushers.max - 1}`, SETTINGS.maxConnections.max);
    expect(Buffer.byteLength(flush)).toBeLessThanOrEqual(APPLICATION_NAME_MAX);
  });

  it('throws rather than cut a claim', () => {
    expect(() => applicationName('w'.repeat(40), 'a-much-longer-role', 10_000)).toThrow(/budget intact/);
  });

  it('without a budget, keeps the old name', () => {
    expect(applicationName('w1', 'pool')).toBe('sluice/w1/pool');
    expect(applicationName('w1', 'pool', 16)).toBe('sluice/w1/pool/b16');
  });
});
