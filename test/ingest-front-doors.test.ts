/**
 * N events in through each front door → exactly the distinct event_ids in the
 * durable table, none left in staging; re-sent events collapse to one row.
 */
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { createIngestor } from '../src/ingest/create-ingestor.js';
import { createTestDatabase } from './helpers/database.js';
import { runCli } from './helpers/cli.js';
import { distinctIds, durableIds, makeEvents, stagedCount } from './helpers/events.js';
import { waitFor } from './helpers/wait.js';
import { startWorker } from './helpers/worker.js';
import { tempFolders } from './helpers/temp.js';

const db = await createTestDatabase('front_doors');
const tempFolder = tempFolders();

async function createStream(name: string): Promise<void> {
  await db.query(`SELECT sluice.create_stream($1, '[{"name":"user_id","type":"bigint"},{"name":"type","type":"text"}]'::jsonb)`, [name]);
}

async function waitDrained(stream: string, expected: number): Promise<void> {
  await waitFor(
    async () => ({ staged: await stagedCount(db, stream), durable: (await durableIds(db, stream)).rows }),
    (s) => s.staged === 0 && s.durable >= expected,
    { what: `stream ${stream} drained to ${expected} rows`, timeoutMs: 60_000 },
  );
}

describe('front doors', () => {
  it('TypeScript Ingestor: durable ack means every distinct event is in the durable table once', async () => {
    await createStream('via_client');
    await startWorker(db, { concurrency: 2, drainers: 2 });
    const { events, unique } = makeEvents(5_000, 1);
    expect(events.length - unique).toBeGreaterThan(0); // the workload does contain re-sends

    const ingestor = await createIngestor({ connectionString: db.url, stream: 'via_client', ack: 'durable', flushRows: 700 });
    const receipt = await ingestor.ingest(events);
    await ingestor.close();

    expect(receipt.rejected).toBe(0);
    expect(receipt.accepted).toBe(events.length);
    // ack 'durable' resolved: nothing may be left in staging, no waiting needed.
    expect(await stagedCount(db, 'via_client')).toBe(0);
    const durable = await durableIds(db, 'via_client');
    expect(durable.rows).toBe(unique);
    expect(durable.ids).toEqual(distinctIds(events));
  });

  it('sluice ingest FILE and stdin: the same events twice collapse to one row each', async () => {
    await createStream('via_file');
    await startWorker(db, { concurrency: 2, drainers: 1 });
    const { events, unique } = makeEvents(3_000, 2);
    const file = path.join(tempFolder('sluice-front-doors'), 'events.ndjson');
    await writeFile(file, events.map((e) => JSON.stringify(e)).join('\n') + '\n');

    const fromFile = await runCli(['ingest', file, '--stream', 'via_file', '--json'], { env: { DATABASE_URL: db.url } });
    expect(fromFile.stderr).not.toMatch(/error/i);
    expect(fromFile.code).toBe(0);
    const summary = JSON.parse(fromFile.stdout);
    expect(summary).toMatchObject({ stream: 'via_file', accepted: events.length, rejected: 0 });

    // Producer retry: the whole file again, through stdin this time.
    const fromStdin = await runCli(['ingest', '-', '--stream', 'via_file', '--json'], {
      env: { DATABASE_URL: db.url },
      input: events.map((e) => JSON.stringify(e)).join('\n'),
    });
    expect(fromStdin.code).toBe(0);
    expect(JSON.parse(fromStdin.stdout)).toMatchObject({ accepted: events.length, rejected: 0 });

    await waitDrained('via_file', unique);
    const durable = await durableIds(db, 'via_file');
    expect(durable.rows).toBe(unique);
    expect(durable.ids).toEqual(distinctIds(events));
  });

  it('SQL add_job(sluice_ingest): single and batched payloads land exactly once', async () => {
    await createStream('via_sql');
    await startWorker(db, { concurrency: 4, drainers: 2 });
    const { events, unique } = makeEvents(2_000, 3);
    // 1 event per job for the first 200, then 100 events per job; the last job is a batch-job array payload.
    const jobs: unknown[] = [];
    for (const e of events.slice(0, 200)) jobs.push({ stream: 'via_sql', events: [e] });
    for (let i = 200; i < 1_800; i += 100) jobs.push({ stream: 'via_sql', events: events.slice(i, i + 100) });
    jobs.push([
      { stream: 'via_sql', events: events.slice(1_800, 1_900) },
      { stream: 'via_sql', events: events.slice(1_900) },
    ]);
    for (const payload of jobs) {
      await db.query(`SELECT graphile_worker.add_job('sluice_ingest', $1::json)`, [JSON.stringify(payload)]);
    }
    await waitFor(
      async () => (await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM graphile_worker.jobs WHERE task_identifier = 'sluice_ingest'`)).rows[0]?.n,
      (n) => n === 0,
      { what: 'all sluice_ingest jobs completed' },
    );
    await waitDrained('via_sql', unique);
    const durable = await durableIds(db, 'via_sql');
    expect(durable.rows).toBe(unique);
    expect(durable.ids).toEqual(distinctIds(events));
    const rejects = await db.query(`SELECT 1 FROM sluice.rejects WHERE stream = 'via_sql'`);
    expect(rejects.rowCount).toBe(0);
  });
});
