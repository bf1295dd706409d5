/**
 * Is the server named by `postmaster.pid` really this cluster's postmaster?
 * A live pid is not enough: after a crash (common in containers) the pid file
 * stays and its number comes back on an unrelated process. Postgres then
 * refuses to start ("lock file … already exists") and a command that trusts
 * the file connects to a port nobody listens on. We trust the file only when
 * the server on its port answers with our data_directory; we remove it only
 * when the pid is provably not a postmaster of this directory.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import { isAlive, processArgv, processCwd, programName } from './process-identity.js';

/** postmaster.pid: pid, data directory, start time (epoch s), port, socket dir, listen address, shmem key, status. */
export interface PostmasterPidFile {
  readonly pid: number;
  readonly dataDir: string;
  readonly port: number;
  readonly status: string;
}

export function pidFilePath(dataDir: string): string {
  return path.join(dataDir, 'postmaster.pid');
}

export async function readPostmasterPid(dataDir: string): Promise<PostmasterPidFile | undefined> {
  const text = await fs.readFile(pidFilePath(dataDir), 'utf8').catch(() => undefined);
  if (text === undefined) return undefined;
  const lines = text.split('\n');
  return {
    pid: Number.parseInt(lines[0] ?? '', 10),
    dataDir: lines[1] ?? '',
    port: Number.parseInt(lines[3] ?? '', 10),
    status: (lines[7] ?? '').trim(),
  };
}

export type ServerState =
  | { kind: 'absent' }
  | { kind: 'running'; pid: number; port: number }
  /** The file names a process that is not this cluster's postmaster: safe to remove. */
  | { kind: 'stale'; pid: number; reason: string }
  /** A postmaster of this directory that does not answer (yet): starting, stopping, recovering. */
  | { kind: 'busy'; pid: number; port: number; reason: string }
  /** Cannot tell (no /proc, no ps) and it does not answer: never remove on a guess. */
  | { kind: 'unknown'; pid: number; port: number; reason: string };

type Probe = { answers: 'ours' } | { answers: 'other'; detail: string } | { answers: 'no'; detail: string };

/** Connect to the port and ask the server which data directory it serves. */
async function probe(port: number, password: string, realDataDir: string): Promise<Probe> {
  if (!Number.isInteger(port) || port <= 0 || port > 65535) return { answers: 'no', detail: 'no valid port in postmaster.pid' };
  const client = new pg.Client({
    host: '127.0.0.1',
    port,
    user: 'postgres',
    password,
    database: 'postgres',
    application_name: 'sluice/embedded-probe',
    connectionTimeoutMillis: 3_000,
  });
  try {
    await client.connect();
    const { rows } = await client.query<{ data_directory: string }>('SHOW data_directory');
    const served = await fs.realpath(rows[0]?.data_directory ?? '').catch(() => rows[0]?.data_directory ?? '');
    return served === realDataDir ? { answers: 'ours' } : { answers: 'other', detail: `port ${port} serves ${served}` };
  } catch (err) {
    const e = err as { code?: string; message?: string };
    // 28P01 (bad password) / 3D000 etc.: a server answers, but not ours (ours knows our password).
    if (e.code && /^(28|3D)/.test(e.code)) return { answers: 'other', detail: `port ${port}: ${e.message}` };
    return { answers: 'no', detail: `port ${port}: ${e.code ?? ''} ${e.message ?? String(err)}`.trim() };
  } finally {
    await client.end().catch(() => undefined);
  }
}

type Identity = 'ours' | 'other' | 'unknown';

/** Is `pid` a postmaster started with `-D <this directory>`? pg_ctl always passes -D. */
async function identify(pid: number, realDataDir: string): Promise<{ identity: Identity; detail: string }> {
  const argv = await processArgv(pid);
  if (!argv || argv.length === 0) return { identity: 'unknown', detail: `cannot read the command line of pid ${pid}` };
  const program = programName(argv[0] as string);
  const summary = argv.join(' ').slice(0, 200);
  if (program !== 'postgres' && program !== 'postmaster') return { identity: 'other', detail: `pid ${pid} is not a postmaster: ${summary}` };
  const d = argv.indexOf('-D');
  const given = d >= 0 ? argv[d + 1] : undefined;
  if (given === undefined) return { identity: 'unknown', detail: `pid ${pid} is a postgres without -D: ${summary}` };
  const base = path.isAbsolute(given) ? '' : ((await processCwd(pid)) ?? '');
  if (!path.isAbsolute(given) && !base) return { identity: 'unknown', detail: `pid ${pid} runs with a relative -D` };
  const real = await fs.realpath(path.resolve(base, given)).catch(() => path.resolve(base, given));
  return real === realDataDir
    ? { identity: 'ours', detail: `pid ${pid} is a postmaster of this directory` }
    : { identity: 'other', detail: `pid ${pid} is the postmaster of another directory (${real})` };
}

export async function inspectServer(dataDir: string, password: string): Promise<ServerState> {
  const file = await readPostmasterPid(dataDir);
  if (!file) return { kind: 'absent' };
  const { pid, port } = file;
  if (!isAlive(pid)) return { kind: 'stale', pid, reason: `pid ${pid} is not running` };
  const realDataDir = await fs.realpath(dataDir);
  const answer = await probe(port, password, realDataDir);
  if (answer.answers === 'ours') return { kind: 'running', pid, port };
  const who = await identify(pid, realDataDir);
  if (who.identity === 'other') return { kind: 'stale', pid, reason: who.detail };
  const reason = `${who.detail}; ${answer.detail}; status "${file.status}"`;
  if (who.identity === 'ours') return { kind: 'busy', pid, port, reason };
  // Unknown process, but another server answers on its port: ours cannot be listening there.
  if (answer.answers === 'other') return { kind: 'stale', pid, reason };
  return { kind: 'unknown', pid, port, reason };
}
