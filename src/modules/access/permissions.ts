import type { BuiltInRole } from '../../db/schema.ts';
import { AppError } from '../../server/errors.ts';

/**
 * The permission catalogue. Deny by default: every route declares the permission it needs (or one
 * of the few access kinds below), the server refuses to start when one does not, and a role holds
 * only what is listed for it. Custom roles (table `roles`) pick from this same list.
 */
export const permissions = [
  'tenant:read',
  'users:read',
  'users:manage',
  'roles:manage',
  'security:manage',
  'audit:read',
  'contacts:read',
  'contacts:manage',
  'contacts:reveal',
  'contacts:export',
  'campaigns:manage',
  'calls:handle',
  'agents:monitor',
  'recordings:play',
  'privacy:manage',
] as const;

export type Permission = (typeof permissions)[number];

/**
 * What a route declares:
 * - a permission: an authenticated principal whose role (or API token scope) grants it;
 * - `authenticated`: any fully authenticated principal, acting on its own account only;
 * - `login`: a browser session that may still be finishing its login (second factor, enrolment);
 * - `public`: anyone (login, setup links, health, docs).
 */
export type RouteAccess = Permission | 'authenticated' | 'login' | 'public';

const everything: readonly Permission[] = permissions;

export const builtInRoles: Record<BuiltInRole, readonly Permission[]> = {
  owner: everything,
  admin: everything.filter((permission) => permission !== 'privacy:manage'),
  supervisor: ['tenant:read', 'users:read', 'contacts:read', 'contacts:manage', 'contacts:reveal', 'campaigns:manage', 'calls:handle', 'agents:monitor', 'recordings:play'],
  agent: ['tenant:read', 'contacts:read', 'calls:handle'],
  auditor: ['tenant:read', 'users:read', 'audit:read'],
  privacy_officer: ['tenant:read', 'users:read', 'contacts:read', 'contacts:manage', 'contacts:reveal', 'contacts:export', 'recordings:play', 'privacy:manage', 'audit:read'],
};

export const builtInRoleNames = Object.keys(builtInRoles) as BuiltInRole[];

/**
 * Roles that see more than their own work must prove a second factor; login cannot finish without
 * one (design brief, issue 4). Agents may be required too, by the tenant's policy.
 */
export const mfaRequiredRoles: ReadonlySet<BuiltInRole> = new Set(['owner', 'admin', 'supervisor', 'auditor', 'privacy_officer']);

export function isPermission(value: unknown): value is Permission {
  return (permissions as readonly unknown[]).includes(value);
}

export function isRouteAccess(value: unknown): value is RouteAccess {
  return value === 'public' || value === 'authenticated' || value === 'login' || isPermission(value);
}

/** Only catalogue names, each once, in catalogue order. */
export function normalisePermissions(names: readonly string[]): Permission[] {
  return permissions.filter((permission) => names.includes(permission));
}

/** What a user's role grants: a built-in role's permissions, or those of the custom role it names. */
export function rolePermissions(role: BuiltInRole | 'custom', customPermissions: readonly string[] | null): Permission[] {
  return role === 'custom' ? normalisePermissions(customPermissions ?? []) : [...builtInRoles[role]];
}

/** Nobody gives (to a role, a token or a provider mapping) a permission they do not hold themselves. */
export function assertGrantable(held: ReadonlySet<Permission>, wanted: readonly Permission[]): void {
  const beyond = wanted.filter((permission) => !held.has(permission));
  if (beyond.length > 0) throw new AppError('forbidden', `You cannot give permissions you do not hold: ${beyond.join(', ')}.`);
}
