// Rewrite the README's configuration table from src/config.ts (run through `npm run docs:config`, after a build).
import { readFileSync, writeFileSync } from 'node:fs';
import { withConfigTable } from '../dist/src/config-docs.js';

const file = new URL('../README.md', import.meta.url);
const before = readFileSync(file, 'utf8');
const after = withConfigTable(before);
if (after !== before) writeFileSync(file, after);
process.stdout.write(after === before ? 'README.md configuration table is up to date\n' : 'README.md configuration table rewritten\n');
