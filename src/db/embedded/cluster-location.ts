/**
 * Where the cluster's data directory lives.
 *
 * - Not root: `<home>/pgdata`, as it always was.
 * - Root: the server runs as `postgres`, which cannot reach a home inside a
 *   0700 folder (/root/x/.sluice). We do not open the user's folders; the
 *   cluster goes to sluice's own `/var/lib/sluice/clusters/<name>-<hash>/pgdata`
 *   and `<home>/pgdata` becomes a symlink to it, so the home still shows
 *   where the data is. The name derives from the home's real path, so a
 *   command that crashed before creating the link finds the cluster again.
 * - A real `<home>/pgdata` directory (made by an earlier sluice as root) is
 *   used in place if `postgres` can reach it; if not, we fail with the exact
 *   commands to move it or to open its parents, and change nothing.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { SluiceError } from '../../errors.js';
import { ROOT_STATE_DIR, type RunAs } from './run-as.js';

export interface ClusterLocation {
  /** The data directory postgres runs on (a real path). */
  readonly dataDir: string;
  /** `<home>/pgdata`: the data directory, or a symlink to it (root). */
  readonly homeLink: string;
  /** True when `homeLink` must be a symlink to `dataDir` once the cluster exists. */
  readonly linked: boolean;
}

function clusterName(realHome: string): string {
  const hash = createHash('sha256').update(realHome).digest('hex').slice(0, 12);
  // e.g. /root/x/.sluice → "x-sluice-<hash>"
  const readable = [path.basename(path.dirname(realHome)), path.basename(realHome)]
    .map((part) => part.replace(/^\.+/, '').replace(/[^A-Za-z0-9_-]+/g, '_'))
    .filter(Boolean)
    .join('-')
    .slice(0, 40);
  return `${readable || 'home'}-${hash}`;
}

/** Folders on the way to `dir` that `runAs` may not search (owner/group/other x bits). */
export async function unsearchableAncestors(dir: string, runAs: RunAs): Promise<string[]> {
  const blocked: string[] = [];
  let current = path.resolve(dir);
  const chain: string[] = [];
  for (;;) {
    chain.unshift(current);
    const parent = path.dirname(current);
    if (parent === current) break;
    current = parent;
  }
  for (const folder of chain.slice(0, -1)) {
    const stat = await fs.stat(folder);
    const searchable =
      stat.uid === runAs.uid ? (stat.mode & 0o100) !== 0 : stat.gid === runAs.gid ? (stat.mode & 0o010) !== 0 : (stat.mode & 0o001) !== 0;
    if (!searchable) blocked.push(folder);
  }
  return blocked;
}

async function lstatOrUndefined(p: string) {
  return fs.lstat(p).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined;
    throw err;
  });
}

export async function locateCluster(homeDir: string, runAs: RunAs): Promise<ClusterLocation> {
  const homeLink = path.join(homeDir, 'pgdata');
  const stat = await lstatOrUndefined(homeLink);
  if (stat?.isSymbolicLink()) {
    const target = path.resolve(homeDir, await fs.readlink(homeLink));
    return { dataDir: target, homeLink, linked: true };
  }
  if (runAs.uid === undefined) return { dataDir: homeLink, homeLink, linked: false };
  if (stat) {
    const blocked = await unsearchableAncestors(homeLink, runAs);
    if (blocked.length > 0) {
      const target = path.join(ROOT_STATE_DIR, 'clusters', clusterName(await fs.realpath(homeDir)), 'pgdata');
      throw new SluiceError(
        'embedded_unreachable',
        `As root, the embedded Postgres runs as user "postgres", which cannot reach ${homeLink} ` +
          `(no search permission on ${blocked.join(', ')}). sluice does not change your folders. Either move the cluster ` +
          `where it can: mkdir -p ${path.dirname(target)} && mv ${homeLink} ${target} && ln -s ${target} ${homeLink} ` +
          `— or open the folders (search only): chmod o+x ${blocked.join(' ')}`,
      );
    }
    return { dataDir: homeLink, homeLink, linked: false };
  }
  const dataDir = path.join(ROOT_STATE_DIR, 'clusters', clusterName(await fs.realpath(homeDir)), 'pgdata');
  return { dataDir, homeLink, linked: true };
}

/** Create `<home>/pgdata` → dataDir (idempotent). */
export async function linkIntoHome(location: ClusterLocation): Promise<void> {
  if (!location.linked) return;
  try {
    await fs.symlink(location.dataDir, location.homeLink, 'dir');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
}
