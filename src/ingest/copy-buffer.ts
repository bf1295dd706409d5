/**
 * A batch's COPY text, kept as UTF-8 bytes in one growing Buffer with the
 * end offset of every line: appending encodes each line once, flushing sends
 * the bytes as they are (no join, no second encoding), and bisection can still
 * send any range of lines.
 */

const INITIAL_BYTES = 256 * 1024;

export class CopyBuffer {
  private buffer: Buffer = Buffer.allocUnsafe(INITIAL_BYTES);
  private used = 0;
  private readonly lineEnds: number[] = [];

  get count(): number {
    return this.lineEnds.length;
  }

  get bytes(): number {
    return this.used;
  }

  /** Append one encoded line (ending in \n); returns its size in bytes. */
  append(line: string): number {
    const worstCase = line.length * 3;
    if (this.used + worstCase > this.buffer.length) {
      const grown = Buffer.allocUnsafe(Math.max(this.buffer.length * 2, this.used + worstCase));
      this.buffer.copy(grown, 0, 0, this.used);
      this.buffer = grown;
    }
    const written = this.buffer.write(line, this.used, 'utf8');
    this.used += written;
    this.lineEnds.push(this.used);
    return written;
  }

  /** Drop the bytes (the batch is written): a committed batch waiting for its durable ack keeps only its keys. */
  release(): void {
    this.buffer = Buffer.alloc(0);
    this.used = 0;
    this.lineEnds.length = 0;
  }

  private start(i: number): number {
    return i === 0 ? 0 : (this.lineEnds[i - 1] as number);
  }

  /** Bytes of lines [from, to). */
  range(from = 0, to = this.count): Buffer {
    return this.buffer.subarray(this.start(from), to === 0 ? 0 : (this.lineEnds[to - 1] as number));
  }

  /** Line i as text. */
  line(i: number): string {
    return this.buffer.toString('utf8', this.start(i), this.lineEnds[i]);
  }

  /** All lines except the given indexes, as one Buffer. */
  without(skip: ReadonlySet<number>): Buffer {
    const parts: Buffer[] = [];
    let runStart = -1;
    for (let i = 0; i <= this.count; i++) {
      const keep = i < this.count && !skip.has(i);
      if (keep && runStart < 0) runStart = i;
      if (!keep && runStart >= 0) {
        parts.push(this.range(runStart, i));
        runStart = -1;
      }
    }
    return Buffer.concat(parts);
  }
}
