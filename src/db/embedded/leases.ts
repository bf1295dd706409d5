/**
 * Who uses the embedded server: one lease file per live command in
 * `<home>/users/`, naming its process (pid + start time). There is no owner:
 * the last command out stops the server. A lease whose process is gone
 * (kill -9, crash) is stale and pruned by whoever looks next, so a crashed
 * command neither keeps the server running forever nor counts as a user.
 * Leases are written and read only under the home lock.
 */
import { randomBytes } from 'node:crypto';
import { unlinkSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { currentProcess, isStillRunning, type ProcessIdentity } from './process-identity.js';

export interface Lease extends ProcessIdentity {
  readonly since: string;
  /** The command line, for messages ("left running for pid 123: sluice worker"). */
  readonly command: string;
}

export interface OwnLease {
  readonly file: string;
  remove(): Promise<void>;
}

export async function registerLease(usersDir: string): Promise<OwnLease> {
  await fs.mkdir(usersDir, { recursive: true, mode: 0o700 });
  const lease: Lease = {
    ...(await currentProcess()),
    since: new Date().toISOString(),
    command: ['sluice', ...process.argv.slice(2)].join(' ').slice(0, 200),
  };
  const file = path.join(usersDir, `${process.pid}-${randomBytes(4).toString('hex')}.json`);
  await fs.writeFile(file, `${JSON.stringify(lease)}\n`, { mode: 0o600 });
  // A command that exits before leaving (process.exit after its server vanished, an uncaught error) still takes
  // its lease with it: otherwise the lease lives on until this pid is reused or someone prunes it.
  const removeAtExit = () => {
    try {
      unlinkSync(file);
    } catch {
      // already gone
    }
  };
  process.once('exit', removeAtExit);
  return {
    file,
    remove: async () => {
      process.off('exit', removeAtExit);
      await fs.unlink(file).catch(() => undefined);
    },
  };
}

/** The leases of live commands, except `exceptFile`; stale ones are deleted on the way. */
export async function liveLeases(usersDir: string, exceptFile?: string): Promise<Lease[]> {
  const names = await fs.readdir(usersDir).catch(() => [] as string[]);
  const live: Lease[] = [];
  for (const name of names) {
    if (!name.endsWith('.json')) continue;
    const file = path.join(usersDir, name);
    if (file === exceptFile) continue;
    const lease = await fs
      .readFile(file, 'utf8')
      .then((t) => JSON.parse(t) as Lease)
      .catch(() => undefined);
    if (lease && Number.isInteger(lease.pid) && (await isStillRunning(lease))) live.push(lease);
    else await fs.unlink(file).catch(() => undefined);
  }
  return live;
}
