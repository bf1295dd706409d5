// Time a health report over N partitions (default 1,000): node ops/health-bench.mjs <database-url> [partitions]
// Needs a build (npm run build). Creates public.health_bench (partitioned) in that database and drops it after.
import pg from 'pg';
import { runHealthChecks } from '../dist/src/health/report.js';

const [url, n = '1000'] = process.argv.slice(2);
const parts = Number(n);
const db = new pg.Client({ connectionString: url });
await db.connect();
await db.query(`DROP TABLE IF EXISTS public.health_bench`);
await db.query(`CREATE TABLE public.health_bench (id bigint, at int, body text) PARTITION BY RANGE (at)`);
await db.query(`DO $$ BEGIN FOR i IN 0..${parts - 1} LOOP
  EXECUTE format('CREATE TABLE public.health_bench_%s PARTITION OF public.health_bench FOR VALUES FROM (%s) TO (%s)', i, i, i + 1);
END LOOP; END $$`);
await db.query(`INSERT INTO public.health_bench SELECT g, g % ${parts}, 'x' FROM generate_series(1, ${parts * 10}) g`);
// Every table in scope (no size floor), as for sluice's own partitions.
await db.query(`INSERT INTO sluice.health_thresholds (name, value) VALUES ('min_table_mb', 0) ON CONFLICT (name) DO UPDATE SET value = 0`);
const times = [];
let last;
for (let i = 0; i < 5; i++) {
  const t0 = performance.now();
  last = await runHealthChecks(db, { staleAfterMs: 30_000 });
  times.push(performance.now() - t0);
}
const tables = Number((await db.query(`SELECT count(*) FROM pg_class WHERE relkind = 'r'`)).rows[0].count);
await db.query(`DELETE FROM sluice.health_thresholds WHERE name = 'min_table_mb'`);
await db.query(`DROP TABLE public.health_bench`);
await db.end();
times.sort((a, b) => a - b);
console.log(JSON.stringify({ partitions: parts, tables, findings: last.findings.length, status: last.status,
  ms: { min: Math.round(times[0]), median: Math.round(times[2]), max: Math.round(times[4]) } }));
