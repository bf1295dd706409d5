/**
 * sluice's task list, assembled in one place and handed to the worker
 * (runWorker({ tasks: sluiceTaskList })): the worker does not know its tasks.
 */
import type { WorkerTaskList } from '../src/worker/context.js';
import { sluiceDrainTask } from './sluice_drain.js';
import { sluiceHealthCheckTask } from './sluice_health_check.js';
import { sluiceIngestTask } from './sluice_ingest.js';
import { sluiceRefreshMatviewTask } from './sluice_refresh_matview.js';
import { sluiceRotatePartitionsTask } from './sluice_rotate_partitions.js';

export const sluiceTaskList: WorkerTaskList = {
  sluice_ingest: { create: sluiceIngestTask },
  sluice_drain: { create: sluiceDrainTask, needsDrainers: true },
  sluice_rotate_partitions: { create: sluiceRotatePartitionsTask },
  sluice_health_check: { create: sluiceHealthCheckTask },
  sluice_refresh_matview: { create: sluiceRefreshMatviewTask },
};
