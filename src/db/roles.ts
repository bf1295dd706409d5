/**
 * `sluice roles create`: the least-privilege NOLOGIN roles, made by
 * sluice.create_roles (migrations/00014), which validates the prefix, quotes
 * every identifier and reports the statements it ran. Re-running is harmless.
 */
import type pg from 'pg';
import { SluiceError, SQLSTATE, sqlState } from '../errors.js';

/** The prefix `sluice roles create` uses when none is given. */
export const ROLE_PREFIX_DEFAULT = 'sluice_';
export const ROLE_KINDS = ['producer', 'reader', 'worker'] as const;
export type RoleKind = (typeof ROLE_KINDS)[number];

const CREATE_ROLES = `SELECT kind, role_name, created, statements FROM sluice.create_roles($1::text)`;

export interface CreatedRole {
  readonly kind: RoleKind;
  readonly role: string;
  /** false: it existed and was granted again. */
  readonly created: boolean;
  readonly statements: string[];
}

export interface CreateRolesResult {
  readonly roles: CreatedRole[];
  /** Existing streams and matviews handed to the worker role, with their grants. */
  readonly streamStatements: string[];
}

interface Row {
  kind: RoleKind | 'streams';
  role_name: string;
  created: boolean;
  statements: string[];
}

export async function createRoles(client: pg.ClientBase, prefix: string = ROLE_PREFIX_DEFAULT): Promise<CreateRolesResult> {
  let rows: Row[];
  try {
    ({ rows } = await client.query<Row>(CREATE_ROLES, [prefix]));
  } catch (err) {
    const code = sqlState(err);
    const message = (err as Error).message;
    if (code === SQLSTATE.INVALID_NAME) throw new SluiceError('invalid_role_prefix', `invalid --prefix ${JSON.stringify(prefix)}: ${message}`, { cause: err });
    if (code === SQLSTATE.INVALID_ROLE_SPECIFICATION) throw new SluiceError('role_conflict', message, { cause: err });
    if (code === SQLSTATE.INSUFFICIENT_PRIVILEGE) {
      throw new SluiceError(
        'roles_not_permitted',
        `${message}: run sluice roles create as the role that ran sluice migrate (owner of sluice's schemas), with CREATEROLE and the right to grant pg_monitor (or as a superuser)`,
        { cause: err },
      );
    }
    throw err;
  }
  return {
    roles: rows.filter((r): r is Row & { kind: RoleKind } => r.kind !== 'streams').map((r) => ({ kind: r.kind, role: r.role_name, created: r.created, statements: r.statements })),
    streamStatements: rows.filter((r) => r.kind === 'streams').flatMap((r) => r.statements),
  };
}
