/** Run the real `sluice` binary (bin/sluice.js → dist/, built by `npm test`'s pretest). */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const SLUICE_BIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../bin/sluice.js');

export interface CliResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Environment for a child: the caller's PATH/HOME, no inherited sluice settings. */
export function cliEnv(extra: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (k === 'DATABASE_URL' || k.startsWith('SLUICE_') || k === 'TEST_DATABASE_URL') continue;
    env[k] = v;
  }
  // Test files run in parallel, each in its own database of one shared server: under the default
  // --budget-scope cluster each file's workers would count against every other file's, and the
  // budget arithmetic of a test would depend on what else runs. Tests of the cluster-wide check
  // (test/multi-worker.test.ts) pass SLUICE_BUDGET_SCOPE=cluster themselves.
  env.SLUICE_BUDGET_SCOPE = 'database';
  for (const [k, v] of Object.entries(extra)) if (v !== undefined) env[k] = v;
  return env;
}

export interface SpawnedCli {
  readonly child: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** Resolves when combined output matches, rejects on exit or timeout first. */
  waitForOutput(pattern: RegExp, timeoutMs?: number): Promise<void>;
  exited: Promise<CliResult>;
}

export function spawnCli(args: string[], env: Record<string, string | undefined> = {}, cwd?: string): SpawnedCli {
  const child = spawn(process.execPath, [SLUICE_BIN, ...args], { env: cliEnv(env), cwd, stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  const listeners = new Set<() => void>();
  child.stdout?.on('data', (d: Buffer) => {
    out += d.toString();
    for (const l of listeners) l();
  });
  child.stderr?.on('data', (d: Buffer) => {
    err += d.toString();
    for (const l of listeners) l();
  });
  const exited = new Promise<CliResult>((resolve) => {
    child.on('close', (code, signal) => resolve({ code, signal, stdout: out, stderr: err }));
  });
  return {
    child,
    stdout: () => out,
    stderr: () => err,
    exited,
    waitForOutput(pattern, timeoutMs = 30_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          if (pattern.test(out) || pattern.test(err)) {
            cleanup();
            resolve();
          }
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(new Error(`timed out waiting for ${pattern}; stderr so far:\n${err.slice(-3000)}`));
        }, timeoutMs);
        const onExit = () => {
          cleanup();
          reject(new Error(`process exited before ${pattern}; stderr:\n${err.slice(-3000)}`));
        };
        const cleanup = () => {
          clearTimeout(timer);
          listeners.delete(check);
          child.off('close', onExit);
        };
        listeners.add(check);
        child.on('close', onExit);
        check();
      });
    },
  };
}

export async function runCli(
  args: string[],
  options: { env?: Record<string, string | undefined>; input?: string; cwd?: string; timeoutMs?: number } = {},
): Promise<CliResult> {
  const spawned = spawnCli(args, options.env, options.cwd);
  if (options.input !== undefined) spawned.child.stdin?.end(options.input);
  else spawned.child.stdin?.end();
  const timer = setTimeout(() => spawned.child.kill('SIGKILL'), options.timeoutMs ?? 60_000);
  try {
    return await spawned.exited;
  } finally {
    clearTimeout(timer);
  }
}

/** Off a terminal every stderr line of sluice is a JSON line (pino's keys: level, time, msg, …): parse them all (throws on a plain line). */
export function stderrRecords(stderr: string): Array<Record<string, unknown> & { level: number; msg: string }> {
  return stderr
    .split('\n')
    .filter((line) => line.length > 0)
    .map((line) => {
      try {
        return JSON.parse(line) as Record<string, unknown> & { level: number; msg: string };
      } catch {
        throw new Error(`stderr line is not JSON: ${line}`);
      }
    });
}

/** The messages of a command's stderr JSON lines, one per line, for matching text. */
export function stderrMessages(stderr: string): string {
  return stderrRecords(stderr)
    .map((r) => r.msg)
    .join('\n');
}
