/**
 * pg type parsers for json/jsonb that keep the raw text when it matters.
 *
 * graphile-worker reads a job's payload (a `json` column) through the pool
 * sluice gives it, and node-pg parses it with JSON.parse before the task sees
 * it: a number a double would change is already changed. These parsers still
 * return JSON.parse's object (so every other task on the pool sees what it
 * always saw), and — only when the text holds such a number — remember the
 * text against that object, so `sluice_ingest` can re-read it exactly.
 * A WeakMap: the text lives exactly as long as the parsed payload.
 */
import pg from 'pg';
import { hasInexactNumber } from '../codec/exact-json.js';

const JSON_OID = 114;
const JSONB_OID = 3802;

const rawTexts = new WeakMap<object, string>();

function parseJsonKeepingRaw(text: string): unknown {
  const value = JSON.parse(text) as unknown;
  if (value !== null && typeof value === 'object' && hasInexactNumber(text)) rawTexts.set(value, text);
  return value;
}

/** The source text of a json/jsonb value read through a pool using these types, when it holds inexact numbers. */
export function rawJsonOf(value: unknown): string | undefined {
  return value !== null && typeof value === 'object' ? rawTexts.get(value) : undefined;
}

/** The `types` option of a pg Pool/Client: pg's own parsers, json and jsonb replaced. */
export const JSON_KEEPING_TYPES = {
  getTypeParser(oid: number, format?: 'text' | 'binary'): (value: string) => unknown {
    if ((oid === JSON_OID || oid === JSONB_OID) && format !== 'binary') return parseJsonKeepingRaw;
    return (pg.types.getTypeParser as (oid: number, format?: string) => (value: string) => unknown)(oid, format);
  },
} as unknown as pg.CustomTypesConfig;
