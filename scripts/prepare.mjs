// npm's `prepare` (after `npm ci` / `npm install` in a checkout, and before `npm pack` / `npm publish`):
// build dist/ with TypeScript when it is installed. A production install (`npm ci --omit=dev`) has no
// TypeScript: then use the dist/ you built and copied (see ops/install.md) and build nothing here.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
let tsc;
try {
  const require = createRequire(path.join(root, 'package.json'));
  const pkgFile = require.resolve('typescript/package.json');
  tsc = path.join(path.dirname(pkgFile), require(pkgFile).bin.tsc);
} catch {
  tsc = undefined;
}
if (tsc) {
  const result = spawnSync(process.execPath, [tsc, '-p', path.join(root, 'tsconfig.json')], { stdio: 'inherit' });
  process.exit(result.status ?? 1);
}
if (existsSync(path.join(root, 'dist', 'src', 'cli', 'main.js'))) {
  process.stdout.write('sluice: TypeScript not installed (production install); using the dist/ that is here\n');
} else {
  process.stderr.write(
    'sluice: WARNING: no dist/ and no TypeScript to build it. Build where the dev dependencies are installed ' +
      '(npm ci && npm run build) and copy dist/ here (ops/install.md).\n',
  );
}
