/**
 * `--index` specs: `col[,col…] [WHERE predicate]`. The predicate is parsed
 * with a small, closed grammar and re-rendered with quoted identifiers and
 * escaped literals, so what reaches CREATE INDEX is never the user's text.
 *
 *   predicate := disj
 *   disj      := conj ("OR" conj)*
 *   conj      := unary ("AND" unary)*
 *   unary     := "NOT" unary | "(" disj ")" | comparison
 *   comparison:= column "IS" ["NOT"] "NULL"
 *              | column op literal
 *              | column ["NOT"] "IN" "(" literal ("," literal)* ")"
 *   op        := = | <> | != | < | <= | > | >=
 *   literal   := number | 'string' | TRUE | FALSE
 */
import pg from 'pg';
import { SluiceError } from '../errors.js';
import { assertColumnName, COLUMN_NAME_PATTERN, quoteIdent } from './names.js';

export interface IndexSpec {
  columns: string[];
  /** Rendered, safe SQL predicate, or undefined for a plain index. */
  predicate: string | undefined;
}

type Token =
  | { kind: 'ident'; text: string }
  | { kind: 'number'; text: string }
  | { kind: 'string'; text: string }
  | { kind: 'op'; text: string }
  | { kind: 'punct'; text: string };

const KEYWORDS = new Set(['and', 'or', 'not', 'is', 'null', 'in', 'true', 'false']);

function fail(spec: string, why: string): never {
  throw new SluiceError('invalid_index', `invalid --index ${JSON.stringify(spec)}: ${why}`);
}

function tokenize(spec: string, text: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < text.length) {
    const rest = text.slice(i);
    let m: RegExpExecArray | null;
    if ((m = /^\s+/.exec(rest))) {
      i += m[0].length;
    } else if ((m = /^[A-Za-z_][A-Za-z0-9_]*/.exec(rest))) {
      tokens.push({ kind: 'ident', text: m[0] });
      i += m[0].length;
    } else if ((m = /^-?\d+(\.\d+)?([eE][+-]?\d+)?/.exec(rest))) {
      tokens.push({ kind: 'number', text: m[0] });
      i += m[0].length;
    } else if ((m = /^'((?:[^']|'')*)'/.exec(rest))) {
      tokens.push({ kind: 'string', text: (m[1] ?? '').replace(/''/g, "'") });
      i += m[0].length;
    } else if ((m = /^(<=|>=|<>|!=|=|<|>)/.exec(rest))) {
      tokens.push({ kind: 'op', text: m[0] === '!=' ? '<>' : m[0] });
      i += m[0].length;
    } else if ((m = /^[(),]/.exec(rest))) {
      tokens.push({ kind: 'punct', text: m[0] });
      i += 1;
    } else {
      fail(spec, `unexpected ${JSON.stringify(rest[0])} at position ${i + 1}`);
    }
  }
  return tokens;
}

class PredicateParser {
  private pos = 0;
  constructor(
    private readonly spec: string,
    private readonly tokens: Token[],
  ) {}

  parse(): string {
    const sql = this.disjunction();
    if (this.pos < this.tokens.length) fail(this.spec, `unexpected ${JSON.stringify(this.tokens[this.pos]?.text)}`);
    return sql;
  }

  private peekKeyword(word: string): boolean {
    const t = this.tokens[this.pos];
    return t?.kind === 'ident' && t.text.toLowerCase() === word;
  }

  private expectKeyword(word: string): void {
    if (!this.peekKeyword(word)) fail(this.spec, `expected ${word.toUpperCase()}`);
    this.pos++;
  }

  private disjunction(): string {
    const parts = [this.conjunction()];
    while (this.peekKeyword('or')) {
      this.pos++;
      parts.push(this.conjunction());
    }
    return parts.length === 1 ? (parts[0] as string) : `(${parts.join(' OR ')})`;
  }

  private conjunction(): string {
    const parts = [this.unary()];
    while (this.peekKeyword('and')) {
      this.pos++;
      parts.push(this.unary());
    }
    return parts.length === 1 ? (parts[0] as string) : `(${parts.join(' AND ')})`;
  }

  private unary(): string {
    if (this.peekKeyword('not')) {
      this.pos++;
      return `(NOT ${this.unary()})`;
    }
    const t = this.tokens[this.pos];
    if (t?.kind === 'punct' && t.text === '(') {
      this.pos++;
      const inner = this.disjunction();
      const close = this.tokens[this.pos];
      if (close?.kind !== 'punct' || close.text !== ')') fail(this.spec, 'missing )');
      this.pos++;
      return inner;
    }
    return this.comparison();
  }

  private column(): string {
    const t = this.tokens[this.pos];
    if (t?.kind !== 'ident' || KEYWORDS.has(t.text.toLowerCase()) || !COLUMN_NAME_PATTERN.test(t.text)) {
      fail(this.spec, `expected a column name, got ${JSON.stringify(t?.text ?? 'end of input')}`);
    }
    this.pos++;
    return quoteIdent(t.text);
  }

  private literal(): string {
    const t = this.tokens[this.pos];
    this.pos++;
    if (t?.kind === 'number') return t.text;
    if (t?.kind === 'string') return pg.escapeLiteral(t.text);
    if (t?.kind === 'ident' && ['true', 'false'].includes(t.text.toLowerCase())) return t.text.toUpperCase();
    return fail(this.spec, `expected a literal (number, 'string', TRUE or FALSE), got ${JSON.stringify(t?.text ?? 'end of input')}`);
  }

  private comparison(): string {
    const column = this.column();
    if (this.peekKeyword('is')) {
      this.pos++;
      const negated = this.peekKeyword('not');
      if (negated) this.pos++;
      this.expectKeyword('null');
      return `${column} IS ${negated ? 'NOT ' : ''}NULL`;
    }
    const negated = this.peekKeyword('not');
    if (negated) this.pos++;
    if (this.peekKeyword('in')) {
      this.pos++;
      const open = this.tokens[this.pos++];
      if (open?.kind !== 'punct' || open.text !== '(') fail(this.spec, 'expected ( after IN');
      const items = [this.literal()];
      for (;;) {
        const t = this.tokens[this.pos++];
        if (t?.kind === 'punct' && t.text === ',') items.push(this.literal());
        else if (t?.kind === 'punct' && t.text === ')') break;
        else fail(this.spec, 'expected , or ) in IN list');
      }
      return `${column} ${negated ? 'NOT ' : ''}IN (${items.join(', ')})`;
    }
    if (negated) fail(this.spec, 'expected IN after NOT');
    const op = this.tokens[this.pos++];
    if (op?.kind !== 'op') fail(this.spec, `expected a comparison operator after ${column}`);
    return `${column} ${op.text} ${this.literal()}`;
  }
}

/** Parse `col[,col…] [WHERE predicate]` into columns and a safe rendered predicate. */
export function parseIndexSpec(spec: string): IndexSpec {
  const match = /^(.*?)(?:\s+where\s+(.+))?$/is.exec(spec.trim());
  const columnPart = match?.[1]?.trim() ?? '';
  if (!columnPart) fail(spec, 'name at least one column');
  const columns = columnPart.split(',').map((c) => c.trim());
  for (const c of columns) {
    try {
      if (!['event_id', 'occurred_at', 'received_at', 'drained_at'].includes(c)) assertColumnName(c);
    } catch (err) {
      fail(spec, (err as Error).message);
    }
  }
  const where = match?.[2]?.trim();
  const predicate = where ? new PredicateParser(spec, tokenize(spec, where)).parse() : undefined;
  return { columns, predicate };
}
