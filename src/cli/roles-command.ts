/** `sluice roles create`: NOLOGIN producer / reader / worker roles to GRANT to login roles (docs/design.md, "Roles"). */
import type { Argv, CommandModule } from 'yargs';
import { connectClient } from '../db/connections.js';
import { createRoles, ROLE_PREFIX_DEFAULT } from '../db/roles.js';
import { printJson, globalOptions, say, withRuntime, type GlobalArgs } from './runtime.js';

interface CreateArgs extends GlobalArgs {
  prefix: string;
  json?: boolean;
}

const create: CommandModule<object, CreateArgs> = {
  command: 'create',
  describe: 'Create (or bring up to date) the NOLOGIN roles <prefix>producer, <prefix>reader, <prefix>worker; idempotent',
  builder: (y) =>
    globalOptions(y)
      .option('prefix', { type: 'string', default: ROLE_PREFIX_DEFAULT, describe: 'Role name prefix (a lowercase letter, then lowercase letters, digits, _)' })
      .option('json', { type: 'boolean', describe: 'Print JSON' }) as Argv<CreateArgs>,
  handler: (argv) =>
    withRuntime(argv, async ({ db }) => {
      const client = await connectClient(db.url, 'sluice/cli/roles');
      try {
        const result = await createRoles(client, argv.prefix);
        if (argv.json) {
          const out = {
            roles: result.roles.map((r) => ({ kind: r.kind, role: r.role, created: r.created, statements: r.statements })),
            stream_statements: result.streamStatements,
          };
          printJson(out);
          return;
        }
        for (const r of result.roles) {
          process.stdout.write(`${r.role} (${r.kind}): ${r.created ? 'created' : 'exists, granted again'}\n`);
          for (const s of r.statements) process.stdout.write(`  ${s}\n`);
        }
        if (result.streamStatements.length) {
          process.stdout.write('streams handed to the worker role:\n');
          for (const s of result.streamStatements) process.stdout.write(`  ${s}\n`);
        }
        say(`roles are NOLOGIN: GRANT them to your login roles, e.g. GRANT ${result.roles.find((r) => r.kind === 'worker')?.role} TO my_worker_login`);
      } finally {
        await client.end().catch(() => undefined);
      }
    }),
};

export const rolesCommand: CommandModule = {
  command: 'roles <command>',
  describe: 'Least-privilege roles: roles create',
  builder: (y) => y.command(create).demandCommand(1),
  handler: () => undefined,
};
