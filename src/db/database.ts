/**
 * Resolve which Postgres a command talks to: DATABASE_URL when set, else the
 * embedded default under `./.sluice/` (started, or joined if already running).
 */
import type { SluiceConfig } from '../config.js';
import { redactUrl } from '../config.js';
import type { Logger } from '../logger.js';
import { startEmbeddedServer, type EmbeddedServer } from './embedded-server.js';

export interface DatabaseTarget {
  readonly url: string;
  /** Printable form, password masked. */
  readonly displayUrl: string;
  readonly embedded: EmbeddedServer | undefined;
  /** Leaves the embedded server (the last command out stops it); no-op for DATABASE_URL. */
  close(): Promise<void>;
}

export async function openDatabase(config: SluiceConfig, log: Logger): Promise<DatabaseTarget> {
  if (config.databaseUrl) {
    const url = config.databaseUrl;
    return { url, displayUrl: redactUrl(url), embedded: undefined, close: async () => undefined };
  }
  const server = await startEmbeddedServer({ homeDir: config.homeDir, log });
  return { url: server.url, displayUrl: server.displayUrl, embedded: server, close: async () => void (await server.stop()) };
}
