/**
 * The SQL front door (sluice.ingest, migrations/00012) announces staged rows
 * with pg_notify('sluice_staged', stream) — sent only when the producer
 * commits, at most once per stream per transaction. The worker hears them on
 * graphile-worker's own LISTEN connection (no extra connection in the budget)
 * and turns each into a throttled drain kick, so a million one-event calls
 * still cost at most one add_jobs per stream per kick interval.
 */
import type { WorkerEvents } from 'graphile-worker';
import type { Logger } from '../logger.js';

export const STAGED_CHANNEL = 'sluice_staged';
const LISTEN_STAGED_SQL = `LISTEN ${STAGED_CHANNEL}`;
const LISTEN_AFTER_MS = 200;

/** On graphile-worker's `events`: kick `kick(stream)` on every sluice_staged notification. */
export function listenForStagedRows(events: WorkerEvents, kick: (stream: string) => void, log: Logger): void {
  // Emitted again after every reconnect of the LISTEN client: LISTEN again each time. graphile-worker
  // sends its own LISTEN right after this event: ours follows a moment later, not queued behind it
  // on the same client (pg deprecates overlapping queries). Rows staged meanwhile: the startup sweep.
  events.on('pool:listen:success', ({ client }) => {
    setTimeout(() => {
      client.query(LISTEN_STAGED_SQL).catch((err: Error) => {
        log.warn({ err: err.message }, 'sqlfront: could not LISTEN for staged rows; the minute sweep drains them');
      });
    }, LISTEN_AFTER_MS).unref();
  });
  events.on('pool:listen:notification', ({ message }) => {
    if (message.channel === STAGED_CHANNEL && message.payload) kick(message.payload);
  });
}
