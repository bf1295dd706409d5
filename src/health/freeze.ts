/**
 * Freeze / wraparound: age(relfrozenxid) of every table and of its TOAST table
 * against autovacuum_freeze_max_age (per-table reloption honoured, TOAST's own
 * when set), mxid_age(relminmxid) against autovacuum_multixact_freeze_max_age,
 * and each database's age(datfrozenxid) / mxid_age(datminmxid) against the
 * 2^31 wraparound limit. No size floor: wraparound does not care about size.
 */
import { count, grade, type Finding } from './finding.js';
import { summaryFinding, type HealthCheck } from './context.js';
import { qualified } from './table-stats.js';
import type { Thresholds } from './thresholds.js';

const WRAPAROUND_LIMIT = 2 ** 31;

const DATABASE_AGES = `
SELECT datname, age(datfrozenxid)::float8 AS xid_age, mxid_age(datminmxid)::float8 AS mxid_age
  FROM pg_database ORDER BY datname`;

function ageFinding(
  th: Thresholds,
  check: string,
  target: string,
  age: number,
  max: number,
  what: string,
  advice: string,
): Finding | undefined {
  const pct = (age / max) * 100;
  const severity = grade(pct, th.freeze_warn_pct, th.freeze_critical_pct);
  if (severity === 'ok') return undefined;
  return {
    check,
    target,
    severity,
    value: age,
    threshold: Math.round((max * th.freeze_warn_pct) / 100),
    message: `${what} ${count(age)} is ${pct.toFixed(1)} % of its freeze max age ${count(max)}: anti-wraparound autovacuum is due or not keeping up`,
    advice,
  };
}

export const freezeCheck: HealthCheck = {
  name: 'freeze',
  async run(ctx) {
    const th = ctx.thresholds;
    const findings: Finding[] = [];
    let tables = 0;
    for (const t of await ctx.tables()) {
      tables++;
      const name = qualified(t);
      const vacuum = `VACUUM (FREEZE, VERBOSE) ${name}; then look for xmin horizon holders if the age does not drop`;
      const candidates = [
        ageFinding(th, 'freeze.xid', `table ${name}`, t.xid_age, t.freeze_max, 'age(relfrozenxid)', vacuum),
        ageFinding(th, 'freeze.mxid', `table ${name}`, t.mxid_age, t.mxid_max, 'mxid_age(relminmxid)', vacuum),
      ];
      if (t.toast_name && t.toast_xid_age !== null && t.toast_freeze_max !== null) {
        const toastTarget = `toast of table ${name} (pg_toast.${t.toast_name})`;
        const toastVacuum = `VACUUM (FREEZE, VERBOSE, PROCESS_MAIN false) ${name} (PG16+; older: VACUUM (FREEZE) ${name})`;
        candidates.push(ageFinding(th, 'freeze.xid', toastTarget, t.toast_xid_age, t.toast_freeze_max, 'TOAST age(relfrozenxid)', toastVacuum));
        if (t.toast_mxid_age !== null && t.toast_mxid_max !== null) {
          candidates.push(ageFinding(th, 'freeze.mxid', toastTarget, t.toast_mxid_age, t.toast_mxid_max, 'TOAST mxid_age(relminmxid)', toastVacuum));
        }
      }
      for (const f of candidates) if (f) findings.push(f);
    }
    findings.push(summaryFinding('freeze', 'database', `${tables} table(s) and their TOAST tables checked against their freeze max ages`));

    const { rows } = await ctx.db.query<{ datname: string; xid_age: number; mxid_age: number }>(DATABASE_AGES);
    let oldest = { datname: '', age: 0 };
    for (const d of rows) {
      if (d.xid_age > oldest.age) oldest = { datname: d.datname, age: d.xid_age };
      for (const [kind, age, fn] of [
        ['xid', d.xid_age, 'age(datfrozenxid)'],
        ['mxid', d.mxid_age, 'mxid_age(datminmxid)'],
      ] as const) {
        const pct = (age / WRAPAROUND_LIMIT) * 100;
        const severity = grade(pct, th.wraparound_warn_pct, th.wraparound_critical_pct);
        if (severity === 'ok') continue;
        findings.push({
          check: `wraparound.${kind}`,
          target: `database ${d.datname}`,
          severity,
          value: age,
          threshold: Math.round((WRAPAROUND_LIMIT * th.wraparound_warn_pct) / 100),
          message: `${fn} ${count(age)} is ${pct.toFixed(2)} % of the 2^31 wraparound limit`,
          advice: `in ${d.datname}: find the oldest tables (ORDER BY age(relfrozenxid) DESC) and VACUUM (FREEZE) them; clear xmin horizon holders first`,
        });
      }
    }
    findings.push({
      ...summaryFinding('wraparound', 'server', `${rows.length} database(s) checked; oldest ${oldest.datname}: age(datfrozenxid) ${count(oldest.age)}, ${((oldest.age / WRAPAROUND_LIMIT) * 100).toFixed(2)} % of 2^31`),
      value: oldest.age,
      threshold: Math.round((WRAPAROUND_LIMIT * th.wraparound_warn_pct) / 100),
    });
    return findings;
  },
};
