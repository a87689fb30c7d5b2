import { createHash } from 'node:crypto';
import { sql } from '../../db/kysely.ts';
import type { SessionRevokeReason, SessionStage, UserRole } from '../../db/schema.ts';
import type { TenantTransaction } from '../../db/tenant-db.ts';
import { mfaRequiredRoles, rolePermissions, type Permission } from '../access/permissions.ts';
import type { SecurityPolicy } from '../access/security-policy.ts';
import { mintTenantToken } from '../api-tokens/api-tokens.service.ts';
import { announceAuthChange } from '../access/auth-changes.ts';

/**
 * Browser sessions: opaque 256-bit tokens (`rvc_…`) in an HttpOnly, Secure, SameSite=Strict
 * cookie with the __Host- prefix (no Domain, Path=/, so no subdomain can set or read it); the
 * database holds only their SHA-256. Idle and absolute timeouts come from the tenant's policy.
 * Every stage change of a login (password → second factor → full access) and every step-up issues
 * a new token and ends the old one (rotation), so a token seen before login finished is useless.
 */
export const SESSION_COOKIE = '__Host-rv_session';
export const DEVICE_COOKIE = '__Host-rv_device';
/** How recently the user must have proved who they are for a sensitive change. */
export const STEP_UP_MS = 5 * 60_000;
/** last_seen_at is written at most this often per session (idle timeout granularity). */
export const TOUCH_INTERVAL_MS = 60_000;
/** A trusted-device cookie lasts this long (src/modules/auth/login.service.ts). */
export const TRUSTED_DEVICE_MAX_AGE_S = 90 * 86_400;
/** How long a login may stay at its second-factor step. */
export const PENDING_STAGE_MS = 10 * 60_000;

/**
 * The CSRF token of a session: a hash of the session token under a fixed label. The page reads it
 * from the login answer or GET /api/v1/auth/session and sends it as `x-csrf-token` with every
 * change; another origin can neither read it nor compute it.
 */
export function csrfTokenFor(sessionToken: string): string {
  return createHash('sha256').update('ringvakt/csrf/v1\u0000').update(sessionToken).digest('base64url');
}

/** What a user may do now: role, permissions, and whether a second factor is owed. */
export type UserAccess = {
  role: UserRole;
  customRoleId: string | null;
  status: 'invited' | 'active' | 'disabled';
  permissions: Permission[];
  mfaRequired: boolean;
  hasTotp: boolean;
  hasPasskey: boolean;
};

export async function loadUserAccess(trx: TenantTransaction, userId: string, policy: SecurityPolicy): Promise<UserAccess | undefined> {
  const row = await trx
    .selectFrom('users')
    .leftJoin('roles', (join) => join.onRef('roles.tenant_id', '=', 'users.tenant_id').onRef('roles.id', '=', 'users.custom_role_id'))
    .select([
      'users.role',
      'users.status',
      'users.custom_role_id',
      sql<boolean>`users.totp_secret_ciphertext IS NOT NULL`.as('has_totp'),
      sql<boolean>`EXISTS (SELECT 1 FROM webauthn_credentials w WHERE w.tenant_id = users.tenant_id AND w.user_id = users.id)`.as('has_passkey'),
      'roles.permissions',
      'roles.requires_mfa',
    ])
    .where('users.id', '=', userId)
    .executeTakeFirst();
  if (!row) return undefined;
  const permissions = rolePermissions(row.role, row.permissions);
  const roleNeedsMfa = row.role === 'custom' ? row.requires_mfa !== false : mfaRequiredRoles.has(row.role);
  return {
    role: row.role,
    customRoleId: row.custom_role_id,
    status: row.status,
    permissions,
    mfaRequired: roleNeedsMfa || policy.mfaRequiredForAll,
    hasTotp: row.has_totp,
    hasPasskey: row.has_passkey,
  };
}

/** The stage a login reaches once the password (or single sign-on) is proven. */
export function stageAfterFirstFactor(access: UserAccess): SessionStage {
  if (access.hasTotp || access.hasPasskey) return 'mfa';
  return access.mfaRequired ? 'mfa_enrollment' : 'active';
}

export type NewSession = { id: string; token: string; expiresAt: Date };

export async function createSession(
  trx: TenantTransaction,
  input: { userId: string; stage: SessionStage; methods: string[]; policy: SecurityPolicy; sourceIp?: string; userAgent?: string; now?: Date },
): Promise<NewSession> {
  const now = input.now ?? new Date();
  const lifetime = input.stage === 'active' ? input.policy.sessionAbsoluteHours * 3600_000 : PENDING_STAGE_MS;
  const expiresAt = new Date(now.getTime() + lifetime);
  const { token, hash } = mintTenantToken('rvc', trx.tenantId);
  const row = await trx
    .insertInto('sessions')
    .values({
      user_id: input.userId,
      token_hash: hash,
      stage: input.stage,
      methods: input.methods,
      created_at: now,
      authenticated_at: now,
      last_seen_at: now,
      expires_at: expiresAt,
      source_ip: input.sourceIp ?? null,
      user_agent: input.userAgent ? input.userAgent.slice(0, 300) : null,
    })
    .returning('id')
    .executeTakeFirstOrThrow();
  return { id: row.id, token, expiresAt };
}

/**
 * Moves a session on (a second factor proven, a step-up done): a new token replaces the old one
 * under the same session id. Reaching 'active' starts the absolute lifetime from the policy.
 */
export async function advanceSession(
  trx: TenantTransaction,
  input: { sessionId: string; stage: SessionStage; method: string; policy: SecurityPolicy; now?: Date },
): Promise<NewSession> {
  const now = input.now ?? new Date();
  const current = await trx
    .selectFrom('sessions')
    .select(['stage', 'methods', 'created_at', 'expires_at'])
    .where('id', '=', input.sessionId)
    .where('revoked_at', 'is', null)
    .forUpdate()
    .executeTakeFirstOrThrow();
  const { token, hash } = mintTenantToken('rvc', trx.tenantId);
  announceAuthChange(trx);
  const expiresAt =
    current.stage !== 'active' && input.stage === 'active'
      ? new Date(now.getTime() + input.policy.sessionAbsoluteHours * 3600_000)
      : current.expires_at;
  const methods = current.methods.includes(input.method) ? current.methods : [...current.methods, input.method].slice(-5);
  await trx
    .updateTable('sessions')
    .set({ token_hash: hash, stage: input.stage, methods, authenticated_at: now, last_seen_at: now, expires_at: expiresAt })
    .where('id', '=', input.sessionId)
    .execute();
  return { id: input.sessionId, token, expiresAt };
}

/** Ends sessions: one, or all of a user's (optionally but one). Returns how many ended. */
export async function revokeSessions(
  trx: TenantTransaction,
  target: { sessionId: string } | { userId: string; exceptSessionId?: string },
  reason: SessionRevokeReason,
): Promise<number> {
  let query = trx.updateTable('sessions').set({ revoked_at: new Date(), revoke_reason: reason }).where('revoked_at', 'is', null);
  if ('sessionId' in target) {
    query = query.where('id', '=', target.sessionId);
  } else {
    query = query.where('user_id', '=', target.userId);
    if (target.exceptSessionId) query = query.where('id', '!=', target.exceptSessionId);
  }
  const result = await query.executeTakeFirst();
  announceAuthChange(trx);
  return Number(result.numUpdatedRows);
}

export type SessionView = {
  id: string;
  createdAt: Date;
  lastSeenAt: Date;
  expiresAt: Date;
  methods: string[];
  sourceIp: string | null;
  userAgent: string | null;
};

/** A user's live sessions, newest first. */
export async function listSessions(trx: TenantTransaction, userId: string, policy: SecurityPolicy): Promise<SessionView[]> {
  const idleCutoff = new Date(Date.now() - policy.sessionIdleMinutes * 60_000);
  const rows = await trx
    .selectFrom('sessions')
    .select(['id', 'created_at', 'last_seen_at', 'expires_at', 'methods', sql<string | null>`host(source_ip)`.as('source_ip'), 'user_agent'])
    .where('user_id', '=', userId)
    .where('revoked_at', 'is', null)
    .where('stage', '=', 'active')
    .where('expires_at', '>', new Date())
    .where('last_seen_at', '>', idleCutoff)
    .orderBy('created_at', 'desc')
    .limit(200)
    .execute();
  return rows.map((row) => ({
    id: row.id,
    createdAt: row.created_at,
    lastSeenAt: row.last_seen_at,
    expiresAt: row.expires_at,
    methods: row.methods,
    sourceIp: row.source_ip,
    userAgent: row.user_agent,
  }));
}

export type SessionRow = {
  id: string;
  userId: string;
  stage: SessionStage;
  authenticatedAt: Date;
  lastSeenAt: Date;
  expiresAt: Date;
};

/** A live session by token hash (not revoked, not past its absolute expiry, user and tenant active). */
export async function findSession(trx: TenantTransaction, hash: Buffer): Promise<SessionRow | undefined> {
  return trx
    .selectFrom('sessions')
    .innerJoin('users', (join) => join.onRef('users.tenant_id', '=', 'sessions.tenant_id').onRef('users.id', '=', 'sessions.user_id'))
    .innerJoin('tenants', 'tenants.id', 'sessions.tenant_id')
    .select([
      'sessions.id as id',
      'sessions.user_id as userId',
      'sessions.stage as stage',
      'sessions.authenticated_at as authenticatedAt',
      'sessions.last_seen_at as lastSeenAt',
      'sessions.expires_at as expiresAt',
    ])
    .where('sessions.token_hash', '=', hash)
    .where('sessions.revoked_at', 'is', null)
    .where('sessions.expires_at', '>', new Date())
    .where('users.status', '=', 'active')
    .where('tenants.status', '=', 'active')
    .executeTakeFirst();
}
