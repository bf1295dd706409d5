/**
 * Rejects are idempotent per input: a sluice_ingest job retried after its COPY
 * committed (here: the worker stopped while the job waited for its durable ack)
 * and a file sent twice each record every bad input once.
 */
import { randomUUID } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli } from './helpers/cli.js';
import { createTestDatabase } from './helpers/database.js';
import { durableIds, stagedCount } from './helpers/events.js';
import { waitFor } from './helpers/wait.js';
import { startWorker } from './helpers/worker.js';
import { tempFolders } from './helpers/temp.js';

const db = await createTestDatabase('idempotent_rejects');
const tempFolder = tempFolders();

const good = () => ({ event_id: randomUUID(), occurred_at: new Date().toISOString(), kind: 'ok' });
const badEvents = () => [{ occurred_at: new Date().toISOString() }, { event_id: 'nope', occurred_at: new Date().toISOString() }, 42];

async function rejectReasons(stream: string): Promise<string[]> {
  const { rows } = await db.query<{ reason: string }>(`SELECT reason FROM sluice.rejects WHERE stream = $1 ORDER BY reason`, [stream]);
  return rows.map((r) => r.reason);
}

describe('idempotent rejects', () => {
  it('a sluice_ingest job retried after its COPY committed records its rejects once', async () => {
    const stream = 'retried_job';
    await db.query(`SELECT sluice.create_stream($1)`, [stream]);
    const events = [good(), ...badEvents(), good()];
    // An ingest-only worker: the job stages its rows and rejects, then waits for a durable ack nobody gives.
    const first = await startWorker(db, { drainers: 0 });
    await db.query(`SELECT graphile_worker.add_job('sluice_ingest', $1::json, max_attempts := 5)`, [JSON.stringify({ stream, ack: 'durable', events })]);
    await waitFor(() => rejectReasons(stream), (r) => r.length === 3, { what: 'the first attempt committed its rejects' });
    expect(await stagedCount(db, stream)).toBe(2);
    // Shutdown aborts the durable wait: the job fails and is retried by the next worker.
    await first.stop('test: retry the job');
    const attempts = await db.query<{ attempts: number }>(`SELECT attempts FROM graphile_worker.jobs WHERE task_identifier = 'sluice_ingest'`);
    expect(attempts.rows[0]?.attempts).toBe(1);
    await db.query(`UPDATE graphile_worker._private_jobs SET run_at = now() WHERE task_id = (SELECT id FROM graphile_worker._private_tasks WHERE identifier = 'sluice_ingest')`);
    const second = await startWorker(db, { drainers: 1 });
    try {
      await waitFor(
        async () => (await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM graphile_worker.jobs WHERE task_identifier = 'sluice_ingest'`)).rows[0]?.n,
        (n) => n === 0,
        { what: 'the retried job completed' },
      );
    } finally {
      await second.stop('test done');
    }
    expect((await durableIds(db, stream)).rows).toBe(2);
    expect(await rejectReasons(stream)).toEqual(['invalid_event_id', 'missing_event_id', 'not_an_object']);
  });

  it('sending the same file twice records its rejects once', async () => {
    const stream = 'resent_file';
    await db.query(`SELECT sluice.create_stream($1)`, [stream]);
    const dir = tempFolder('sluice-resend');
    const file = path.join(dir, 'events.ndjson');
    const lines = [JSON.stringify(good()), '{not json', ...badEvents().map((e) => JSON.stringify(e)), JSON.stringify(good())];
    await writeFile(file, lines.join('\n') + '\n');
    for (let i = 0; i < 2; i++) {
      const result = await runCli(['ingest', file, '--stream', stream, '--json'], { env: { DATABASE_URL: db.url } });
      expect(result.code, result.stderr).toBe(0);
    }
    expect(await rejectReasons(stream)).toEqual(['invalid_event_id', 'invalid_json', 'missing_event_id', 'not_an_object']);
    expect(await stagedCount(db, stream)).toBe(4); // both sends staged; the drain collapses them
  });
});
