/**
 * Postgres refuses to run as root. As root, sluice runs initdb, pg_ctl and the
 * server as the `postgres` system user (created if missing); otherwise as the
 * current user.
 */
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import type { Logger } from '../../logger.js';

const execFileAsync = promisify(execFile);

export const EMBEDDED_OS_USER = 'postgres';

/** Where sluice keeps what the `postgres` user must reach when sluice runs as root (folders sluice owns). */
export const ROOT_STATE_DIR = '/var/lib/sluice';

/** Make a folder sluice owns, with exactly this mode (a umask would narrow it). */
export async function ensureOwnFolder(dir: string, mode: number): Promise<void> {
  await fs.mkdir(dir, { recursive: true, mode });
  await fs.chmod(dir, mode);
}

export interface RunAs {
  /** Set only when running as root: the `postgres` user's ids. */
  uid?: number;
  gid?: number;
}

export function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

export async function resolveRunAs(log: Logger): Promise<RunAs> {
  if (!isRoot()) return {};
  const lookup = async () => {
    const [uid, gid] = await Promise.all([
      execFileAsync('id', ['-u', EMBEDDED_OS_USER]).then((r) => Number.parseInt(r.stdout, 10)),
      execFileAsync('id', ['-g', EMBEDDED_OS_USER]).then((r) => Number.parseInt(r.stdout, 10)),
    ]);
    return { uid, gid };
  };
  try {
    return await lookup();
  } catch {
    log.warn('embedded: running as root, creating system user "postgres" to run the server');
    await execFileAsync('groupadd', ['--system', EMBEDDED_OS_USER]).catch(() => undefined);
    await execFileAsync('useradd', ['--system', '-g', EMBEDDED_OS_USER, EMBEDDED_OS_USER]);
    return lookup();
  }
}

/**
 * Run a Postgres program to completion. `cwd` must be reachable by the user it
 * runs as (the caller's working directory may be a 0700 folder of root's).
 */
export function runProgram(cmd: string, args: string[], runAs: RunAs, cwd: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      ...runAs,
      cwd,
      env: { ...process.env, LC_MESSAGES: 'C', LC_ALL: 'C' },
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
