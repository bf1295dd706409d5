/** Where sluice's own files (migrations/, crontab) live, from source or from dist/. */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

function findPackageRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = path.join(dir, 'package.json');
    if (existsSync(candidate) && JSON.parse(readFileSync(candidate, 'utf8')).name === 'sluice') return dir;
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error('sluice: cannot find its package root (package.json)');
    dir = parent;
  }
}

export const PACKAGE_ROOT = findPackageRoot();
export const MIGRATIONS_DIR = path.join(PACKAGE_ROOT, 'migrations');
export const CRONTAB_FILE = path.join(PACKAGE_ROOT, 'crontab');
