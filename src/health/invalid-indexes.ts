/** Invalid indexes (pg_index.indisvalid = false): left by a failed CREATE INDEX CONCURRENTLY, or one being built now. */
import type { Finding } from './finding.js';
import { summaryFinding, type HealthCheck } from './context.js';

const INVALID_INDEXES = `
SELECT n.nspname AS schema, ic.relname AS index, tc.relname AS table, pg_relation_size(ic.oid)::float8 AS bytes,
       EXISTS (SELECT 1 FROM pg_stat_progress_create_index p WHERE p.index_relid = ic.oid) AS building
  FROM pg_index i
  JOIN pg_class ic ON ic.oid = i.indexrelid
  JOIN pg_class tc ON tc.oid = i.indrelid
  JOIN pg_namespace n ON n.oid = ic.relnamespace
 WHERE NOT i.indisvalid AND n.nspname NOT IN ('pg_catalog', 'information_schema')
 ORDER BY 1, 2`;

export const invalidIndexesCheck: HealthCheck = {
  name: 'invalid_indexes',
  async run(ctx) {
    const { rows } = await ctx.db.query<{ schema: string; index: string; table: string; bytes: number; building: boolean }>(INVALID_INDEXES);
    const findings: Finding[] = rows.map((r) => ({
      check: 'pipeline.invalid_index',
      target: `index ${r.schema}.${r.index}`,
      severity: r.building ? 'ok' : 'warn',
      value: r.bytes,
      threshold: null,
      message: r.building
        ? `index ${r.schema}.${r.index} on ${r.table} is being built concurrently right now`
        : `index ${r.schema}.${r.index} on ${r.table} is INVALID (a failed CREATE INDEX CONCURRENTLY?): writes still maintain it, queries never use it`,
      advice: r.building ? 'nothing to do' : `DROP INDEX CONCURRENTLY ${r.schema}.${r.index}; then create it again (or REINDEX INDEX CONCURRENTLY)`,
    }));
    if (findings.length === 0) findings.push(summaryFinding('pipeline.invalid_index', 'database', 'no invalid indexes'));
    return findings;
  },
};
