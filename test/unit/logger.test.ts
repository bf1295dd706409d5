/** Secrets never reach the logs, whatever casing the field was passed in (the snake_case formatter runs first). */
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { loggerOptions } from '../../src/logger.js';

function capture(): { log: pino.Logger; lines: () => string[] } {
  const chunks: string[] = [];
  const sink = new Writable({ write: (chunk: Buffer, _enc, done) => (chunks.push(chunk.toString()), done()) });
  return { log: pino(loggerOptions('info'), sink), lines: () => chunks.join('').trim().split('\n') };
}

describe('logger', () => {
  it('redacts connection strings and passwords in either casing, and writes snake_case keys', () => {
    const { log, lines } = capture();
    const url = 'postgres://app:s3cret-pw@db.example/prod';
    log.info({ connectionString: url }, 'a');
    log.info({ connection_string: url }, 'b');
    log.info({ databaseUrl: url, database_url: url }, 'c');
    log.info({ config: { password: 's3cret-pw' }, password: 's3cret-pw', workerId: 'w1' }, 'd');
    const out = lines();
    expect(out).toHaveLength(4);
    for (const line of out) expect(line).not.toContain('s3cret-pw');
    expect(JSON.parse(out[0]!)).toMatchObject({ connection_string: '*****' });
    expect(JSON.parse(out[3]!)).toMatchObject({ worker_id: 'w1', password: '*****' });
  });
});
