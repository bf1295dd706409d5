import type { Argv, CommandModule } from 'yargs';
import type { ConfigFlags } from '../config.js';
import { createPool } from '../db/connections.js';
import { describeCapacity } from '../db/budget.js';
import { budgetReport } from '../status/budget-report.js';
import { printJson, configOptions, globalOptions, withRuntime, type GlobalArgs } from './runtime.js';
import { renderTable } from './table.js';

interface BudgetArgs extends GlobalArgs, ConfigFlags {
  json?: boolean;
}

export const budgetCommand: CommandModule<object, BudgetArgs> = {
  command: 'budget',
  describe: "Cluster connection plan vs max_connections; each live worker's budget and actual connections, other databases' included",
  builder: (y) =>
    configOptions(globalOptions(y), 'budget')
      .option('json', { type: 'boolean', describe: 'Print JSON' }) as Argv<BudgetArgs>,
  handler: (argv) =>
    withRuntime(argv, async ({ db, config }) => {
      const pool = createPool(db.url, `sluice/${config.workerId}/budget`, 1);
      try {
        const report = await budgetReport(pool, config.reserve, config.staleAfterMs, config.budgetScope);
        if (argv.json) {
          printJson(report);
          return;
        }
        const c = report.capacity;
        const lines = [
          `cluster: ${describeCapacity(c)} available to sluice workers`,
          `declared by ${report.workers.length} live worker(s) here` +
            (report.scope === 'cluster' ? ` and ${report.otherDatabases.length} in other databases` : ' (scope database: other databases not counted)') +
            `: ${report.declared}; headroom ${report.headroom}${report.headroom < 0 ? '  ← OVER BUDGET' : ''}`,
          `connected now: ${report.connectionsNow} client backends (${report.otherConnections} not sluice workers)`,
          '',
          report.workers.length
            ? renderTable(
                ['worker', 'host', 'pid', 'budget', 'plan', 'pool', 'flushers', 'drainers', 'actual'],
                report.workers.map((w) => [w.id, w.host, w.pid, w.budget, w.plan.total, w.plan.pool, w.plan.flushers, w.plan.drainers, w.connections]),
              )
            : 'no live workers in this database',
          ...(report.otherDatabases.length
            ? [
                '',
                'other databases of the cluster (budgets from application_name):',
                renderTable(
                  ['database', 'worker', 'budget', 'actual'],
                  report.otherDatabases.map((c) => [c.database, c.id, c.budget, c.connections]),
                ),
              ]
            : []),
        ];
        process.stdout.write(`${lines.join('\n')}\n`);
      } finally {
        await pool.end();
      }
    }),
};
