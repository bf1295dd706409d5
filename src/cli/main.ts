/** The `sluice` command line. */
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { SLUICE_VERSION } from '../version.js';
import { benchCommand } from './bench-command.js';
import { budgetCommand } from './budget-command.js';
import { demoCommand } from './demo-command.js';
import { healthCommand } from './health-command.js';
import { ingestCommand } from './ingest-command.js';
import { matviewCommand } from './matview-command.js';
import { migrateCommand } from './migrate-command.js';
import { partitionsCommand } from './partitions-command.js';
import { rejectsCommand } from './rejects-command.js';
import { reportError, reportUsageError, structuredProcessWarnings } from './runtime.js';
import { rolesCommand } from './roles-command.js';
import { statusCommand } from './status-command.js';
import { streamCommand } from './stream-command.js';
import { workerCommand } from './worker-command.js';

export async function main(argv: string[] = hideBin(process.argv)): Promise<void> {
  structuredProcessWarnings();
  await yargs(argv)
    .scriptName('sluice')
    .usage('$0 <command> [options]\n\nPostgres-native event pipeline: COPY into UNLOGGED staging, SKIP LOCKED drains into monthly-partitioned durable tables.\nWith no DATABASE_URL, commands start an embedded Postgres with data in ./.sluice.')
    .command(demoCommand)
    .command(workerCommand)
    .command(ingestCommand)
    .command(streamCommand)
    .command(partitionsCommand)
    .command(matviewCommand)
    .command(statusCommand)
    .command(rejectsCommand)
    .command(healthCommand)
    .command(budgetCommand)
    .command(migrateCommand)
    .command(rolesCommand)
    .command(benchCommand)
    .completion('completion', 'Print a bash/zsh completion script: source <(sluice completion)')
    .demandCommand(1, 'Choose a command (sluice --help lists them)')
    .strict()
    .version(SLUICE_VERSION)
    .help()
    .alias('h', 'help')
    .wrap(Math.min(120, process.stdout.columns || 100))
    .fail((message, err, y) => {
      if (err) throw err;
      reportUsageError(message, () => String(y.help()));
      process.exit(2);
    })
    .parseAsync()
    .catch(reportError);
}
