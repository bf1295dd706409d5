/**
 * Premake future month partitions for every stream, so drains never wait on
 * DDL at a month boundary. Single-runner per stream (advisory lock), DDL
 * under lock_timeout; a busy stream is skipped and retried next hour.
 */
import type pg from 'pg';
import type { Logger } from '../logger.js';
import { coerceError } from '../errors.js';
import { listStreams } from '../streams/registry.js';

const TRY_LOCK = `SELECT pg_try_advisory_xact_lock(hashtext('sluice.rotate:' || $1::text)) AS locked`;
const PREMAKE = `SELECT sluice.premake_partitions($1::text) AS created`;

export interface PremakeResult {
  readonly created: Record<string, number>;
  readonly skipped: string[];
}

export async function premakeAllStreams(client: pg.ClientBase, log: Logger): Promise<PremakeResult> {
  const created: Record<string, number> = {};
  const skipped: string[] = [];
  for (const stream of await listStreams(client)) {
    await client.query('BEGIN');
    try {
      const { rows } = await client.query<{ locked: boolean }>(TRY_LOCK, [stream.name]);
      if (!rows[0]?.locked) {
        skipped.push(stream.name);
        await client.query('ROLLBACK');
        continue;
      }
      await client.query(`SET LOCAL lock_timeout = '5s'`);
      const result = await client.query<{ created: number }>(PREMAKE, [stream.name]);
      await client.query('COMMIT');
      created[stream.name] = result.rows[0]?.created ?? 0;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      skipped.push(stream.name);
      log.warn({ stream: stream.name, err: coerceError(err).message }, 'partitions: premake failed, will retry next run');
    }
  }
  const total = Object.values(created).reduce((a, b) => a + b, 0);
  log.info({ created: total, streams: Object.keys(created).length, skipped: skipped.length }, 'partitions: premake done');
  return { created, skipped };
}
