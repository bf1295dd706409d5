/**
 * What an Ingestor holds in memory, in rows (and rejects) and in bytes, against
 * its two limits; push() and ingest() wait for space while either is reached.
 */
export class BufferGauge {
  private rows = 0;
  private bytes = 0;
  private waiters: Array<() => void> = [];

  constructor(
    private readonly maxRows: number,
    private readonly maxBytes: number,
  ) {}

  get heldRows(): number {
    return this.rows;
  }

  get heldBytes(): number {
    return this.bytes;
  }

  get full(): boolean {
    return this.rows >= this.maxRows || this.bytes >= this.maxBytes;
  }

  waitForSpace(): Promise<void> {
    if (!this.full) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  hold(rows: number, bytes: number): void {
    this.rows += rows;
    this.bytes += bytes;
  }

  release(rows: number, bytes: number): void {
    this.rows -= rows;
    this.bytes -= bytes;
    if (!this.full && this.waiters.length) {
      const waiters = this.waiters;
      this.waiters = [];
      for (const wake of waiters) wake();
    }
  }
}
