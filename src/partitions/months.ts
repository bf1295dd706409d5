/** UTC months as integers (year * 12 + month - 1): arithmetic without time zones or day overflow. */

export type MonthIndex = number;

export function monthOf(at: Date | number): MonthIndex {
  const d = new Date(at);
  return d.getUTCFullYear() * 12 + d.getUTCMonth();
}

/** 'YYYY-MM-01', the form Postgres takes as a date. */
export function monthStartDate(month: MonthIndex): string {
  const year = Math.floor(month / 12);
  const m = (month % 12) + 1;
  return `${String(year).padStart(4, '0')}-${String(m).padStart(2, '0')}-01`;
}

/** 'YYYY-MM' for humans. */
export function monthLabel(month: MonthIndex): string {
  return monthStartDate(month).slice(0, 7);
}

/** The month a partition name (<stream>_pYYYYMM) covers, or undefined. */
export function monthOfPartitionName(stream: string, name: string): MonthIndex | undefined {
  if (!name.startsWith(`${stream}_p`)) return undefined;
  const digits = name.slice(stream.length + 2);
  if (!/^\d{6}$/.test(digits)) return undefined;
  const m = Number(digits.slice(4, 6));
  if (m < 1 || m > 12) return undefined;
  return Number(digits.slice(0, 4)) * 12 + m - 1;
}

/** sluice.partition_name: <stream>_pYYYYMM. */
export function partitionName(stream: string, month: MonthIndex): string {
  return `${stream}_p${monthStartDate(month).slice(0, 7).replace('-', '')}`;
}
