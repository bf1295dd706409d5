/**
 * `sluice rejects list|replay` (issue 17, "Rejects"). Rejects come from real
 * front doors (`sluice ingest` with bad lines, the TypeScript Ingestor) and one
 * hand-made drain reject (row_to_json of a staged row, as the drain writes it).
 * The promises under test, each written to break:
 * - list --json / --summary return exactly what a SELECT on sluice.rejects says;
 * - replay refuses to run without a selection;
 * - a replay stages each selected reject exactly once: across many chunks,
 *   beside a session holding some of the rows FOR UPDATE, and with two replays
 *   of the same selection at once (counted in staging and, after a worker's
 *   drain, in the durable table);
 * - a reject fixed in place (UPDATE of raw) becomes durable with its event_id;
 *   one still invalid stays a reject with its new reason and its raw intact;
 *   drain rejects and a flush's copy_rejected records replay as the event they were;
 *   a replay whose session dies mid-chunk leaves nothing behind;
 * - --dry-run changes nothing; retention still prunes replayed rejects.
 */
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { createIngestor } from '../src/ingest/create-ingestor.js';
import { replayRejects, type ReplayReport } from '../src/ingest/replay-rejects.js';
import { pruneRejects } from '../src/maintenance/prune.js';
import { runCli, spawnCli } from './helpers/cli.js';
import { createTestDatabase } from './helpers/database.js';
import { waitFor } from './helpers/wait.js';
import { startWorker } from './helpers/worker.js';

const db = await createTestDatabase('rejects_cli');
const env = { DATABASE_URL: db.url };

/** A UUID made from a number (stable and readable in failures). */
function uuid(prefix: number, n: number): string {
  return `${prefix.toString(16).padStart(8, '0')}-0000-4000-8000-${n.toString(16).padStart(12, '0')}`;
}

const nowIso = () => new Date().toISOString();

async function count(sql: string, values: unknown[] = []): Promise<number> {
  return (await db.query<{ n: number }>(sql, values)).rows[0]!.n;
}

async function createStream(name: string, options: Record<string, unknown> = {}): Promise<void> {
  await db.query(`SELECT sluice.create_stream($1, '[]'::jsonb, $2::jsonb)`, [name, JSON.stringify(options)]);
}

/** `count` rejects of `stream` through the Ingestor: events over a tiny max_event_bytes (reason event_too_large), ids uuid(prefix, i). */
async function tooLargeRejects(stream: string, prefix: number, n: number): Promise<string[]> {
  await createStream(stream, { max_event_bytes: 64 });
  const events = Array.from({ length: n }, (_, i) => ({ event_id: uuid(prefix, i), occurred_at: nowIso(), note: `event number ${i} of ${stream}` }));
  const ingestor = await createIngestor({ connectionString: db.url, stream, ack: 'staged', flushRows: 1_000 });
  const receipt = await ingestor.ingest(events);
  await ingestor.close();
  expect(receipt).toMatchObject({ accepted: 0, rejected: n });
  expect(new Set(receipt.rejections.map((r) => r.reason))).toEqual(new Set(['event_too_large']));
  return events.map((e) => e.event_id);
}

/** The operator's fix for tooLargeRejects: raise the stream's limit. */
async function raiseLimit(stream: string): Promise<void> {
  await db.query(`UPDATE sluice.streams SET max_event_bytes = 65536 WHERE name = $1`, [stream]);
}

async function replayCli(args: string[]): Promise<ReplayReport> {
  const result = await runCli(['rejects', 'replay', ...args, '--json'], { env });
  expect(result.code, result.stderr).toBe(0);
  return JSON.parse(result.stdout) as ReplayReport;
}

/** Staged rows of `stream`, and how many distinct event_ids they hold. */
async function staged(stream: string): Promise<{ rows: number; ids: number }> {
  const { rows } = await db.query<{ rows: number; ids: number }>(
    `SELECT count(*)::int AS rows, count(DISTINCT event_id)::int AS ids FROM sluice_staging.${stream}`,
  );
  return rows[0]!;
}

describe('sluice rejects list', () => {
  it('list --json and --summary return what a SELECT on sluice.rejects returns, per stream and reason filter', async () => {
    await createStream('shop');
    const good = (n: number) => JSON.stringify({ event_id: uuid(0x5, n), occurred_at: nowIso(), n });
    const lines = [
      good(1),
      'not json at all',
      JSON.stringify({ occurred_at: nowIso() }), // missing_event_id
      '{"event_id": "x", "occurred_at": "2026-01-01T00:00:00Z"}', // invalid_event_id
      '[1, 2]', // not_an_object
      good(2),
      '{"event_id": "truncated',
    ].join('\n');
    for (const stream of ['events', 'shop']) {
      const result = await runCli(['ingest', '--stream', stream, '-'], { env, input: `${lines}\n` });
      expect(result.code, result.stderr).toBe(0);
    }
    // The Ingestor's rejects (source client), and a drain's reject written as the drain writes them.
    const ingestor = await createIngestor({ connectionString: db.url, stream: 'shop', ack: 'staged' });
    await ingestor.ingest([{ event_id: uuid(0x6, 1), occurred_at: 'yesterday' }, 42]);
    await ingestor.close();
    await db.query(
      `INSERT INTO sluice.rejects (stream, source, reason, message, raw)
       SELECT 'shop', 'drain', 'no_partition', 'hand-made drain reject', row_to_json(s)::text
         FROM (SELECT $1::uuid AS event_id, now() AS occurred_at, '{"k": 1}'::jsonb AS payload, now() AS received_at) s`,
      [uuid(0x6, 2)],
    );

    const cases: Array<{ args: string[]; streams: string[] | null; reasons: string[] | null }> = [
      { args: [], streams: null, reasons: null },
      { args: ['--stream', 'shop'], streams: ['shop'], reasons: null },
      { args: ['--reason', 'invalid_json'], streams: null, reasons: ['invalid_json'] },
      { args: ['--stream', 'events', '--reason', 'invalid_json,missing_event_id'], streams: ['events'], reasons: ['invalid_json', 'missing_event_id'] },
      { args: ['--stream', 'shop', '--reason', 'no_partition', '--reason', 'invalid_occurred_at'], streams: ['shop'], reasons: ['no_partition', 'invalid_occurred_at'] },
      { args: ['--stream', 'nosuch'], streams: ['nosuch'], reasons: null },
    ];
    // The cases are independent reads: run them side by side (each is two CLI processes).
    await Promise.all(
      cases.map(async (c) => {
        const expected = await db.query(
          `SELECT id::int AS id, stream, source, reason, message, raw FROM sluice.rejects
            WHERE ($1::text[] IS NULL OR stream = ANY($1)) AND ($2::text[] IS NULL OR reason = ANY($2)) ORDER BY id DESC`,
          [c.streams, c.reasons],
        );
        const result = await runCli(['rejects', 'list', ...c.args, '--limit', '1000', '--json'], { env });
        expect(result.code, result.stderr).toBe(0);
        const listed = JSON.parse(result.stdout) as Array<Record<string, unknown>>;
        expect(listed.map(({ id, stream, source, reason, message, raw }) => ({ id, stream, source, reason, message, raw })), c.args.join(' ')).toEqual(expected.rows);
        for (const row of listed) {
          expect(Object.keys(row).every((k) => /^[a-z_]+$/.test(k))).toBe(true);
          expect(row).toMatchObject({ replayed_at: null, replay_attempts: 0 });
        }

        const summary = await runCli(['rejects', 'list', '--summary', ...c.args, '--json'], { env });
        expect(summary.code, summary.stderr).toBe(0);
        const grouped = await db.query(
          `SELECT stream, reason, count(*)::int AS total FROM sluice.rejects
            WHERE ($1::text[] IS NULL OR stream = ANY($1)) AND ($2::text[] IS NULL OR reason = ANY($2)) GROUP BY 1, 2 ORDER BY 1, 2`,
          [c.streams, c.reasons],
        );
        expect((JSON.parse(summary.stdout) as Array<Record<string, unknown>>).map(({ stream, reason, total, pending }) => ({ stream, reason, total, pending }))).toEqual(
          grouped.rows.map((r) => ({ ...r, pending: r.total })),
        );
      }),
    );
    // Both front doors are there: the file's five bad lines per stream, the Ingestor's two, the drain's one.
    expect(await count(`SELECT count(*)::int AS n FROM sluice.rejects WHERE source = 'file'`)).toBe(10);
    expect(await count(`SELECT count(*)::int AS n FROM sluice.rejects WHERE source IN ('client', 'drain') AND stream = 'shop'`)).toBe(3);

    // --limit keeps the newest; the table form names the columns.
    const limited = JSON.parse((await runCli(['rejects', 'list', '--limit', '2', '--json'], { env })).stdout) as Array<{ id: number }>;
    expect(limited.map((r) => r.id)).toEqual((await db.query(`SELECT id::int AS id FROM sluice.rejects ORDER BY id DESC LIMIT 2`)).rows.map((r) => r.id));
    const table = await runCli(['rejects', 'list', '--stream', 'shop'], { env });
    expect(table.code, table.stderr).toBe(0);
    expect(table.stdout).toMatch(/^id\s+stream\s+received at\s+source\s+reason\s+replayed\s+message\s+raw/);
    expect(table.stdout).toMatch(/no_partition/);

    // --since: a window that excludes everything, and one that includes everything.
    const future = await runCli(['rejects', 'list', '--since', '2999-01-01T00:00:00Z', '--json'], { env });
    expect(JSON.parse(future.stdout)).toEqual([]);
    const recent = await runCli(['rejects', 'list', '--since', '1h', '--limit', '1000', '--json'], { env });
    expect((JSON.parse(recent.stdout) as unknown[]).length).toBe(await count(`SELECT count(*)::int AS n FROM sluice.rejects`));
    const bad = await runCli(['rejects', 'list', '--since', 'last tuesday'], { env });
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/invalid --since/);
  });
});

describe('sluice rejects replay', () => {
  it('refuses to run without a selection (exit 2), and changes nothing', async () => {
    const before = await count(`SELECT count(*)::int AS n FROM sluice.rejects WHERE replay_attempts > 0 OR replayed_at IS NOT NULL`);
    const result = await runCli(['rejects', 'replay'], { env });
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/needs a selection: --stream S, --reason R, --id N .*--all/);
    expect(result.stdout).toBe('');
    const json = await runCli(['rejects', 'replay', '--json', '--dry-run'], { env });
    expect(json.code).toBe(2);
    expect(await count(`SELECT count(*)::int AS n FROM sluice.rejects WHERE replay_attempts > 0 OR replayed_at IS NOT NULL`)).toBe(before);
  });

  it('a reject whose raw was fixed with an UPDATE is replayed once and becomes durable with its event_id; one still invalid keeps its raw and gets its new reason', async () => {
    await createStream('fixme');
    const fixedId = uuid(0xf1, 1);
    const brokenLine = `{"event_id": "${fixedId}", "occurred_at": "${nowIso()}", "amount": 12.50, }`; // trailing comma
    const stillBad = `{"event_id": "${uuid(0xf1, 2)}", "amount": 3,}`;
    const ingest = await runCli(['ingest', '--stream', 'fixme', '-'], { env, input: `${brokenLine}\n${stillBad}\n` });
    expect(ingest.code, ingest.stderr).toBe(0);
    const rejects = (await db.query<{ id: string; raw: string; reason: string }>(`SELECT id::text, raw, reason FROM sluice.rejects WHERE stream = 'fixme' ORDER BY id`)).rows;
    expect(rejects.map((r) => r.reason)).toEqual(['invalid_json', 'invalid_json']);
    const [fixed, bad] = rejects as [(typeof rejects)[0], (typeof rejects)[0]];

    // The operator fixes one in place; the other is "fixed" into valid JSON that still lacks occurred_at.
    await db.query(`UPDATE sluice.rejects SET raw = replace(raw, ', }', '}') WHERE id = $1`, [fixed.id]);
    const badRaw = `{"event_id": "${uuid(0xf1, 2)}", "amount": 3}`;
    await db.query(`UPDATE sluice.rejects SET raw = $2 WHERE id = $1`, [bad.id, badRaw]);

    const report = await replayCli(['--stream', 'fixme']);
    expect(report).toMatchObject({ replayed: 1, still_rejected: 1, examined: 2, still_rejected_by_reason: { missing_occurred_at: 1 }, dry_run: false });
    expect(await staged('fixme')).toEqual({ rows: 1, ids: 1 });

    const after = (await db.query(`SELECT id::text, reason, message, raw, first_reason, replay_attempts, replayed_at, replayed_by FROM sluice.rejects WHERE stream = 'fixme' ORDER BY id`)).rows;
    expect(after[0]).toMatchObject({ id: fixed.id, reason: 'invalid_json', replay_attempts: 1, first_reason: null });
    expect(after[0]!.replayed_at).toBeInstanceOf(Date);
    expect(after[0]!.replayed_by).toMatch(/^cli\//);
    expect(after[1]).toMatchObject({ id: bad.id, reason: 'missing_occurred_at', first_reason: 'invalid_json', raw: badRaw, replay_attempts: 1, replayed_at: null });
    expect(after[1]!.message).toMatch(/occurred_at is required/);

    for (const [state, ids] of [['replayed', [fixed.id]], ['pending', [bad.id]]] as const) {
      const listed = await runCli(['rejects', 'list', '--stream', 'fixme', '--state', state, '--json'], { env });
      expect((JSON.parse(listed.stdout) as Array<{ id: number }>).map((r) => String(r.id)), state).toEqual(ids);
    }

    // Again: the replayed one is not staged twice; the bad one is tried again, its first reason kept.
    const again = await replayCli(['--stream', 'fixme']);
    expect(again).toMatchObject({ replayed: 0, still_rejected: 1, examined: 1 });
    expect(await staged('fixme')).toEqual({ rows: 1, ids: 1 });
    expect((await db.query(`SELECT first_reason, replay_attempts FROM sluice.rejects WHERE id = $1`, [bad.id])).rows[0]).toEqual({
      first_reason: 'invalid_json',
      replay_attempts: 2,
    });

    const worker = await startWorker(db, { maxConnections: 6 });
    try {
      await waitFor(() => count(`SELECT count(*)::int AS n FROM sluice_data.fixme`), (n) => n === 1, { what: 'the replayed event durable' });
      await waitFor(() => staged('fixme'), (s) => s.rows === 0, { what: 'staging drained' });
    } finally {
      await worker.stop('test done');
    }
    const durable = (await db.query(`SELECT event_id::text, payload FROM sluice_data.fixme`)).rows;
    expect(durable).toEqual([{ event_id: fixedId, payload: { amount: 12.5 } }]);
  });

  it('a drain reject (source drain, the staged row as JSON) is replayed as the event it was: payload members back at the top', async () => {
    await createStream('drained', {});
    const id = uuid(0xd1, 1);
    await db.query(
      `INSERT INTO sluice.rejects (stream, source, reason, message, raw)
       SELECT 'drained', 'drain', 'no_partition', 'month had no partition', row_to_json(s)::text
         FROM (SELECT $1::uuid AS event_id, now() - interval '1 minute' AS occurred_at,
                      '{"k": "v", "payload": {"nested": true}, "n": 12345678901234567890}'::jsonb AS payload, now() AS received_at) s`,
      [id],
    );
    const report = await replayCli(['--stream', 'drained', '--reason', 'no_partition']);
    expect(report).toMatchObject({ replayed: 1, still_rejected: 0 });
    const row = (await db.query(`SELECT event_id::text, payload::text AS payload FROM sluice_staging.drained`)).rows;
    // The original event's own "payload" key stays a member; received_at is staging's, not the event's; big numbers exact.
    expect(row).toEqual([{ event_id: id, payload: '{"k": "v", "n": 12345678901234567890, "payload": {"nested": true}}' }]);
  });

  it("a flush's copy_rejected reject (COPY fields, the event's text not kept) stays refused while Postgres refuses it, then replays as its event", async () => {
    await createStream('refusing');
    await db.query(`ALTER TABLE sluice_staging.refusing ADD CONSTRAINT no_13 CHECK (payload->>'n' IS DISTINCT FROM '13')`);
    const events = [12, 13, 14].map((n) => ({ event_id: uuid(0x13, n), occurred_at: nowIso(), n, payload: { inner: n } }));
    const ingestor = await createIngestor({ connectionString: db.url, stream: 'refusing', ack: 'staged' });
    const receipt = await ingestor.ingest(events);
    await ingestor.close();
    expect(receipt.rejections).toEqual([{ index: 1, reason: 'copy_rejected', message: expect.stringMatching(/no_13/) }]);
    const raw = (await db.query<{ raw: string }>(`SELECT raw FROM sluice.rejects WHERE stream = 'refusing'`)).rows[0]!.raw;
    expect(typeof (JSON.parse(raw) as { payload: unknown }).payload).toBe('string');
    expect(await staged('refusing')).toEqual({ rows: 2, ids: 2 });

    // Still refused: the replay's COPY is isolated under a savepoint, the reject stays with Postgres' message.
    const refused = await replayCli(['--stream', 'refusing']);
    expect(refused).toMatchObject({ replayed: 0, still_rejected: 1, still_rejected_by_reason: { copy_rejected: 1 } });
    expect(refused.still_rejected_examples[0]!.message).toMatch(/no_13/);
    expect(await staged('refusing')).toEqual({ rows: 2, ids: 2 });

    await db.query(`ALTER TABLE sluice_staging.refusing DROP CONSTRAINT no_13`);
    expect(await replayCli(['--stream', 'refusing'])).toMatchObject({ replayed: 1, still_rejected: 0 });
    const row = (await db.query(`SELECT payload FROM sluice_staging.refusing WHERE event_id = $1`, [uuid(0x13, 13)])).rows;
    // The event as sent: its own "payload" key a member, not the COPY text of the whole payload.
    expect(row).toEqual([{ payload: { n: 13, payload: { inner: 13 } } }]);
    expect((await db.query(`SELECT raw, first_reason, replay_attempts FROM sluice.rejects WHERE stream = 'refusing'`)).rows[0]).toEqual({
      raw,
      first_reason: null,
      replay_attempts: 2,
    });
  });

  it('replays 2,500 rejects in chunks of 1,000, each staged once; --dry-run first changes nothing', async () => {
    const ids = await tooLargeRejects('bulk', 0xb1, 2_500);
    const dry = await replayCli(['--stream', 'bulk', '--chunk', '1000', '--dry-run']);
    expect(dry).toMatchObject({ dry_run: true, replayed: 0, still_rejected: 2_500, still_rejected_by_reason: { event_too_large: 2_500 }, chunks: 3 });
    expect(await count(`SELECT count(*)::int AS n FROM sluice.rejects WHERE stream = 'bulk' AND (replay_attempts > 0 OR reason <> 'event_too_large')`)).toBe(0);

    await raiseLimit('bulk');
    const dryFixed = await replayCli(['--stream', 'bulk', '--chunk', '1000', '--dry-run']);
    expect(dryFixed).toMatchObject({ dry_run: true, replayed: 2_500, still_rejected: 0, chunks: 3 });
    expect(await staged('bulk')).toEqual({ rows: 0, ids: 0 });
    expect(await count(`SELECT count(*)::int AS n FROM sluice.rejects WHERE stream = 'bulk' AND replayed_at IS NOT NULL`)).toBe(0);

    const report = await replayCli(['--stream', 'bulk', '--chunk', '1000']);
    expect(report).toMatchObject({ dry_run: false, replayed: 2_500, still_rejected: 0, chunks: 3, examined: 2_500, replayed_by_stream: { bulk: 2_500 } });
    expect(await staged('bulk')).toEqual({ rows: 2_500, ids: 2_500 });
    const stagedIds = (await db.query<{ id: string }>(`SELECT event_id::text AS id FROM sluice_staging.bulk`)).rows.map((r) => r.id);
    expect(new Set(stagedIds)).toEqual(new Set(ids));
    expect(await count(`SELECT count(*)::int AS n FROM sluice.rejects WHERE stream = 'bulk' AND replayed_at IS NOT NULL AND replay_attempts = 1`)).toBe(2_500);
    // The drain kicks are in the same transactions: jobs are waiting for a worker.
    expect(await count(`SELECT count(*)::int AS n FROM graphile_worker.jobs WHERE key LIKE 'sluice_drain:bulk:%'`)).toBeGreaterThan(0);

    const again = await replayCli(['--all', '--stream', 'bulk']);
    expect(again).toMatchObject({ replayed: 0, examined: 0 });
    expect(await staged('bulk')).toEqual({ rows: 2_500, ids: 2_500 });
  });

  it('skips rejects another session holds FOR UPDATE, replays them in a later run, and nothing twice', async () => {
    await tooLargeRejects('held', 0xc1, 300);
    await raiseLimit('held');
    const holder = new pg.Client({ connectionString: db.url });
    await holder.connect();
    try {
      await holder.query('BEGIN');
      const locked = await holder.query<{ id: string }>(
        `SELECT id::text FROM sluice.rejects WHERE stream = 'held' AND id % 6 = 0 ORDER BY id FOR UPDATE`,
      );
      expect(locked.rows.length).toBe(50);
      const first = await replayCli(['--stream', 'held', '--chunk', '64']);
      expect(first).toMatchObject({ replayed: 250, still_rejected: 0 });
      expect(await staged('held')).toEqual({ rows: 250, ids: 250 });
      const pending = (await db.query<{ id: string }>(`SELECT id::text FROM sluice.rejects WHERE stream = 'held' AND replayed_at IS NULL ORDER BY id`)).rows;
      expect(pending.map((r) => r.id)).toEqual(locked.rows.map((r) => r.id));
      expect(await count(`SELECT count(*)::int AS n FROM sluice.rejects WHERE stream = 'held' AND replayed_at IS NULL AND replay_attempts > 0`)).toBe(0);
      await holder.query('COMMIT');
    } finally {
      await holder.end();
    }
    const second = await replayCli(['--stream', 'held', '--chunk', '64']);
    expect(second).toMatchObject({ replayed: 50, examined: 50 });
    expect(await staged('held')).toEqual({ rows: 300, ids: 300 });
    expect(await count(`SELECT count(*)::int AS n FROM sluice.rejects WHERE stream = 'held' AND replayed_at IS NOT NULL AND replay_attempts = 1`)).toBe(300);
  });

  it('two replays of the same selection at once stage each reject exactly once: 3,000 staged, 3,000 durable after the drain', async () => {
    const ids = await tooLargeRejects('race', 0xe1, 3_000);
    await raiseLimit('race');
    const clients = [new pg.Client({ connectionString: db.url }), new pg.Client({ connectionString: db.url })];
    await Promise.all(clients.map((c) => c.connect()));
    let reports: ReplayReport[];
    try {
      // In-process, so the two interleave chunk by chunk (two CLI processes would mostly run one after the other).
      reports = await Promise.all(
        clients.map((c, i) => replayRejects(c, { streams: ['race'] }, { chunkRows: 100, replayedBy: `test/${i}`, drainSlots: 2 })),
      );
    } finally {
      await Promise.all(clients.map((c) => c.end()));
    }
    expect(reports[0]!.replayed + reports[1]!.replayed).toBe(3_000);
    expect(reports[0]!.replayed).toBeGreaterThan(0);
    expect(reports[1]!.replayed).toBeGreaterThan(0);
    const by = (await db.query<{ replayed_by: string; n: number }>(
      `SELECT replayed_by, count(*)::int AS n FROM sluice.rejects WHERE stream = 'race' GROUP BY 1 ORDER BY 1`,
    )).rows;
    expect(by).toEqual([
      { replayed_by: 'test/0', n: reports[0]!.replayed },
      { replayed_by: 'test/1', n: reports[1]!.replayed },
    ]);
    expect(await staged('race')).toEqual({ rows: 3_000, ids: 3_000 });
    // And a CLI replay of the same selection after them finds nothing left.
    expect(await replayCli(['--stream', 'race'])).toMatchObject({ replayed: 0, examined: 0 });

    const worker = await startWorker(db, { maxConnections: 6 });
    try {
      await waitFor(() => staged('race'), (s) => s.rows === 0, { what: 'race staging drained', timeoutMs: 60_000 });
    } finally {
      await worker.stop('test done');
    }
    const durable = (await db.query<{ id: string }>(`SELECT event_id::text AS id FROM sluice_data.race`)).rows.map((r) => r.id);
    expect(durable.length).toBe(3_000);
    expect(new Set(durable)).toEqual(new Set(ids));
  });

  it('two `sluice rejects replay` processes started together on the same selection: the replayed counts add up, each reject staged once', async () => {
    await tooLargeRejects('race_cli', 0xe2, 1_500);
    await raiseLimit('race_cli');
    const runs = [0, 1].map(() => spawnCli(['rejects', 'replay', '--stream', 'race_cli', '--chunk', '50', '--json'], env));
    for (const r of runs) r.child.stdin?.end();
    const results = await Promise.all(runs.map((r) => r.exited));
    for (const r of results) expect(r.code, r.stderr).toBe(0);
    const reports = results.map((r) => JSON.parse(r.stdout) as ReplayReport);
    expect(reports[0]!.replayed + reports[1]!.replayed).toBe(1_500);
    expect(await staged('race_cli')).toEqual({ rows: 1_500, ids: 1_500 });
    expect(await count(`SELECT count(*)::int AS n FROM sluice.rejects WHERE stream = 'race_cli' AND (replayed_at IS NULL OR replay_attempts <> 1)`)).toBe(0);
  });

  it('a replay whose session dies mid-chunk stages nothing and marks nothing of that chunk; the next run replays all, once', async () => {
    await tooLargeRejects('crash', 0xa1, 400);
    await raiseLimit('crash');
    // The chunk's COPY waits for a lock the blocker holds on staging: the replay is caught inside its transaction.
    const blocker = new pg.Client({ connectionString: db.url });
    const victim = new pg.Client({ connectionString: db.url, application_name: 'sluice-test-replay-victim' });
    await Promise.all([blocker.connect(), victim.connect()]);
    victim.on('error', () => undefined);
    try {
      await blocker.query('BEGIN');
      await blocker.query('LOCK TABLE sluice_staging.crash IN SHARE MODE');
      const run = replayRejects(victim, { streams: ['crash'] }, { chunkRows: 100, replayedBy: 'victim', drainSlots: 1 });
      const settled = run.then(
        () => 'finished',
        (err: Error) => `failed: ${err.message}`,
      );
      const pid = await waitFor(
        async () =>
          (await db.query<{ pid: number }>(`SELECT pid FROM pg_stat_activity WHERE application_name = 'sluice-test-replay-victim' AND wait_event_type = 'Lock'`)).rows[0]?.pid,
        (p) => p !== undefined,
        { what: 'the replay waiting on the staging lock' },
      );
      // It holds its chunk: another locker skips exactly those 100.
      expect(await count(`SELECT count(*)::int AS n FROM (SELECT id FROM sluice.rejects WHERE stream = 'crash' FOR UPDATE SKIP LOCKED) x`)).toBe(300);
      await db.query('SELECT pg_terminate_backend($1)', [pid]);
      expect(await settled).toMatch(/^failed: /);
      await blocker.query('COMMIT');
    } finally {
      await blocker.end();
      await victim.end().catch(() => undefined);
    }
    expect(await staged('crash')).toEqual({ rows: 0, ids: 0 });
    expect(await count(`SELECT count(*)::int AS n FROM sluice.rejects WHERE stream = 'crash' AND (replayed_at IS NOT NULL OR replay_attempts > 0)`)).toBe(0);

    const report = await replayCli(['--stream', 'crash', '--chunk', '100']);
    expect(report).toMatchObject({ replayed: 400, chunks: 4 });
    expect(await staged('crash')).toEqual({ rows: 400, ids: 400 });
  });

  it('retention prunes replayed rejects like any other, by received_at', async () => {
    await db.query(
      `INSERT INTO sluice.rejects (stream, received_at, source, reason, message, raw, replayed_at, replay_attempts)
       SELECT 'old', now() - interval '40 days', 'client', 'invalid_json', 'old', 'x', CASE WHEN g % 2 = 0 THEN now() END, g % 3
         FROM generate_series(1, 30) g`,
    );
    expect(await pruneRejects(db.pool, 30, { chunkRows: 7 })).toBe(30);
    expect(await count(`SELECT count(*)::int AS n FROM sluice.rejects WHERE stream = 'old'`)).toBe(0);
  });
});
