import type { Argv, CommandModule } from 'yargs';
import { migrateDatabase } from '../db/migrate.js';
import { globalOptions, printJson, say, withRuntime, type GlobalArgs } from './runtime.js';

interface MigrateArgs extends GlobalArgs {
  json?: boolean;
}

export const migrateCommand: CommandModule<object, MigrateArgs> = {
  command: 'migrate',
  describe: "Create or upgrade sluice's schema and graphile-worker's (idempotent)",
  builder: (y) => globalOptions(y).option('json', { type: 'boolean', describe: 'Print the applied migrations as JSON' }) as Argv<MigrateArgs>,
  handler: (argv) =>
    withRuntime(argv, async ({ db, log }) => {
      const { applied } = await migrateDatabase(db.url, log);
      say(applied.length ? `applied ${applied.length} migration(s): ${applied.join(', ')}` : 'schema is up to date');
      if (argv.json) printJson({ applied, up_to_date: applied.length === 0 });
    }),
};
