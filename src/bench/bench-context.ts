/**
 * Everything the benchmark scenarios share: the database, the deterministic
 * workload (prepared once, outside any timing), helpers to create fresh
 * streams, run `sluice worker` child processes and sample connections.
 */
import { withTransaction } from '../db/transaction.js';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import copyStreams from 'pg-copy-streams';
import { PACKAGE_ROOT } from '../paths.js';
import type { Logger } from '../logger.js';
import { EventEncoder } from '../ingest/event-encoder.js';
import { getStream, type StreamDefinition } from '../streams/registry.js';
import { quoteIdent, stagingTable } from '../streams/names.js';
import { generateEvents, type GeneratedEvent } from '../workload/event-generator.js';
import { sleep } from '../timing.js';
import { ConnectionSampler } from '../db/connection-sampler.js';

/** Declared columns of every bench stream: the keys most events carry; the rest goes to payload. */
export const BENCH_COLUMNS = [
  { name: 'type', type: 'text' },
  { name: 'user_id', type: 'bigint' },
];

export interface Workload {
  readonly events: GeneratedEvent[];
  /** The events as JSON text, as producers send them. */
  readonly json: string[];
  readonly unique: number;
}

export function buildWorkload(count: number, seed: number): Workload {
  const { events, unique } = generateEvents({ count, seed, duplicateRate: 0.01 });
  return { events, json: events.map((e) => JSON.stringify(e)), unique };
}

export function uniqueCount(events: readonly GeneratedEvent[]): number {
  return new Set(events.map((e) => e.event_id)).size;
}

export class BenchContext {
  readonly admin: pg.Pool;
  private readonly children = new Set<ChildProcess>();

  constructor(
    readonly url: string,
    readonly log: Logger,
  ) {
    this.admin = new pg.Pool({ connectionString: url, max: 4, application_name: 'sluice/bench/control' });
    this.admin.on('error', () => undefined);
  }

  async query<R extends pg.QueryResultRow = pg.QueryResultRow>(text: string, values?: unknown[]): Promise<pg.QueryResult<R>> {
    return this.admin.query<R>(text, values);
  }

  /** A fresh stream named bench_<id> with the bench columns. */
  async freshStream(id: string): Promise<StreamDefinition> {
    const name = `bench_${id}`;
    await this.query('SELECT sluice.drop_stream($1)', [name]);
    await this.query('SELECT sluice.create_stream($1, $2::jsonb)', [name, JSON.stringify(BENCH_COLUMNS)]);
    const stream = await getStream(this.admin, name);
    if (!stream) throw new Error(`bench: could not create stream ${name}`);
    return stream;
  }

  async dropStream(name: string): Promise<void> {
    await this.query('SELECT sluice.drop_stream($1)', [name]);
  }

  /** Encoded COPY lines for a stream (what the Ingestor would send), prepared untimed. */
  encode(stream: StreamDefinition, events: readonly GeneratedEvent[]): { lines: string[]; columns: string[] } {
    const encoder = new EventEncoder(stream);
    const lines = events.map((e) => {
      const line = encoder.encode(e);
      if (typeof line !== 'string') throw new Error(`bench: workload event rejected: ${line.message}`);
      return line;
    });
    return { lines, columns: encoder.copyColumns };
  }

  /** COPY lines into a table over one connection, streamed in ~1 MB chunks. */
  async copyInto(client: pg.ClientBase, table: string, columns: readonly string[], lines: readonly string[]): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      const stream = client.query(copyStreams.from(`COPY ${table} (${columns.map(quoteIdent).join(', ')}) FROM STDIN`));
      stream.on('error', reject);
      stream.on('finish', () => resolve());
      let chunk: string[] = [];
      let size = 0;
      for (const line of lines) {
        chunk.push(line);
        size += line.length;
        if (size >= 1 << 20) {
          stream.write(chunk.join(''));
          chunk = [];
          size = 0;
        }
      }
      stream.end(chunk.join(''));
    });
  }

  /** Fill a stream's staging table with the workload, untimed (for drain scenarios). */
  async fillStaging(stream: StreamDefinition, events: readonly GeneratedEvent[]): Promise<void> {
    const { lines, columns } = this.encode(stream, events);
    const client = await this.admin.connect();
    try {
      await this.copyInto(client, stagingTable(stream.name), columns, lines);
    } finally {
      client.release();
    }
  }

  /**
   * Enqueue jobs for `task` in graphile-worker's `schema`, all in one transaction
   * (add_jobs, 5,000 per call; untimed), and return the instant of the commit.
   */
  async enqueueJobs(schema: string, task: string, payloads: readonly unknown[]): Promise<number> {
    const client = await this.admin.connect();
    try {
      await withTransaction(client, async (c) => {
        for (let i = 0; i < payloads.length; i += 5_000) {
          await c.query(
            `SELECT count(*) FROM ${quoteIdent(schema)}.add_jobs(ARRAY(SELECT ROW($1::text, p, NULL, NULL, NULL, NULL, NULL, NULL)::${quoteIdent(schema)}.job_spec FROM json_array_elements($2::json) AS p))`,
            [task, JSON.stringify(payloads.slice(i, i + 5_000))],
          );
        }
      });
      return performance.now();
    } finally {
      client.release();
    }
  }

  /** Count a table's rows (the scenario's check), then drop the scenario's stream. */
  async countThenDrop(table: string, stream: string): Promise<number> {
    const n = await this.count(table);
    await this.dropStream(stream);
    return n;
  }

  async count(table: string): Promise<number> {
    const { rows } = await this.query<{ n: string }>(`SELECT count(*)::bigint AS n FROM ${table}`);
    return Number(rows[0]?.n ?? 0);
  }

  /** Run `sluice worker` as a child process (as ops run it) and wait until it is ready. */
  async startWorker(id: string, flags: string[]): Promise<BenchWorker> {
    const workerId = `bench-${id}`;
    const child = spawn(
      process.execPath,
      [path.join(PACKAGE_ROOT, 'bin', 'sluice.js'), 'worker', '--worker-id', workerId, '--no-migrate', ...flags],
      { env: { ...process.env, DATABASE_URL: this.url, SLUICE_LOG_LEVEL: 'warn' }, stdio: ['ignore', 'ignore', 'pipe'] },
    );
    this.children.add(child);
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
    const deadline = Date.now() + 60_000;
    while (!/worker \S+ running/.test(stderr)) {
      if (child.exitCode !== null || Date.now() > deadline) {
        throw new Error(`bench: worker ${workerId} did not start: ${stderr.slice(-2000)}`);
      }
      await sleep(20);
    }
    return new BenchWorker(workerId, child, exited, () => stderr, () => this.children.delete(child));
  }

  /** Sample how many connections a worker holds, every `everyMs`; stop() gives the peak (so far, if sampling failed). */
  sampleConnections(workerId: string, everyMs = 25): { stop(): Promise<number> } {
    const sampler = new ConnectionSampler(this.url, workerId, everyMs);
    return { stop: () => sampler.stop().then((s) => s.peak, () => sampler.peak) };
  }

  async close(): Promise<void> {
    for (const child of this.children) child.kill('SIGKILL');
    await this.admin.end();
  }
}

export class BenchWorker {
  constructor(
    readonly id: string,
    readonly child: ChildProcess,
    private readonly exited: Promise<number | null>,
    readonly stderr: () => string,
    private readonly forget: () => void,
  ) {}

  /** Peak resident set size of the worker process so far (Linux VmHWM), in MB. */
  peakRssMb(): number | undefined {
    try {
      const status = readFileSync(`/proc/${this.child.pid}/status`, 'utf8');
      const m = /VmHWM:\s+(\d+) kB/.exec(status);
      return m ? Number(m[1]) / 1024 : undefined;
    } catch {
      return undefined;
    }
  }

  async stop(): Promise<number | null> {
    this.child.kill('SIGTERM');
    const code = await this.exited;
    this.forget();
    if (code !== 0) throw new Error(`bench: worker ${this.id} exited with ${code}: ${this.stderr().slice(-2000)}`);
    return code;
  }
}

/** Wait until `probe` is true, polling every `everyMs`. */
export async function until(probe: () => Promise<boolean>, what: string, timeoutMs = 300_000, everyMs = 25): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`bench: timed out waiting for ${what}`);
    await sleep(everyMs);
  }
}
