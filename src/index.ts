/** sluice's TypeScript API. */
export { createIngestor, type ClientIngestor, type CreateIngestorOptions } from './ingest/create-ingestor.js';
export type { AckLevel, IngestReceipt, IngestRejection } from './ingest/ingestor.js';
export { REJECT_REASONS, type RejectReason } from './ingest/event-encoder.js';
export { runWorker, type RunWorkerOptions, type WorkerHandle } from './worker/run-worker.js';
export { loadConfig, type SluiceConfig, type ConfigFlags, ConfigError } from './config.js';
export { migrateDatabase } from './db/migrate.js';
export { startEmbeddedServer, type EmbeddedServer } from './db/embedded-server.js';
export { createStream, dropStream, getStream, listStreams, type StreamDefinition, type CreateStreamSpec } from './streams/registry.js';
export { parseIndexSpec } from './streams/index-spec.js';
export { planConnections, assertPlanFitsBudget, type ConnectionPlan } from './db/budget.js';
export { statusReport, type StatusReport } from './status/stream-status.js';
export { createLogger } from './logger.js';
export { SluiceError, type SluiceErrorCode } from './errors.js';
// sluice inside your own graphile-worker (tasks/graphile-interop.ts).
export {
  sluiceTasks,
  sluiceCrontab,
  SluicePreset,
  closeSluiceTasks,
  createSluiceTasks,
  createSluicePreset,
  type SluiceTasks,
  type SluiceTasksOptions,
} from '../tasks/graphile-interop.js';
/** pg type parsers that keep exact JSON numbers: give them to your pg.Pool so sluice_ingest payloads keep big numbers exactly. */
export { JSON_KEEPING_TYPES as sluicePgTypes } from './db/json-types.js';
