/** An embedded-server lease leaves with its process, however the process ends. */
import { spawnSync } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

const leasesModule = pathToFileURL(path.resolve('dist/src/db/embedded/leases.js')).href;
const dirs: string[] = [];
afterAll(async () => Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true }))));

/** Register a lease in a child process, then end it with `ending`; return what the users folder holds afterwards. */
async function leasesAfter(ending: string): Promise<{ files: string[]; status: number | null; stdout: string; stderr: string }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'sluice-lease-'));
  dirs.push(dir);
  const script = `const { registerLease } = await import(${JSON.stringify(leasesModule)});
    const lease = await registerLease(${JSON.stringify(dir)});
    const fs = await import('node:fs');
    if (!fs.existsSync(lease.file)) throw new Error('lease not written');
    ${ending}`;
  const child = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
  return { files: await readdir(dir), status: child.status, stdout: child.stdout, stderr: child.stderr };
}

describe('embedded server leases', () => {
  it('are gone after process.exit(1) without leaving (the path of a command whose server vanished)', async () => {
    const r = await leasesAfter('process.exit(1);');
    expect(r.status, r.stderr).toBe(1);
    expect(r.files).toEqual([]);
  });

  it('are gone after an uncaught error', async () => {
    const r = await leasesAfter("setTimeout(() => { throw new Error('boom'); }, 0);");
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('boom');
    expect(r.files).toEqual([]);
  });

  it('go with remove(), which also drops the exit hook (no listener left behind per command)', async () => {
    const r = await leasesAfter(
      "const hooks = process.listenerCount('exit'); await lease.remove(); console.log(JSON.stringify({ hooks, after: process.listenerCount('exit'), left: fs.existsSync(lease.file) }));",
    );
    expect(r.status, r.stderr).toBe(0);
    const seen = JSON.parse(r.stdout) as { hooks: number; after: number; left: boolean };
    expect(seen.after).toBe(seen.hooks - 1);
    expect(seen.left).toBe(false);
    expect(r.files).toEqual([]);
  });
});
