import type { CommandModule } from 'yargs';
import { migrateDatabase } from '../db/migrate.js';
import { globalOptions, say, withRuntime, type GlobalArgs } from './runtime.js';

export const migrateCommand: CommandModule<object, GlobalArgs> = {
  command: 'migrate',
  describe: "Create or upgrade sluice's schema and graphile-worker's (idempotent)",
  builder: (y) => globalOptions(y),
  handler: (argv) =>
    withRuntime(argv, async ({ db, log }) => {
      const { applied } = await migrateDatabase(db.url, log);
      say(applied.length ? `applied ${applied.length} migration(s): ${applied.join(', ')}` : 'schema is up to date');
    }),
};
