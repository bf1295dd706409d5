/**
 * readNdjson splits a byte stream into numbered lines whatever the chunk
 * boundaries (inside multibyte UTF-8 characters, between \r and \n), keeps a
 * last line without a newline, and cuts a runaway line at maxLineChars
 * (truncated: true, full length reported) without losing count of the lines
 * after it.
 */
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { readNdjson, type NdjsonLine } from '../../src/ingest/ndjson.js';
import { prng } from '../../src/workload/event-generator.js';

async function readAll(chunks: Buffer[], maxLineChars = 1 << 20): Promise<{ lines: NdjsonLine[]; bytes: number }> {
  const lines: NdjsonLine[] = [];
  let bytes = 0;
  for await (const line of readNdjson(Readable.from(chunks), maxLineChars, (n) => (bytes += n))) lines.push(line);
  return { lines, bytes };
}

/** Split at the given byte offsets. */
function splitAt(buffer: Buffer, offsets: number[]): Buffer[] {
  const out: Buffer[] = [];
  let start = 0;
  for (const o of [...offsets].sort((a, b) => a - b)) {
    out.push(buffer.subarray(start, o));
    start = o;
  }
  out.push(buffer.subarray(start));
  return out.filter((b) => b.length > 0);
}

function everyByte(buffer: Buffer): Buffer[] {
  return Array.from({ length: buffer.length }, (_, i) => buffer.subarray(i, i + 1));
}

function randomChunks(buffer: Buffer, seed: number): Buffer[] {
  const random = prng(seed);
  const offsets: number[] = [];
  for (let o = 0; o < buffer.length; o += 1 + Math.floor(random() * 7)) offsets.push(o);
  return splitAt(buffer, offsets);
}

const texts = (lines: NdjsonLine[]) => lines.map((l) => l.text);

describe('readNdjson', () => {
  const multibyte = ['{"name":"Zoë","city":"Kraków"}', '{"emoji":"😀🎉","cjk":"漢字"}', '{"plain":1}'];
  const input = Buffer.from(`${multibyte.join('\n')}\n`);

  it('yields each line with its 1-based number and length', async () => {
    const { lines, bytes } = await readAll([input]);
    expect(texts(lines)).toEqual(multibyte);
    expect(lines.map((l) => l.number)).toEqual([1, 2, 3]);
    expect(lines.map((l) => l.length)).toEqual(multibyte.map((t) => t.length));
    expect(lines.every((l) => !l.truncated)).toBe(true);
    expect(bytes).toBe(input.length);
  });

  it('decodes characters split across chunks at every byte boundary', async () => {
    // A chunk boundary after every single byte cuts each 2-, 3- and 4-byte character.
    const { lines, bytes } = await readAll(everyByte(input));
    expect(texts(lines)).toEqual(multibyte);
    expect(bytes).toBe(input.length);
    // And inside one specific 4-byte emoji: split after its first and third byte.
    const emojiAt = input.indexOf(Buffer.from('😀'));
    const { lines: again } = await readAll(splitAt(input, [emojiAt + 1, emojiAt + 3]));
    expect(texts(again)).toEqual(multibyte);
  });

  it('gives the same lines for many deterministic random chunkings', async () => {
    const records = Array.from({ length: 200 }, (_, i) => JSON.stringify({ i, s: 'ñ€😀'.repeat(i % 5), t: '\t' }));
    const big = Buffer.from(`${records.join('\n')}\n`);
    for (let seed = 1; seed <= 10; seed++) {
      const { lines } = await readAll(randomChunks(big, seed));
      expect(texts(lines)).toEqual(records);
      expect(lines.at(-1)?.number).toBe(records.length);
    }
  });

  it('strips CRLF line endings, even when \\r and \\n arrive in different chunks', async () => {
    const crlf = Buffer.from('{"a":1}\r\n{"b":"é"}\r\n{"c":3}\r\n');
    const expected = ['{"a":1}', '{"b":"é"}', '{"c":3}'];
    expect(texts((await readAll([crlf])).lines)).toEqual(expected);
    const crAt = crlf.indexOf('\r');
    expect(texts((await readAll(splitAt(crlf, [crAt + 1]))).lines)).toEqual(expected);
    expect(texts((await readAll(everyByte(crlf))).lines)).toEqual(expected);
  });

  it('keeps a last line that has no trailing newline', async () => {
    const { lines } = await readAll([Buffer.from('{"a":1}\n{"b":2}')]);
    expect(texts(lines)).toEqual(['{"a":1}', '{"b":2}']);
    expect(lines.at(-1)?.number).toBe(2);
    const split = await readAll(everyByte(Buffer.from('{"a":1}\n{"ü":2}')));
    expect(texts(split.lines)).toEqual(['{"a":1}', '{"ü":2}']);
  });

  it('reports blank lines (numbered) and yields nothing for empty input', async () => {
    const { lines } = await readAll([Buffer.from('a\n\n\r\nb\n')]);
    expect(lines.map((l) => [l.number, l.text])).toEqual([
      [1, 'a'],
      [2, ''],
      [3, ''],
      [4, 'b'],
    ]);
    expect((await readAll([])).lines).toEqual([]);
    expect((await readAll([Buffer.alloc(0)])).lines).toEqual([]);
  });

  it('cuts a runaway line at maxLineChars, reports its full length, and keeps numbering after it', async () => {
    const max = 100;
    const runaway = `{"blob":"${'é'.repeat(5_000)}"}`;
    const text = `{"first":1}\n${runaway}\n{"after":2}\n{"after":3}`;
    // Chunks smaller than the limit, so the runaway line spans many of them.
    const { lines } = await readAll(randomChunks(Buffer.from(text), 42), max);
    expect(lines.map((l) => l.number)).toEqual([1, 2, 3, 4]);
    const cut = lines[1] as NdjsonLine;
    expect(cut.truncated).toBe(true);
    expect(cut.length).toBe(runaway.length);
    expect(cut.text).toBe(runaway.slice(0, max));
    expect(texts([lines[0], lines[2], lines[3]] as NdjsonLine[])).toEqual(['{"first":1}', '{"after":2}', '{"after":3}']);
    expect(lines.filter((l) => l.truncated)).toHaveLength(1);
  });

  it('cuts a runaway last line that has no newline', async () => {
    const runaway = 'x'.repeat(1_000);
    const { lines } = await readAll(splitAt(Buffer.from(`ok\n${runaway}`), [10, 200, 500]), 50);
    expect(lines).toHaveLength(2);
    expect(lines[1]).toMatchObject({ number: 2, truncated: true, length: runaway.length, text: runaway.slice(0, 50) });
  });

  it('a line of exactly maxLineChars is not truncated', async () => {
    const exact = 'y'.repeat(64);
    const { lines } = await readAll(everyByte(Buffer.from(`${exact}\nz\n`)), 64);
    expect(lines[0]).toMatchObject({ text: exact, truncated: false, length: 64 });
    expect(lines[1]).toMatchObject({ number: 2, text: 'z' });
  });

  it('flags a line longer than maxLineChars the same way however the input is chunked', async () => {
    const runaway = 'r'.repeat(500);
    const data = Buffer.from(`a\n${runaway}\nb\n`);
    const chunkings = { whole: [data], everyByte: everyByte(data), random: randomChunks(data, 5), splitNearEnd: splitAt(data, [data.length - 10]) };
    for (const [name, chunks] of Object.entries(chunkings)) {
      const { lines } = await readAll(chunks, 100);
      expect(lines.map((l) => l.number), name).toEqual([1, 2, 3]);
      expect(lines[1], name).toMatchObject({ truncated: true, length: 500, text: runaway.slice(0, 100) });
    }
  });
});
