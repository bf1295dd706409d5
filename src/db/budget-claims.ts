/**
 * Budgets declared in other databases of the cluster (issue 17): connections
 * are a cluster resource, but sluice.workers and advisory locks are per
 * database. A worker under --budget-scope cluster names every session
 * `sluice/<id>/<role>/b<budget>` (connections.ts), from its first connection
 * on, so pg_stat_activity — one view of the whole cluster — tells every
 * database which workers elsewhere hold a claim and how large it is. A claim
 * lives exactly as long as one of its worker's sessions: a killed worker's
 * claim ends with its backends, and no row can go stale.
 *
 * datname and application_name are shown to every role in pg_stat_activity
 * (not only to superusers and pg_read_all_stats), so no privilege is needed.
 */
import type pg from 'pg';

export interface BudgetClaim {
  readonly database: string;
  readonly id: string;
  readonly budget: number;
  /** Sessions carrying the claim now. */
  readonly connections: number;
}

/**
 * pg_stat_activity is read once per transaction and then kept (the stats
 * snapshot): cleared first, so a registration sees the sessions as they are
 * after its advisory lock, not as they were at its first look.
 */
const CLEAR_STATS_SNAPSHOT = `SELECT pg_stat_clear_snapshot()`;
/**
 * The id and budget parts of a claim (POSIX regex, for Postgres and JS alike);
 * a name that does not match exactly (another tool's, an older sluice's, a
 * client's) is no claim.
 */
export const CLAIM_PATTERN = '^sluice/([A-Za-z0-9][A-Za-z0-9._-]{0,39})/[A-Za-z0-9._-]+/b([0-9]{1,5})$';
const CLAIMS_ELSEWHERE = `
SELECT s.database, s.id, max(s.budget)::int AS budget, count(*)::int AS connections
  FROM (SELECT a.datname::text AS database, m.parts[1] AS id, m.parts[2]::int AS budget
          FROM pg_stat_activity a
         CROSS JOIN LATERAL regexp_match(a.application_name, $1) AS m(parts)
         WHERE a.datname IS DISTINCT FROM current_database() AND m.parts IS NOT NULL) s
 GROUP BY s.database, s.id
 ORDER BY budget DESC, s.database, s.id`;

/** Live workers of other databases of this cluster, with their declared budgets (largest first). */
export async function budgetClaimsElsewhere(db: pg.ClientBase | pg.Pool): Promise<BudgetClaim[]> {
  // Harmless outside a transaction (each statement then reads afresh anyway), and on a pool's other client.
  await db.query(CLEAR_STATS_SNAPSHOT);
  const { rows } = await db.query<BudgetClaim>(CLAIMS_ELSEWHERE, [CLAIM_PATTERN]);
  return rows;
}

/** `w1 (6) in db2, w2 (4) in db3`: whose claims they are, for messages. */
export function describeClaims(claims: readonly BudgetClaim[]): string {
  return claims.map((c) => `${c.id} (${c.budget}) in database ${c.database}`).join(', ');
}
