/**
 * `sluice ingest`'s summary counts its own rejects only: another producer rejecting into the
 * same stream (another `sluice ingest`, source file too) while it runs is not in its figures.
 */
import { randomUUID } from 'node:crypto';
import { rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { createTestDatabase } from './helpers/database.js';
import { runCli, spawnCli } from './helpers/cli.js';
import { waitFor } from './helpers/wait.js';

const db = await createTestDatabase('ingest_summary');

const goodLine = () => JSON.stringify({ event_id: randomUUID(), occurred_at: new Date().toISOString(), n: 1 });

async function rejectCount(stream: string): Promise<number> {
  return (await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM sluice.rejects WHERE stream = $1`, [stream])).rows[0]!.n;
}

describe('sluice ingest summary', () => {
  it('says 3 rejects when its file has 3 bad lines, while another producer writes 50 rejects to the same stream', async () => {
    const stream = 'summary_shared';
    await db.query(`SELECT sluice.create_stream($1)`, [stream]);

    // Our run: stdin, so the other producer can be made to run in the middle of it.
    const ours = spawnCli(['ingest', '-', '--stream', stream, '--json', '--flush-age-ms', '20'], { DATABASE_URL: db.url });
    const stdin = ours.child.stdin!;
    const write = (lines: string[]) => new Promise<void>((resolve, reject) => stdin.write(`${lines.join('\n')}\n`, (err) => (err ? reject(err) : resolve())));
    await write([goodLine(), goodLine(), 'our first bad line', goodLine()]);
    // Our first reject is committed: the run has started counting.
    await waitFor(() => rejectCount(stream), (n) => n === 1, { what: 'our first reject committed' });

    // The other producer: 50 bad lines of its own (25 not JSON, 25 not objects), source file as well.
    const otherFile = path.join(os.tmpdir(), `sluice-summary-other-${process.pid}-${randomUUID().slice(0, 8)}.ndjson`);
    const otherLines = Array.from({ length: 50 }, (_, i) => (i % 2 === 0 ? `other producer garbage ${i}` : `[${i}]`));
    await writeFile(otherFile, `${otherLines.join('\n')}\n`);
    const other = await runCli(['ingest', otherFile, '--stream', stream, '--json'], { env: { DATABASE_URL: db.url } }).finally(() => rm(otherFile, { force: true }));
    expect(other.code, other.stderr).toBe(0);
    expect(JSON.parse(other.stdout)).toMatchObject({ rejected: 50, rejects_by_reason: { invalid_json: 25, not_an_object: 25 } });
    expect(await rejectCount(stream)).toBe(51);

    await write([goodLine(), 'our second bad line', goodLine(), '{"our third bad line": ']);
    stdin.end();
    const result = await ours.exited;
    expect(result.code, result.stderr).toBe(0);
    const summary = JSON.parse(result.stdout) as { accepted: number; rejected: number; rejects_by_reason: Record<string, number> };
    expect(summary).toMatchObject({ stream, lines: 8, accepted: 5, rejected: 3 });
    expect(summary.rejects_by_reason).toEqual({ invalid_json: 3 });
    expect(await rejectCount(stream)).toBe(53);

    // The text summary's table says the same.
    const again = spawnCli(['ingest', '-', '--stream', stream], { DATABASE_URL: db.url });
    again.child.stdin!.end(['bad again 1', goodLine(), '"a string"'].join('\n'));
    const text = await again.exited;
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toMatch(/1 accepted \(staged\), 2 rejected/);
    const table = text.stdout.slice(text.stdout.indexOf('rejects (kept in sluice.rejects)'));
    expect(table).toMatch(/invalid_json\s*│?\s*1\b/);
    expect(table).toMatch(/not_an_object\s*│?\s*1\b/);
    expect(table).not.toMatch(/\b(25|26|50)\b/);
  });
});
