/** Numbers, durations and sizes as people read them, one spelling for every command, report and log message. */

/** 1234567 → "1,234,567" (rounded). */
export function formatInt(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

/** count over ms as "12,345/s"; "—" when no time passed. */
export function formatRate(count: number, ms: number): string {
  return ms > 0 ? `${formatInt((count * 1000) / ms)}/s` : '—';
}

/** A duration for messages: "42 s", "3.5 min", "2.1 h", "4.0 d"; "never" for Infinity. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return 'never';
  if (seconds < 120) return `${Math.round(seconds)} s`;
  if (seconds < 7200) return `${(seconds / 60).toFixed(1)} min`;
  if (seconds < 172_800) return `${(seconds / 3600).toFixed(1)} h`;
  return `${(seconds / 86_400).toFixed(1)} d`;
}

/** Bytes as "512 kB", "3.2 MB", "1.25 GB" (binary units, as pg_size_pretty). */
export function formatBytes(bytes: number): string {
  if (bytes < 1024 * 1024) return `${Math.round(bytes / 1024)} kB`;
  if (bytes < 1024 ** 3) return `${(bytes / 1024 ** 2).toFixed(1)} MB`;
  return `${(bytes / 1024 ** 3).toFixed(2)} GB`;
}
