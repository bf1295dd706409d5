/** Embedded-server test homes: temp folders, the postmaster they run, and clean-up that never leaves a server behind. */
import { lstat, mkdtemp, readFile, readlink, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { waitFor } from './wait.js';

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The pid line of `<dataDir>/postmaster.pid` (follows the root symlink), if the file exists. */
export async function postmasterPid(dataDir: string): Promise<number | undefined> {
  const text = await readFile(path.join(dataDir, 'postmaster.pid'), 'utf8').catch(() => undefined);
  const pid = Number.parseInt(text?.split('\n')[0] ?? '', 10);
  return Number.isInteger(pid) ? pid : undefined;
}

export async function waitForExit(pid: number, what: string, timeoutMs = 20_000): Promise<void> {
  await waitFor(async () => isAlive(pid), (alive) => !alive, { what, timeoutMs });
}

/** Remove a home and, as root, the cluster folder its pgdata links to (/var/lib/sluice/clusters/<name>). */
async function removeEmbeddedHome(home: string): Promise<void> {
  const link = path.join(home, 'pgdata');
  if ((await lstat(link).catch(() => undefined))?.isSymbolicLink()) {
    const cluster = path.dirname(path.resolve(home, await readlink(link)));
    if (path.dirname(cluster) === '/var/lib/sluice/clusters') await rm(cluster, { recursive: true, force: true });
  }
  await rm(home, { recursive: true, force: true });
}

/** Temp folders for embedded homes, and an afterAll clean-up that stops any server still running in them. */
export function embeddedHomes() {
  const dirs: string[] = [];
  return {
    async tempDir(label: string): Promise<string> {
      const dir = await mkdtemp(path.join(os.tmpdir(), `sluice-embedded-${label}-`));
      dirs.push(dir);
      return dir;
    },
    /** Register a home inside a temp dir for clean-up (as root its cluster lives under /var/lib/sluice). */
    track(home: string): void {
      dirs.push(home);
    },
    async cleanUp(): Promise<void> {
      for (const dir of dirs.reverse()) {
        // Deepest first: removing `dir` first would lose the links to the clusters below it.
        for (const home of [path.join(dir, 'private', 'home'), path.join(dir, 'home'), path.join(dir, '.sluice'), dir]) {
          const pid = await postmasterPid(path.join(home, 'pgdata'));
          // Only a postmaster: a test may have planted a fake pid file naming some other process.
          const comm = pid === undefined ? '' : (await readFile(`/proc/${pid}/comm`, 'utf8').catch(() => '')).trim();
          if (pid !== undefined && isAlive(pid) && (comm === 'postgres' || comm === '')) {
            process.kill(pid, 'SIGINT');
            await waitForExit(pid, `postgres ${pid} to exit`).catch(() => undefined);
          }
          await removeEmbeddedHome(home);
        }
      }
    },
  };
}
