/**
 * A mutex between sluice commands on one embedded home, as a file: every
 * lifecycle step (initdb, start, join, leave, stop) runs while holding it, so
 * two commands never initialise or start the same cluster at once, and "the
 * last one out stops the server" cannot race a command that is joining.
 *
 * Node has no flock(), so the lock is a file created atomically with its full
 * content (written to a private temp file, then link()ed into place: link
 * fails if the lock exists). It names its holder (pid + start time). A lock
 * whose holder is gone (kill -9, crash, reboot) is stale and removed — under a
 * second, short-lived "break" lock, so two waiters that both find the same
 * stale lock cannot remove each other's fresh one. A crash inside the break
 * step itself (microseconds) leaves a break lock that is judged the same way.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from '../../logger.js';
import { SluiceError } from '../../errors.js';
import { currentProcess, isStillRunning, type ProcessIdentity } from './process-identity.js';

const POLL_MS = 50;
/** A lock file we cannot parse is only judged stale after this long (never happens with link(), but be safe). */
const UNREADABLE_GRACE_MS = 5_000;

interface LockContent extends ProcessIdentity {
  readonly acquiredAt: string;
  readonly purpose: string;
  /** Makes every acquisition's content unique, so release() and the breaker compare exactly. */
  readonly nonce: string;
}

export interface HeldLock {
  release(): Promise<void>;
}

async function createExclusive(file: string, content: string): Promise<boolean> {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.${randomBytes(4).toString('hex')}`);
  await fs.writeFile(tmp, content, { mode: 0o600 });
  try {
    await fs.link(tmp, file);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  } finally {
    await fs.unlink(tmp).catch(() => undefined);
  }
}

interface Holder {
  raw: string;
  content: LockContent | undefined;
  ageMs: number;
}

async function readHolder(file: string): Promise<Holder | undefined> {
  try {
    const [raw, stat] = await Promise.all([fs.readFile(file, 'utf8'), fs.stat(file)]);
    let content: LockContent | undefined;
    try {
      content = JSON.parse(raw) as LockContent;
    } catch {
      content = undefined;
    }
    return { raw, content, ageMs: Date.now() - stat.mtimeMs };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

async function isStale(holder: Holder): Promise<boolean> {
  if (!holder.content || !Number.isInteger(holder.content.pid)) return holder.ageMs > UNREADABLE_GRACE_MS;
  return !(await isStillRunning(holder.content));
}

/** Remove `file` only if it still holds exactly `staleRaw`; serialised by `<file>.break`. */
async function breakStaleLock(file: string, staleRaw: string, me: string): Promise<void> {
  const breakFile = `${file}.break`;
  if (!(await createExclusive(breakFile, me))) {
    const breaker = await readHolder(breakFile);
    if (breaker && (await isStale(breaker))) await fs.unlink(breakFile).catch(() => undefined);
    return; // someone else is breaking it: look again
  }
  try {
    const now = await readHolder(file);
    if (now && now.raw === staleRaw) await fs.unlink(file).catch(() => undefined);
  } finally {
    await fs.unlink(breakFile).catch(() => undefined);
  }
}

export interface AcquireOptions {
  log: Logger;
  /** What the holder is doing, for the waiters' messages. */
  purpose: string;
  timeoutMs?: number;
}

export async function acquireHomeLock(file: string, options: AcquireOptions): Promise<HeldLock> {
  const { log, purpose, timeoutMs = 180_000 } = options;
  const me: LockContent = { ...(await currentProcess()), acquiredAt: new Date().toISOString(), purpose, nonce: randomBytes(6).toString('hex') };
  const raw = `${JSON.stringify(me)}\n`;
  const started = Date.now();
  let announced = false;
  for (;;) {
    if (await createExclusive(file, raw)) break;
    const holder = await readHolder(file);
    if (!holder) continue; // released between our attempt and the read
    if (await isStale(holder)) {
      log.warn({ lock: file, holder: holder.content }, 'embedded: removing a lock left by a sluice command that is gone');
      await breakStaleLock(file, holder.raw, raw);
      continue;
    }
    if (!announced) {
      announced = true;
      log.info({ lock: file, holder_pid: holder.content?.pid, holder_purpose: holder.content?.purpose }, 'embedded: waiting for another sluice command on this home');
    }
    if (Date.now() - started > timeoutMs) {
      throw new SluiceError(
        'embedded_locked',
        `Another sluice command (pid ${holder.content?.pid ?? '?'}, ${holder.content?.purpose ?? 'unknown step'}) has held ${file} ` +
          `for over ${Math.round(timeoutMs / 1000)} s. If that process is stuck, stop it; the lock is released when it exits.`,
      );
    }
    await new Promise((r) => setTimeout(r, POLL_MS + Math.floor(Math.random() * POLL_MS)));
  }
  let released = false;
  return {
    async release() {
      if (released) return;
      released = true;
      // Only remove our own lock (never one a breaker judged stale and another command now holds).
      const now = await readHolder(file).catch(() => undefined);
      if (now?.raw === raw) await fs.unlink(file).catch(() => undefined);
    },
  };
}

/** Run `fn` holding the home lock. */
export async function withHomeLock<T>(file: string, options: AcquireOptions, fn: () => Promise<T>): Promise<T> {
  const lock = await acquireHomeLock(file, options);
  try {
    return await fn();
  } finally {
    await lock.release();
  }
}
