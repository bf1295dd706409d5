/**
 * The minute sweep (crontab): kick drains for every stream that has rows in
 * staging, in case a kick was lost (a producer that died between commit and
 * kick, a worker restart).
 */
import type pg from 'pg';
import { stagingTable } from '../streams/names.js';
import { listStreams } from '../streams/registry.js';
import type { DrainKicker } from './drain-kicker.js';

export async function sweepStagedStreams(db: pg.Pool | pg.ClientBase, kicker: DrainKicker): Promise<string[]> {
  const kicked: string[] = [];
  for (const stream of await listStreams(db)) {
    const { rowCount } = await db.query(`SELECT 1 FROM ${stagingTable(stream.name)} LIMIT 1`);
    if (rowCount) {
      kicker.kick(stream.name);
      kicked.push(stream.name);
    }
  }
  return kicked;
}
