#!/usr/bin/env node
/**
 * The layer check: every relative import in src/ and tasks/ must point to the
 * same layer or a lower one (docs/design.md, "Layers"). A file in a folder no
 * layer names fails too, so a new folder is placed on purpose.
 *
 * Reads the imports with a regex (`from '…'`, `import '…'`, `import('…')`):
 * TypeScript 7's compiler has no JS API to ask, and a regex errs on the side
 * of reporting (an import quoted in a comment counts), never of missing one.
 *
 * Usage: node scripts/check-layers.mjs [root]   (exit 1 on any violation)
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** Lowest first. A unit is a folder or a file directly under src/, or tasks/. */
export const LAYERS = [
  {
    name: 'base',
    units: [
      'src/config.ts',
      'src/config-docs.ts',
      'src/errors.ts',
      'src/format.ts',
      'src/json-keys.ts',
      'src/timing.ts',
      'src/logger.ts',
      'src/graphile-logger.ts',
      'src/paths.ts',
      'src/version.ts',
      'src/es2024-strings.d.ts',
    ],
  },
  { name: 'codec', units: ['src/codec'] },
  { name: 'db', units: ['src/db'] },
  { name: 'streams', units: ['src/streams'] },
  {
    name: 'domain',
    units: ['src/ingest', 'src/drain', 'src/partitions', 'src/matviews', 'src/health', 'src/status', 'src/workload', 'src/maintenance', 'src/sqlfront'],
  },
  { name: 'worker', units: ['src/worker'] },
  { name: 'tasks', units: ['tasks'] },
  { name: 'apps', units: ['src/demo', 'src/bench'] },
  { name: 'entry points', units: ['src/cli', 'src/index.ts'] },
];

const CHECKED_DIRS = ['src', 'tasks'];
const SOURCE_FILE = /\.(m|c)?tsx?$|\.(m|c)?js$/;
const IMPORT_SPECIFIERS = [/\bfrom\s*['"]([^'"]+)['"]/g, /\bimport\s*['"]([^'"]+)['"]/g, /\bimport\s*\(\s*['"]([^'"]+)['"]\s*\)/g];

function listFiles(root, dir) {
  let entries;
  try {
    entries = readdirSync(path.join(root, dir), { withFileTypes: true });
  } catch {
    return [];
  }
  return entries.flatMap((entry) => {
    const rel = path.posix.join(dir, entry.name);
    if (entry.isDirectory()) return listFiles(root, rel);
    return SOURCE_FILE.test(entry.name) ? [rel] : [];
  });
}

/** 'src/drain/sweep.ts' → 'src/drain'; 'src/errors.ts' → 'src/errors.ts'; 'tasks/x.ts' → 'tasks'. */
function unitOf(file) {
  const parts = file.split('/');
  if (parts[0] === 'tasks') return 'tasks';
  if (parts[0] === 'src') return parts.length === 2 ? file : `src/${parts[1]}`;
  return file;
}

function layerOf(file) {
  const unit = unitOf(file);
  const index = LAYERS.findIndex((layer) => layer.units.includes(unit));
  return index < 0 ? undefined : { index, name: LAYERS[index].name, unit };
}

/** Relative import specifiers of a source text. */
export function importsOf(text) {
  const found = new Set();
  for (const pattern of IMPORT_SPECIFIERS) {
    for (const match of text.matchAll(pattern)) if (match[1].startsWith('.')) found.add(match[1]);
  }
  return [...found];
}

/** The check over a tree: { files, imports, problems } where each problem is a sentence. */
export function checkLayers(root) {
  const files = CHECKED_DIRS.flatMap((dir) => listFiles(root, dir)).sort();
  const problems = [];
  let imports = 0;
  for (const file of files) {
    const from = layerOf(file);
    if (!from) {
      problems.push(`${file}: ${unitOf(file)} belongs to no layer; add it to LAYERS in scripts/check-layers.mjs and docs/design.md`);
      continue;
    }
    for (const specifier of importsOf(readFileSync(path.join(root, file), 'utf8'))) {
      imports++;
      const target = path.posix.normalize(path.posix.join(path.posix.dirname(file), specifier)).replace(/\.js$/, '.ts');
      const to = layerOf(target);
      if (!to) {
        problems.push(`${file}: imports ${specifier} (${target}), which belongs to no layer`);
      } else if (to.index > from.index) {
        problems.push(`${file}: imports ${target}, but ${from.name} (${from.unit}) is below ${to.name} (${to.unit})`);
      }
    }
  }
  return { files: files.length, imports, problems };
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const root = path.resolve(process.argv[2] ?? path.join(path.dirname(fileURLToPath(import.meta.url)), '..'));
  const { files, imports, problems } = checkLayers(root);
  if (problems.length > 0) {
    console.error(`layers: ${problems.length} import(s) against the layers (lowest first: ${LAYERS.map((l) => l.name).join(' → ')}):`);
    for (const problem of problems) console.error(`  ${problem}`);
    process.exit(1);
  }
  console.log(`layers: ${imports} relative imports in ${files} files, none against the layers (${LAYERS.map((l) => l.name).join(' → ')})`);
}
