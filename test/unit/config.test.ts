/**
 * loadConfig: named defaults, CLI flag > environment > default, and every bad
 * value refused with a ConfigError naming the setting (as the user spelled it)
 * and the allowed range. The environment is always passed explicitly.
 */
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  BUFFER_ROWS_DEFAULT,
  CONCURRENCY_DEFAULT,
  ConfigError,
  DRAIN_JOB_MAX_MS_DEFAULT,
  DRAINERS_DEFAULT,
  FLUSH_AGE_MS_DEFAULT,
  FLUSH_BYTES_DEFAULT,
  FLUSH_ROWS_DEFAULT,
  FLUSHERS_DEFAULT,
  HEARTBEAT_MS_DEFAULT,
  loadConfig,
  MAX_CONNECTIONS_DEFAULT,
  redactUrl,
  RESERVE_DEFAULT,
  SHUTDOWN_TIMEOUT_MS_DEFAULT,
  STALE_AFTER_MS_DEFAULT,
  type ConfigFlags,
} from '../../src/config.js';

type Env = Record<string, string | undefined>;

function configError(flags: ConfigFlags, env: Env = {}): ConfigError {
  try {
    loadConfig(flags, env);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error(`loadConfig accepted ${JSON.stringify(flags)} with env ${JSON.stringify(env)}`);
}

describe('loadConfig defaults', () => {
  it('uses the named defaults with an empty environment', () => {
    const c = loadConfig({}, {});
    expect(c).toMatchObject({
      databaseUrl: undefined,
      homeDir: path.resolve('.sluice'),
      maxConnections: MAX_CONNECTIONS_DEFAULT,
      reserve: RESERVE_DEFAULT,
      concurrency: CONCURRENCY_DEFAULT,
      flushers: FLUSHERS_DEFAULT,
      drainers: DRAINERS_DEFAULT,
      flushRows: FLUSH_ROWS_DEFAULT,
      flushBytes: FLUSH_BYTES_DEFAULT,
      flushAgeMs: FLUSH_AGE_MS_DEFAULT,
      bufferRows: BUFFER_ROWS_DEFAULT,
      drainBatchRows: undefined,
      drainJobMaxMs: DRAIN_JOB_MAX_MS_DEFAULT,
      heartbeatMs: HEARTBEAT_MS_DEFAULT,
      staleAfterMs: STALE_AFTER_MS_DEFAULT,
      shutdownTimeoutMs: SHUTDOWN_TIMEOUT_MS_DEFAULT,
      migrate: true,
      logLevel: 'info',
    });
    expect(c.localQueueSize).toBeGreaterThanOrEqual(CONCURRENCY_DEFAULT);
    expect(c.workerId).toMatch(/^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$/);
    expect(Object.isFrozen(c)).toBe(true);
  });

  it('does not read process.env when an environment is passed', () => {
    const saved = process.env.SLUICE_CONCURRENCY;
    process.env.SLUICE_CONCURRENCY = '3';
    try {
      expect(loadConfig({}, {}).concurrency).toBe(CONCURRENCY_DEFAULT);
    } finally {
      if (saved === undefined) delete process.env.SLUICE_CONCURRENCY;
      else process.env.SLUICE_CONCURRENCY = saved;
    }
  });

  it('derives dependent defaults from the values given', () => {
    const big = loadConfig({ flushRows: BUFFER_ROWS_DEFAULT }, {});
    expect(big.bufferRows).toBe(BUFFER_ROWS_DEFAULT * 2);
    const slow = loadConfig({ heartbeatMs: STALE_AFTER_MS_DEFAULT }, {});
    expect(slow.staleAfterMs).toBe(STALE_AFTER_MS_DEFAULT * 3);
    expect(loadConfig({ concurrency: 40 }, {}).localQueueSize).toBe(160);
  });

  it('uses the caller default log level only when neither flag nor env sets one', () => {
    expect(loadConfig({}, {}, { logLevel: 'warn' }).logLevel).toBe('warn');
    expect(loadConfig({}, { SLUICE_LOG_LEVEL: 'debug' }, { logLevel: 'warn' }).logLevel).toBe('debug');
    expect(loadConfig({ logLevel: 'ERROR' }, { SLUICE_LOG_LEVEL: 'debug' }, { logLevel: 'warn' }).logLevel).toBe('error');
  });
});

describe('loadConfig precedence: flag > env > default', () => {
  const cases: Array<{ key: keyof ConfigFlags & string; env: string; flag: number; fromEnv: number; fallback: number }> = [
    { key: 'concurrency', env: 'SLUICE_CONCURRENCY', flag: 3, fromEnv: 5, fallback: CONCURRENCY_DEFAULT },
    { key: 'drainers', env: 'SLUICE_DRAINERS', flag: 4, fromEnv: 6, fallback: DRAINERS_DEFAULT },
    { key: 'flushers', env: 'SLUICE_FLUSHERS', flag: 2, fromEnv: 3, fallback: FLUSHERS_DEFAULT },
    { key: 'maxConnections', env: 'SLUICE_MAX_CONNECTIONS', flag: 40, fromEnv: 30, fallback: MAX_CONNECTIONS_DEFAULT },
    { key: 'reserve', env: 'SLUICE_RESERVE', flag: 0, fromEnv: 5, fallback: RESERVE_DEFAULT },
    { key: 'flushRows', env: 'SLUICE_FLUSH_ROWS', flag: 100, fromEnv: 200, fallback: FLUSH_ROWS_DEFAULT },
    { key: 'flushAgeMs', env: 'SLUICE_FLUSH_AGE_MS', flag: 0, fromEnv: 10, fallback: FLUSH_AGE_MS_DEFAULT },
    { key: 'drainJobMaxMs', env: 'SLUICE_DRAIN_JOB_MAX_MS', flag: 1000, fromEnv: 2000, fallback: DRAIN_JOB_MAX_MS_DEFAULT },
  ];

  for (const c of cases) {
    it(`${c.key}: --flag beats ${c.env} beats the default`, () => {
      const read = (flags: ConfigFlags, env: Env) => loadConfig(flags, env)[c.key as keyof ReturnType<typeof loadConfig>];
      expect(read({ [c.key]: c.flag }, { [c.env]: String(c.fromEnv) })).toBe(c.flag);
      expect(read({}, { [c.env]: String(c.fromEnv) })).toBe(c.fromEnv);
      expect(read({}, { [c.env]: ` ${c.fromEnv} ` })).toBe(c.fromEnv);
      expect(read({}, {})).toBe(c.fallback);
      expect(read({}, { [c.env]: '' })).toBe(c.fallback); // an empty variable counts as unset
    });
  }

  it('database URL, home, worker id, log level and migrate follow the same order', () => {
    const env = {
      DATABASE_URL: 'postgres://env@h/db',
      SLUICE_HOME: '/tmp/from-env',
      SLUICE_WORKER_ID: 'env-worker',
      SLUICE_LOG_LEVEL: 'debug',
      SLUICE_MIGRATE: 'off',
    };
    const fromEnv = loadConfig({}, env);
    expect(fromEnv).toMatchObject({ databaseUrl: 'postgres://env@h/db', homeDir: '/tmp/from-env', workerId: 'env-worker', logLevel: 'debug', migrate: false });
    const fromFlags = loadConfig(
      { databaseUrl: 'postgresql://flag@h/db', home: '/tmp/from-flag', workerId: 'flag-worker', logLevel: 'trace', migrate: true },
      env,
    );
    expect(fromFlags).toMatchObject({ databaseUrl: 'postgresql://flag@h/db', homeDir: '/tmp/from-flag', workerId: 'flag-worker', logLevel: 'trace', migrate: true });
    expect(loadConfig({}, { SLUICE_MIGRATE: 'yes' }).migrate).toBe(true);
    expect(loadConfig({}, { DATABASE_URL: '   ' }).databaseUrl).toBeUndefined();
  });

  it('drain batch rows is unset unless given, then flag beats env', () => {
    expect(loadConfig({}, {}).drainBatchRows).toBeUndefined();
    expect(loadConfig({}, { SLUICE_DRAIN_BATCH_ROWS: '700' }).drainBatchRows).toBe(700);
    expect(loadConfig({ drainBatchRows: 300 }, { SLUICE_DRAIN_BATCH_ROWS: '700' }).drainBatchRows).toBe(300);
  });
});

describe('loadConfig refusals', () => {
  it('SLUICE_CONCURRENCY=0 names the variable and the range', () => {
    const e = configError({}, { SLUICE_CONCURRENCY: '0' });
    expect(e.message).toContain('SLUICE_CONCURRENCY');
    expect(e.message).toContain('1 to 500');
    expect(e.message).toContain('"0"');
  });

  it('--drainers 100 names the flag and the range', () => {
    const e = configError({ drainers: 100 });
    expect(e.message).toContain('--drainers');
    expect(e.message).toContain('0 to 64');
    expect(e.message).toContain('100');
  });

  it('a bad flag is reported even when the environment holds a good value', () => {
    expect(configError({ concurrency: 0 }, { SLUICE_CONCURRENCY: '4' }).message).toContain('--concurrency');
  });

  it('non-numeric, fractional and out-of-range values are refused with the setting and a range that excludes them', () => {
    const cases: Array<[ConfigFlags, Env, string]> = [
      [{}, { SLUICE_FLUSH_ROWS: 'lots' }, 'SLUICE_FLUSH_ROWS'],
      [{}, { SLUICE_MAX_CONNECTIONS: '12.5' }, 'SLUICE_MAX_CONNECTIONS'],
      [{}, { SLUICE_DRAINERS: '2x' }, 'SLUICE_DRAINERS'],
      [{ concurrency: 2.5 }, {}, '--concurrency'],
      [{ flushers: Number.NaN }, {}, '--flushers'], // yargs hands over NaN for --flushers abc
      [{ maxConnections: 2 }, {}, '--max-connections'],
      [{ reserve: -1 }, {}, '--reserve'],
      [{ flushBytes: 1023 }, {}, '--flush-bytes'],
      [{ flushAgeMs: 60_001 }, {}, '--flush-age-ms'],
      [{ heartbeatMs: 99 }, {}, '--heartbeat-ms'],
      [{ drainBatchRows: 0 }, {}, '--drain-batch-rows'],
      [{}, { SLUICE_LOCAL_QUEUE_SIZE: '-1' }, 'SLUICE_LOCAL_QUEUE_SIZE'],
      [{ completeJobBatchDelayMs: -2 }, {}, '--complete-job-batch-delay-ms'],
    ];
    for (const [flags, env, setting] of cases) {
      const given = Object.values(flags)[0] ?? Object.values(env)[0];
      const message = configError(flags, env).message;
      const m = new RegExp(`^${setting} must be an integer from (-?\\d+) to (\\d+)`).exec(message);
      expect(m, message).not.toBeNull();
      const [min, max] = [Number(m?.[1]), Number(m?.[2])];
      expect(min).toBeLessThanOrEqual(max);
      const n = Number(given);
      // The value given really is outside what the message allows.
      expect(Number.isInteger(n) && n >= min && n <= max, `${setting}=${String(given)} vs ${min}..${max}`).toBe(false);
    }
  });

  it('--buffer-rows below --flush-rows is refused naming both', () => {
    const e = configError({ bufferRows: 500, flushRows: 1000 });
    expect(e.message).toContain('--buffer-rows');
    expect(e.message).toContain('--flush-rows');
    expect(e.message).toContain('500');
    expect(e.message).toContain('1000');
    expect(loadConfig({ bufferRows: 1000, flushRows: 1000 }, {}).bufferRows).toBe(1000);
  });

  it('--stale-after-ms shorter than two heartbeats is refused', () => {
    const e = configError({ heartbeatMs: 1000, staleAfterMs: 1500 });
    expect(e.message).toContain('--stale-after-ms');
    expect(e.message).toContain('--heartbeat-ms');
  });

  it('a bad worker id is refused with the allowed pattern', () => {
    for (const id of ['has space', '-leading-dash', 'x'.repeat(41), 'slash/inside', '']) {
      const e = configError({ workerId: id });
      expect(e.message, id).toContain('--worker-id');
      expect(e.message).toContain('at most 40 characters');
    }
    expect(configError({}, { SLUICE_WORKER_ID: 'bad id' }).message).toContain('worker-id');
    expect(loadConfig({ workerId: `a${'b'.repeat(39)}` }, {}).workerId).toHaveLength(40);
  });

  it('a bad log level is refused with the list of levels', () => {
    const e = configError({ logLevel: 'verbose' });
    expect(e.message).toContain('--log-level');
    expect(e.message).toContain('fatal, error, warn, info, debug, trace, silent');
    expect(configError({}, { SLUICE_LOG_LEVEL: 'loud' }).message).toContain('log-level');
  });

  it('a DATABASE_URL that is not postgres:// is refused without echoing its password', () => {
    for (const url of ['mysql://u:hunter2@h/db', 'localhost:5432/db', 'http://u:hunter2@h/']) {
      const e = configError({}, { DATABASE_URL: url });
      expect(e.message).toContain('DATABASE_URL');
      expect(e.message).toContain('postgres://');
      expect(e.message).not.toContain('hunter2');
    }
    expect(configError({ databaseUrl: 'sqlite:///tmp/x' }).message).toContain('DATABASE_URL');
  });

  it('SLUICE_MIGRATE must be a boolean word', () => {
    expect(configError({}, { SLUICE_MIGRATE: 'maybe' }).message).toContain('SLUICE_MIGRATE');
  });
});

describe('redactUrl', () => {
  it('masks the password and keeps everything else', () => {
    const out = redactUrl('postgres://alice:s3cr%40t@db.example.com:6543/app?sslmode=require');
    expect(out).not.toContain('s3cr');
    expect(out).toContain('*****');
    const u = new URL(out);
    expect([u.username, u.hostname, u.port, u.pathname, u.searchParams.get('sslmode')]).toEqual(['alice', 'db.example.com', '6543', '/app', 'require']);
  });

  it('leaves a URL without a password as it is', () => {
    expect(redactUrl('postgres://alice@localhost:5432/app')).toBe('postgres://alice@localhost:5432/app');
  });

  it('does not echo an unparsable string (it may hold a password)', () => {
    const out = redactUrl('postgres://alice:pw@[bad');
    expect(out).not.toContain('pw');
  });
});
