import type { CommandModule } from 'yargs';
import type { ConfigFlags } from '../config.js';
import { CRONTAB_FILE } from '../paths.js';
import { runWorker } from '../worker/run-worker.js';
import { sluiceTaskList } from '../../tasks/index.js';
import { configOptions, globalOptions, say, keepRunningOnUnhandledRejections, withRuntime, type GlobalArgs } from './runtime.js';
import { combinedCrontab, loadUserTasks } from './user-tasks.js';

type WorkerArgs = GlobalArgs & ConfigFlags;

export const workerCommand: CommandModule<object, WorkerArgs> = {
  command: 'worker',
  describe: 'Run a worker: ingest and drain tasks, the crontab (and your own tasks with --tasks), inside a declared connection budget',
  builder: (y) => configOptions(globalOptions(y), 'worker'),
  handler: (argv) =>
    withRuntime(
      argv,
      async ({ config, log, db, signal }) => {
        const restore = keepRunningOnUnhandledRejections(log);
        const userTasks = config.tasksDir ? await loadUserTasks(config.tasksDir, Object.keys(sluiceTaskList)) : {};
        const worker = await runWorker({
          config,
          connectionString: db.url,
          log,
          tasks: { ...sluiceTaskList, ...userTasks },
          crontab: combinedCrontab(config.crontabFile ?? CRONTAB_FILE, config.userCrontabFile),
        });
        if (Object.keys(userTasks).length > 0) log.info({ tasks: Object.keys(userTasks), folder: config.tasksDir }, 'worker: your tasks loaded');
        say(`worker ${worker.id} running (${worker.plan.total} connections of a ${config.maxConnections} budget); Ctrl-C or SIGTERM stops it cleanly`);
        signal.addEventListener('abort', () => void worker.stop('signal'), { once: true });
        await worker.done.finally(restore);
        say(`worker ${worker.id} stopped`);
      },
      { logLevel: 'info', embeddedNeedsFlag: true },
    ),
};
