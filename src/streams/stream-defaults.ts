/**
 * A stream's settings when created without them, and the ranges
 * sluice.streams accepts. The SQL keeps its own copies (the column DEFAULTs
 * and CHECKs of migrations/00001, the coalesce() defaults of
 * sluice.create_stream in migrations/00002; migrations are immutable), so
 * test/one-truth.test.ts reads them back from the catalog and from a stream
 * created with '{}' options and fails when they differ from these.
 */

export interface StreamSettings {
  readonly premakeMonths: number;
  readonly retentionMonths: number | null;
  readonly retentionMode: 'detach' | 'drop' | 'archive';
  readonly maxPastMonths: number;
  readonly drainBatchRows: number;
  readonly maxEventBytes: number;
  readonly requireEventId: boolean;
}

export const STREAM_DEFAULTS: StreamSettings = Object.freeze({
  /** Future monthly partitions kept ready. */
  premakeMonths: 3,
  /** null: partitions are kept forever. */
  retentionMonths: null,
  retentionMode: 'detach',
  /** How late an event may arrive, in months. */
  maxPastMonths: 12,
  /** Rows per drain transaction. */
  drainBatchRows: 10_000,
  /** Largest accepted event as sent (raw text, else its JSON). */
  maxEventBytes: 65_536,
  /** false: a missing event_id gets a generated UUID (retries then do not collapse). */
  requireEventId: true,
});

/** Inclusive bounds of the numeric settings (sluice.streams CHECK constraints). */
export const STREAM_SETTING_RANGES = Object.freeze({
  premakeMonths: { min: 1, max: 36 },
  retentionMonths: { min: 1, max: 1200 },
  maxPastMonths: { min: 0, max: 1200 },
  drainBatchRows: { min: 1, max: 1_000_000 },
  maxEventBytes: { min: 64, max: 268_435_456 },
} as const satisfies Partial<Record<keyof StreamSettings, { min: number; max: number }>>);

/** The sluice.streams column of each setting. */
export const STREAM_SETTING_COLUMNS = Object.freeze({
  premakeMonths: 'premake_months',
  retentionMonths: 'retention_months',
  retentionMode: 'retention_mode',
  maxPastMonths: 'max_past_months',
  drainBatchRows: 'drain_batch_rows',
  maxEventBytes: 'max_event_bytes',
  requireEventId: 'require_event_id',
} as const satisfies Record<keyof StreamSettings, string>);
