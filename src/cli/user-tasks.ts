/**
 * `sluice worker --tasks DIR`: the user's graphile-worker tasks beside sluice's,
 * with graphile-worker's conventions: one file per task identifier (the file
 * name without its extension), exporting the task function as its default
 * export (or `module.exports = fn` in CommonJS). They share the worker's job
 * slots and pool, so they stay inside the same declared budget.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Task } from 'graphile-worker';
import { ConfigError } from '../config.js';
import type { WorkerTaskList } from '../worker/context.js';

const TASK_FILE = /^([A-Za-z_][A-Za-z0-9_:.-]*)\.(js|mjs|cjs)$/;

/** Load every task file in `dir`; refuse identifiers that clash with sluice's own or with each other. */
export async function loadUserTasks(dir: string, reserved: readonly string[]): Promise<WorkerTaskList> {
  let names: string[];
  try {
    names = readdirSync(dir).sort();
  } catch (err) {
    throw new ConfigError(`--tasks ${dir}: cannot read the folder (${(err as Error).message})`);
  }
  const tasks: Record<string, { create: () => Task }> = {};
  for (const name of names) {
    const match = TASK_FILE.exec(name);
    if (!match) continue;
    const identifier = match[1]!;
    if (reserved.includes(identifier)) throw new ConfigError(`--tasks ${dir}: ${name} would replace sluice's own task ${identifier}; rename it`);
    if (identifier in tasks) throw new ConfigError(`--tasks ${dir}: two files for the task ${identifier}; keep one`);
    const mod = (await import(pathToFileURL(path.join(dir, name)).href)) as { default?: unknown };
    const fn = typeof mod.default === 'function' ? mod.default : typeof (mod.default as { default?: unknown })?.default === 'function' ? (mod.default as { default: unknown }).default : undefined;
    if (typeof fn !== 'function') throw new ConfigError(`--tasks ${dir}: ${name} must export a task function as its default export`);
    tasks[identifier] = { create: () => fn as Task };
  }
  if (Object.keys(tasks).length === 0) throw new ConfigError(`--tasks ${dir}: no task files (.js, .mjs or .cjs) in the folder`);
  return tasks;
}

/** sluice's schedule plus the user's (--user-crontab). */
export function combinedCrontab(sluiceCrontabFile: string, userCrontabFile: string | undefined): string {
  const own = readFileSync(sluiceCrontabFile, 'utf8');
  if (!userCrontabFile) return own;
  let user: string;
  try {
    user = readFileSync(userCrontabFile, 'utf8');
  } catch (err) {
    throw new ConfigError(`--user-crontab ${userCrontabFile}: cannot read it (${(err as Error).message})`);
  }
  return `${own}\n# --user-crontab ${userCrontabFile}\n${user}\n`;
}
