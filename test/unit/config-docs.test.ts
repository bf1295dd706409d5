/**
 * The README's configuration table, `sluice <command> --help` and loadConfig
 * describe the same settings: every flag the README documents is accepted by
 * the commands it names, with the same default and variable; every option
 * `sluice worker` accepts is documented; every documented range is the one
 * loadConfig enforces; and the stream options' documented defaults are the
 * ones src/streams/stream-defaults.ts holds. Runs the real CLI (dist/).
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, SETTING_LIST, type ConfigFlags } from '../../src/config.js';
import { CONFIG_TABLE_END, CONFIG_TABLE_START, renderConfigTable } from '../../src/config-docs.js';
import { STREAM_DEFAULTS } from '../../src/streams/stream-defaults.js';
import { runCli } from '../helpers/cli.js';

const README = readFileSync(path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../README.md'), 'utf8');

interface DocumentedSetting {
  flags: string[];
  env: string;
  defaultText: string;
  commands: string[];
}

/** The rows of the README's configuration table, parsed from the markdown (not from the generator). */
function documentedSettings(): DocumentedSetting[] {
  const section = README.slice(README.indexOf('## Configuration'), README.indexOf('## Memory'));
  const rows = section.split('\n').filter((l) => l.startsWith('| `--'));
  expect(rows.length).toBeGreaterThan(10);
  return rows.map((row) => {
    const cells = row.slice(1, -1).split(/(?<!\\)\|/).map((c) => c.trim());
    const header = section.split('\n').find((l) => l.startsWith('| flag'))?.slice(1, -1).split('|').map((c) => c.trim()) ?? [];
    const at = (name: string) => cells[header.indexOf(name)] ?? '';
    return {
      flags: [...at('flag').matchAll(/`--([a-z-]+)`/g)].map((m) => m[1] as string).filter((f) => !f.startsWith('no-')),
      env: at('environment').replace(/`/g, '').split('=')[0] as string,
      defaultText: at('default').replace(/\\\|/g, '|'),
      // A table without a commands column documents the worker's settings.
      commands: header.includes('commands') ? at('commands').split(',').map((c) => c.trim()) : ['worker'],
    };
  });
}

/** `--flag` → its help block (description, type, default), whitespace collapsed: yargs wraps long lines. */
function helpOptions(help: string): Map<string, string> {
  const options = new Map<string, string>();
  let current: string[] | undefined;
  for (const line of help.split('\n')) {
    // An option starts at column 2 ("  -h, --help") or 6 ("      --flag"); wrapped description lines sit further right.
    // Aliases share the line: "  -c, --database-url, --connection  …".
    const m = /^ {2}(?:-\w, | {4})(--[a-z][a-z-]*(?:, --[a-z][a-z-]*)*)\s/.exec(line);
    if (m) {
      current = [...(m[1] as string).matchAll(/--([a-z][a-z-]*)/g)].map((n) => n[1] as string);
      for (const name of current) options.set(name, line);
    } else if (current && /^\s{4,}\S/.test(line)) {
      for (const name of current) options.set(name, `${options.get(name)} ${line}`);
    } else {
      current = undefined;
    }
  }
  for (const [k, v] of options) options.set(k, v.replace(/\s+/g, ' ').trim());
  return options;
}

const helpCache = new Map<string, Promise<Map<string, string>>>();
function helpOf(command: string): Promise<Map<string, string>> {
  let help = helpCache.get(command);
  if (!help) {
    help = runCli([...command.split(' '), '--help']).then((r) => {
      expect(r.code, r.stderr).toBe(0);
      return helpOptions(r.stdout);
    });
    helpCache.set(command, help);
  }
  return help;
}

/** Commands that take the global settings (the README says "all"). */
const ALL_COMMANDS = ['worker', 'ingest', 'budget', 'status', 'migrate', 'demo', 'bench', 'stream create'];

describe('README configuration table', () => {
  it('is the one `npm run docs:config` generates from src/config.ts', () => {
    const start = README.indexOf(CONFIG_TABLE_START);
    const end = README.indexOf(CONFIG_TABLE_END);
    expect(start, 'README.md lacks the config-table markers').toBeGreaterThanOrEqual(0);
    const table = README.slice(start + CONFIG_TABLE_START.length, end).trim();
    expect(table, 'README.md is stale: run `npm run docs:config`').toBe(renderConfigTable());
  });

  it('documents only flags the named commands accept, with the default and variable their --help shows', async () => {
    const problems: string[] = [];
    for (const setting of documentedSettings()) {
      const commands = setting.commands.includes('all') ? ALL_COMMANDS : setting.commands;
      for (const command of commands) {
        const options = await helpOf(command);
        for (const flag of setting.flags) {
          const help = options.get(flag);
          if (!help) problems.push(`sluice ${command} does not accept --${flag}`);
          else {
            if (!help.includes(`[default: ${setting.defaultText}]`)) problems.push(`sluice ${command} --help: --${flag} shows no [default: ${setting.defaultText}]: ${help}`);
            if (!help.includes(setting.env)) problems.push(`sluice ${command} --help: --${flag} does not name ${setting.env}`);
          }
        }
      }
    }
    expect(problems).toEqual([]);
  });

  it('documents every option `sluice worker` and `sluice budget` accept (bar --help, --version and budget --json)', async () => {
    const documented = documentedSettings();
    for (const command of ['worker', 'budget']) {
      const listed = new Set(documented.filter((s) => s.commands.includes(command) || s.commands.includes('all')).flatMap((s) => s.flags));
      const accepted = [...(await helpOf(command)).keys()].filter((f) => !['help', 'version', 'json'].includes(f));
      expect(accepted.filter((f) => !listed.has(f)), `sluice ${command} options missing from the README`).toEqual([]);
      expect(accepted.length).toBeGreaterThan(command === 'worker' ? 20 : 3);
    }
  });
});

describe('settings: documented ranges and variables are the ones loadConfig enforces', () => {
  for (const setting of SETTING_LIST) {
    if (setting.type !== 'int') continue;
    it(`--${setting.flag} / ${setting.env}: ${setting.min} to ${setting.max}`, () => {
      const range = `must be an integer from ${setting.min} to ${setting.max}`;
      for (const bad of [setting.min - 1, setting.max + 1]) {
        const fromEnv = (() => loadConfig({}, { [setting.env]: String(bad) })) as () => unknown;
        expect(fromEnv).toThrow(ConfigError);
        expect(fromEnv).toThrow(`${setting.env} ${range}`);
        const fromFlag = () => loadConfig({ [setting.key]: bad } as ConfigFlags, {});
        expect(fromFlag).toThrow(`--${setting.flag} ${range}`);
      }
    });
  }

  it('every variable a setting names is read by loadConfig', () => {
    // A value that no setting accepts proves the variable is read (strings: a shape loadConfig refuses).
    const refused: Record<string, string> = { DATABASE_URL: 'mysql://x', SLUICE_WORKER_ID: 'bad id', SLUICE_LOG_LEVEL: 'loud', SLUICE_MIGRATE: 'maybe', SLUICE_EMBEDDED: 'maybe', SLUICE_BUDGET_SCOPE: 'server' };
    for (const setting of SETTING_LIST) {
      if (setting.key === 'home') {
        expect(loadConfig({}, { [setting.env]: '/tmp/somewhere' }).homeDir).toBe('/tmp/somewhere');
        continue;
      }
      if (setting.key === 'crontab') {
        expect(loadConfig({}, { [setting.env]: '/tmp/my-crontab' }).crontabFile).toBe('/tmp/my-crontab');
        continue;
      }
      if (setting.key === 'tasks') {
        expect(loadConfig({}, { [setting.env]: '/tmp/my-tasks' }).tasksDir).toBe('/tmp/my-tasks');
        continue;
      }
      if (setting.key === 'userCrontab') {
        expect(loadConfig({}, { [setting.env]: '/tmp/my-crontab' }).userCrontabFile).toBe('/tmp/my-crontab');
        continue;
      }
      const value = setting.type === 'int' ? String(setting.max + 1) : refused[setting.env];
      expect(value, `a refused value for ${setting.env}`).toBeDefined();
      expect(() => loadConfig({}, { [setting.env]: value }), setting.env).toThrow(ConfigError);
    }
  });
});

describe('stream options: README and `sluice stream create --help` show STREAM_DEFAULTS', () => {
  const options = {
    'premake-months': STREAM_DEFAULTS.premakeMonths,
    'max-past-months': STREAM_DEFAULTS.maxPastMonths,
    'drain-batch-rows': STREAM_DEFAULTS.drainBatchRows,
    'max-event-bytes': STREAM_DEFAULTS.maxEventBytes,
    'require-event-id': STREAM_DEFAULTS.requireEventId,
  };

  it('in --help', async () => {
    const help = await helpOf('stream create');
    for (const [flag, value] of Object.entries(options)) expect(help.get(flag), flag).toContain(`[default: ${value}]`);
  });

  it('in the README', () => {
    const paragraph = README.slice(README.indexOf('Options: `--premake-months`'));
    for (const [flag, value] of Object.entries(options)) {
      if (typeof value === 'boolean') continue; // documented as --no-require-event-id
      expect(paragraph, flag).toMatch(new RegExp(`\`--${flag}\` \\(${value}[:)]`));
    }
  });
});
