/**
 * Input that must never be altered or crash the CLI (issue 17, defects 4, 5):
 * - a line that is not valid UTF-8 is rejected with reason invalid_utf8, its
 *   raw bytes kept escaped (\xNN) in sluice.rejects, never stored with U+FFFD;
 *   valid lines around it (multi-byte characters split across reads too) are
 *   stored exactly;
 * - a file the user may not read is one clear line on stderr and exit 1.
 */
import { spawnSync } from 'node:child_process';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import { readNdjson } from '../src/ingest/ndjson.js';
import { runCli, SLUICE_BIN } from './helpers/cli.js';
import { createTestDatabase } from './helpers/database.js';

const db = await createTestDatabase('reliability_input');
const tmp = await mkdtemp(path.join(os.tmpdir(), 'sluice-rel-input-'));
afterAll(() => rm(tmp, { recursive: true, force: true }));

const ID_BAD = '0aaaaaaa-aaaa-4aaa-aaaa-aaaaaaaaaaab';
const ID_GOOD = '0aaaaaaa-aaaa-4aaa-aaaa-aaaaaaaaaaac';

describe('invalid UTF-8', () => {
  it('sluice ingest rejects the line with reason invalid_utf8 and keeps its bytes escaped; valid lines are stored exactly', async () => {
    await db.query(`SELECT sluice.create_stream('utf8_input')`);
    const bad = Buffer.concat([
      Buffer.from(`{"event_id":"${ID_BAD}","occurred_at":"2026-11-30T20:00:00Z","s":"`),
      Buffer.from([0xff, 0xfe]),
      Buffer.from('"}\n'),
    ]);
    const good = Buffer.from(`{"event_id":"${ID_GOOD}","occurred_at":"2026-11-30T20:00:00Z","s":"zürich 🎉"}\n`);
    const file = path.join(tmp, 'utf8.ndjson');
    await writeFile(file, Buffer.concat([bad, good]));
    const result = await runCli(['ingest', file, '--stream', 'utf8_input', '--ack', 'staged', '--json'], { env: { DATABASE_URL: db.url } });
    expect(result.code, result.stderr).toBe(0);
    const summary = JSON.parse(result.stdout) as { accepted: number; rejected: number };
    expect(summary).toMatchObject({ accepted: 1, rejected: 1 });
    const rejects = await db.query<{ reason: string; raw: string }>(`SELECT reason, raw FROM sluice.rejects WHERE stream = 'utf8_input'`);
    expect(rejects.rows).toHaveLength(1);
    expect(rejects.rows[0]!.reason).toBe('invalid_utf8');
    expect(rejects.rows[0]!.raw).toContain('"s":"\\xff\\xfe"}');
    const staged = await db.query<{ event_id: string; s: string }>(`SELECT event_id::text, payload->>'s' AS s FROM sluice_staging.utf8_input`);
    expect(staged.rows).toEqual([{ event_id: ID_GOOD, s: 'zürich 🎉' }]);
  });

  it('the reader splits bytes, not characters: a character split across reads is kept whole', async () => {
    const input = new PassThrough();
    const bytes = Buffer.from('{"a":"é🎉"}\n\xff\n'.replace('\xff', ''), 'utf8');
    const lines: Array<{ text: string; invalidUtf8: boolean }> = [];
    const reading = (async () => {
      for await (const l of readNdjson(input, 1000)) lines.push({ text: l.text, invalidUtf8: l.invalidUtf8 });
    })();
    for (let i = 0; i < bytes.length; i++) input.write(bytes.subarray(i, i + 1));
    input.write(Buffer.from([0x7b, 0xc3, 0x0a])); // '{' then a lone lead byte
    input.end();
    await reading;
    expect(lines).toEqual([
      { text: '{"a":"é🎉"}', invalidUtf8: false },
      { text: '', invalidUtf8: false },
      { text: '{\\xc3', invalidUtf8: true },
    ]);
  });
});

describe('an unreadable file', () => {
  it('is one clear line on stderr and exit 1, not a stack trace', async () => {
    const file = path.join(tmp, 'secret.ndjson');
    await writeFile(file, '{}\n');
    await chmod(file, 0o000);
    const args = ['ingest', file, '--stream', 'events'];
    let code: number | null;
    let stderr: string;
    if (process.getuid?.() === 0) {
      // root reads any file: run the CLI as root without the capabilities that bypass file modes
      // (setpriv, util-linux), so mode 000 means EACCES — and the checkout stays reachable even in a 0700 folder.
      const r = spawnSync('setpriv', ['--bounding-set', '-dac_override,-dac_read_search', '--', process.execPath, SLUICE_BIN, ...args], {
        env: { PATH: process.env.PATH, DATABASE_URL: db.url },
        encoding: 'utf8',
        cwd: '/',
      });
      code = r.status;
      stderr = r.stderr;
    } else {
      const r = await runCli(args, { env: { DATABASE_URL: db.url } });
      code = r.code;
      stderr = r.stderr;
    }
    expect(code, stderr).toBe(1);
    expect(stderr.trim().split('\n'), stderr).toHaveLength(1);
    expect(stderr).toMatch(/cannot read .*secret\.ndjson.*EACCES|permission denied/i);
  });
});
