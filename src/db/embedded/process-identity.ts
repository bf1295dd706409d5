/**
 * Who a pid really is. A bare pid is not an identity: after a crash or a
 * container restart the number comes back on another process. On Linux we
 * pair it with its start time (field 22 of /proc/<pid>/stat, clock ticks since
 * boot); elsewhere we fall back to the pid alone.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

export interface ProcessIdentity {
  readonly pid: number;
  /** Undefined where /proc is not available. */
  readonly startTime?: string;
}

/** kill(pid, 0): EPERM means it exists but belongs to someone else. */
export function isAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export async function processStartTime(pid: number): Promise<string | undefined> {
  const stat = await fs.readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined);
  if (!stat) return undefined;
  // The command name (field 2) is in parentheses and may contain spaces: count fields after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return fields[19]; // field 22 overall: state is field 3, i.e. index 0 here
}

export async function currentProcess(): Promise<ProcessIdentity> {
  return { pid: process.pid, startTime: await processStartTime(process.pid) };
}

/** Is the process that wrote this identity still the one running under its pid? */
export async function isStillRunning(id: ProcessIdentity): Promise<boolean> {
  if (!isAlive(id.pid)) return false;
  if (id.startTime === undefined) return true;
  const now = await processStartTime(id.pid);
  return now === undefined || now === id.startTime;
}

/** argv of a process: /proc on Linux, `ps` elsewhere; undefined when neither can tell. */
export async function processArgv(pid: number): Promise<string[] | undefined> {
  const raw = await fs.readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => undefined);
  if (raw !== undefined) return raw.split('\0').filter((a, i, all) => a !== '' || i < all.length - 1);
  try {
    const { stdout } = await execFileAsync('ps', ['-o', 'command=', '-p', String(pid)]);
    // ps joins argv with spaces: good enough for the program name and a space-free -D path.
    return stdout.trim() ? stdout.trim().split(/\s+/) : undefined;
  } catch {
    return undefined;
  }
}

/** The working directory of a process (to resolve a relative -D), when the OS tells. */
export async function processCwd(pid: number): Promise<string | undefined> {
  return fs.readlink(`/proc/${pid}/cwd`).catch(() => undefined);
}

export function programName(argv0: string): string {
  return path.basename(argv0);
}
