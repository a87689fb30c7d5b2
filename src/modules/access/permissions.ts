import type { UserRole } from '../../db/schema.ts';

/**
 * The permission catalogue. Deny by default: every route declares the permission it needs (or
 * says `public`), the server refuses to start when one does not, and a role holds only what is
 * listed here. Issue 4 adds custom roles on top of these built-in ones.
 */
export const permissions = [
  'tenant:read',
  'users:read',
  'users:manage',
  'audit:read',
] as const;

export type Permission = (typeof permissions)[number];

/** What a route declares: a permission, or `public` for the few routes open to anyone. */
export type RouteAccess = Permission | 'public';

const everything: readonly Permission[] = permissions;

export const builtInRoles: Record<UserRole, readonly Permission[]> = {
  owner: everything,
  admin: everything,
  supervisor: ['tenant:read', 'users:read'],
  agent: ['tenant:read'],
  auditor: ['tenant:read', 'users:read', 'audit:read'],
  privacy_officer: ['tenant:read', 'users:read'],
};

export function roleGrants(role: UserRole, permission: Permission): boolean {
  return builtInRoles[role].includes(permission);
}

export function isRouteAccess(value: unknown): value is RouteAccess {
  return value === 'public' || (permissions as readonly unknown[]).includes(value);
}
