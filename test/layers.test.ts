/**
 * The layer check (scripts/check-layers.mjs, also run by .ci/run): the tree
 * passes it, and it does fail — on an import from a lower layer to a higher
 * one, and on a folder no layer names — shown on small trees written here.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const CHECK = path.join(REPO_ROOT, 'scripts/check-layers.mjs');

function runCheck(root?: string) {
  const result = spawnSync(process.execPath, root ? [CHECK, root] : [CHECK], { encoding: 'utf8' });
  return { code: result.status, out: `${result.stdout}${result.stderr}` };
}

const trees: string[] = [];
function tree(files: Record<string, string>): string {
  const root = mkdtempSync(path.join(os.tmpdir(), 'sluice-layers-'));
  trees.push(root);
  for (const [file, text] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(root, file)), { recursive: true });
    writeFileSync(path.join(root, file), text);
  }
  return root;
}
afterEach(() => {
  for (const root of trees.splice(0)) rmSync(root, { recursive: true, force: true });
});

describe('layer check', () => {
  it('passes on this tree', () => {
    const { code, out } = runCheck();
    expect(out).toMatch(/none against the layers/);
    expect(code).toBe(0);
  });

  it('passes imports that go down or stay in a layer', () => {
    const root = tree({
      'src/errors.ts': 'export const x = 1;\n',
      'src/db/connections.ts': "import { x } from '../errors.js';\nexport const y = x;\n",
      'src/drain/sweep.ts': "import { y } from '../db/connections.js';\nimport type { Z } from '../ingest/ingestor.js';\n",
      'src/ingest/ingestor.ts': 'export type Z = number;\n',
      'tasks/index.ts': "import { y } from '../src/db/connections.js';\n",
    });
    const { code, out } = runCheck(root);
    expect(out).toMatch(/none against the layers/);
    expect(code).toBe(0);
  });

  it('fails on an import from a lower layer to a higher one, naming the edge', () => {
    const root = tree({
      'src/worker/run-worker.ts': 'export const w = 1;\n',
      'src/streams/registry.ts': "import {\n  w,\n} from '../worker/run-worker.js';\n",
      'src/db/migrate.ts': "export async function f() { return import('../../tasks/index.js'); }\n",
      'tasks/index.ts': 'export const t = 1;\n',
    });
    const { code, out } = runCheck(root);
    expect(code).toBe(1);
    expect(out).toContain('src/streams/registry.ts: imports src/worker/run-worker.ts, but streams (src/streams) is below worker (src/worker)');
    expect(out).toContain('src/db/migrate.ts: imports tasks/index.ts, but db (src/db) is below tasks (tasks)');
  });

  it('fails on a folder that no layer names', () => {
    const root = tree({ 'src/gadgets/thing.ts': "import { x } from '../errors.js';\n", 'src/errors.ts': 'export const x = 1;\n' });
    const { code, out } = runCheck(root);
    expect(code).toBe(1);
    expect(out).toContain('src/gadgets/thing.ts: src/gadgets belongs to no layer');
  });

  it('keeps the Ingestor split along its seams: src/ingest/ingestor.ts stays under 250 lines (issue 14)', () => {
    const lines = readFileSync(path.join(REPO_ROOT, 'src/ingest/ingestor.ts'), 'utf8').trimEnd().split('\n').length;
    expect(lines).toBeLessThan(250);
  });
});
