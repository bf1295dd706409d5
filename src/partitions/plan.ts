/**
 * The one partition planner: from a stream's settings, the partitions that
 * exist and a clock, which months to premake, which partitions are past
 * retention (detach, then drop / keep / archive), and which detaches an
 * interrupted run left pending (finalize). Pure: no I/O, the clock is an input.
 *
 * The window is sluice.stream_window_at's formula (migrations/00008), which the
 * drain's on-demand creation (sluice.repair_missing_partitions) and ingest use
 * at now(): premake only makes months the window admits, and the partitions
 * retention removes are exactly the months the window no longer admits.
 */
import { monthOf, type MonthIndex, partitionName } from './months.js';

export type RetentionMode = 'detach' | 'drop' | 'archive';
export type PartitionState = 'attached' | 'detach_pending' | 'detached' | 'archived';

export interface PlanSettings {
  readonly name: string;
  readonly premakeMonths: number;
  readonly retentionMonths: number | null;
  readonly retentionMode: RetentionMode;
  readonly maxPastMonths: number;
}

export interface ExistingPartition {
  readonly name: string;
  readonly month: MonthIndex;
  readonly state: PartitionState;
}

export interface PlannedPartition {
  readonly name: string;
  readonly month: MonthIndex;
}

export interface PartitionPlan {
  readonly stream: string;
  readonly thisMonth: MonthIndex;
  /** Months the stream accepts: [lo, hi). */
  readonly window: { readonly lo: MonthIndex; readonly hi: MonthIndex };
  /** First month retention keeps (undefined: no retention). */
  readonly keepFrom: MonthIndex | undefined;
  /** Missing months from last month to premake_months ahead (inside the window). */
  readonly premake: readonly PlannedPartition[];
  /** Months the premake cannot create: a table of that name exists but is not attached. */
  readonly premakeBlocked: readonly PlannedPartition[];
  /** Detach pending (an interrupted DETACH … CONCURRENTLY): finalize. */
  readonly finalize: readonly PlannedPartition[];
  /** Attached partitions entirely older than retention: detach, then apply the mode. */
  readonly expire: readonly PlannedPartition[];
  /** Already detached, past retention, mode drop/archive: a run stopped between detach and drop/archive. */
  readonly dispose: readonly PlannedPartition[];
  readonly mode: RetentionMode;
}

/** sluice.stream_window_at, in months. */
export function streamWindow(settings: PlanSettings, now: Date | number): { lo: MonthIndex; hi: MonthIndex } {
  const thisMonth = monthOf(now);
  let lo = thisMonth - settings.maxPastMonths;
  if (settings.retentionMonths !== null) lo = Math.max(lo, thisMonth - (settings.retentionMonths - 1));
  return { lo, hi: thisMonth + settings.premakeMonths + 1 };
}

export function planPartitions(settings: PlanSettings, existing: readonly ExistingPartition[], now: Date | number): PartitionPlan {
  const thisMonth = monthOf(now);
  const window = streamWindow(settings, now);
  const keepFrom = settings.retentionMonths === null ? undefined : thisMonth - (settings.retentionMonths - 1);
  const byMonth = new Map(existing.map((p) => [p.month, p]));
  const at = (month: MonthIndex): PlannedPartition => ({ name: partitionName(settings.name, month), month });

  const premake: PlannedPartition[] = [];
  const premakeBlocked: PlannedPartition[] = [];
  for (let month = Math.max(thisMonth - 1, window.lo); month < window.hi; month++) {
    const found = byMonth.get(month);
    if (!found) premake.push(at(month));
    else if (found.state !== 'attached') premakeBlocked.push(at(month));
  }
  const pastRetention = (p: ExistingPartition) => keepFrom !== undefined && p.month < keepFrom;
  const byAge = (a: PlannedPartition, b: PlannedPartition) => a.month - b.month;
  const pick = (p: ExistingPartition): PlannedPartition => ({ name: p.name, month: p.month });
  return {
    stream: settings.name,
    thisMonth,
    window,
    keepFrom,
    premake,
    premakeBlocked,
    finalize: existing.filter((p) => p.state === 'detach_pending').map(pick).sort(byAge),
    expire: existing.filter((p) => p.state === 'attached' && pastRetention(p)).map(pick).sort(byAge),
    dispose:
      settings.retentionMode === 'detach'
        ? []
        : existing.filter((p) => p.state === 'detached' && pastRetention(p)).map(pick).sort(byAge),
    mode: settings.retentionMode,
  };
}

export interface Headroom {
  /** An attached partition holds this month. */
  readonly hasCurrent: boolean;
  /** Attached months right after this one, counted up to the first gap. */
  readonly monthsAhead: number;
}

/**
 * How far premake is ahead of `thisMonth`: the one definition, read by
 * `sluice partitions list` and the health check's partition_headroom. A gap
 * ends the count (a detached, pending or missing month): events for it wait on
 * the drain's on-demand creation, which takes a lock on the parent, exactly
 * what premaking ahead exists to avoid.
 */
export function headroomOf(existing: readonly ExistingPartition[], thisMonth: MonthIndex): Headroom {
  const attached = new Set(existing.filter((p) => p.state === 'attached').map((p) => p.month));
  let monthsAhead = 0;
  while (attached.has(thisMonth + monthsAhead + 1)) monthsAhead++;
  return { hasCurrent: attached.has(thisMonth), monthsAhead };
}

/** Nothing to do. */
export function planIsEmpty(plan: PartitionPlan): boolean {
  return plan.premake.length + plan.finalize.length + plan.expire.length + plan.dispose.length === 0;
}
