/** Crash an embedded server for real: `pg_ctl restart -m immediate` (no checkpoint; crash recovery at start). */
import path from 'node:path';
import type { EmbeddedServer } from '../../src/db/embedded-server.js';
import { loadBinaries } from '../../src/db/embedded/binaries.js';
import { resolveRunAs, runProgram } from '../../src/db/embedded/run-as.js';
import type { Logger } from '../../src/logger.js';

export async function immediateRestart(server: EmbeddedServer, log: Logger): Promise<void> {
  const runAs = await resolveRunAs(log);
  const bin = await loadBinaries(runAs, log);
  await runProgram(bin.pg_ctl, ['restart', '-D', server.clusterDir, '-l', path.join(server.clusterDir, 'postgres.log'), '-m', 'immediate', '-w', '-t', '60'], runAs, path.dirname(server.clusterDir));
}
