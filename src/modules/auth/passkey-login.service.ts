import type { AuthenticationResponseJSON } from '@simplewebauthn/server';
import type { TenantDb } from '../../db/tenant-db.ts';
import { recordAuditEvent } from '../../audit/audit-event.ts';
import { AppError } from '../../server/errors.ts';
import { addressRefusal, loadSecurityPolicy } from '../access/security-policy.ts';
import { mintTenantToken } from '../api-tokens/api-tokens.service.ts';
import { auditSession, padFrom, type AuthDeps, type LoginResult, type RequestContext } from './login.service.ts';
import { verifyPasskey, type RelyingParty } from './passkeys.ts';
import { advanceSession, createSession, loadUserAccess, TRUSTED_DEVICE_MAX_AGE_S, type NewSession } from './sessions.ts';

/**
 * Passwordless login with a passkey. A discoverable credential with user verification proves
 * possession and a PIN or biometric at once: the session is active at once. Failures answer like
 * failed passwords (the same code, after the same floor).
 */
export async function passkeyLogin(
  deps: AuthDeps & { relyingParty: RelyingParty },
  input: { tenant: string; response: AuthenticationResponseJSON } & RequestContext,
): Promise<LoginResult> {
  const started = performance.now();
  const fail = async (): Promise<never> => {
    await padFrom(started);
    throw new AppError('login_failed');
  };
  const tenantId = await deps.systemDb.tenantIdBySlug(input.tenant);
  if (!tenantId) return fail();
  const tenantDb = deps.forTenant(tenantId);
  const now = new Date();
  const result = await tenantDb.transaction(async (trx) => {
    const policy = await loadSecurityPolicy(trx);
    if (addressRefusal(policy, input.sourceIp)) return 'ip_denied' as const;
    const proven = await verifyPasskey(trx, deps.relyingParty, { purpose: 'login', response: input.response });
    const access = proven ? await loadUserAccess(trx, proven.userId, policy) : undefined;
    if (!proven || !access || access.status !== 'active') {
      await recordAuditEvent(trx, {
        action: 'auth.login',
        outcome: 'failed',
        actor: proven ? { type: 'user', id: proven.userId } : { type: 'anonymous' },
        sourceIp: input.sourceIp,
        requestId: input.requestId,
        details: { method: 'passkey', reason: proven ? 'user_not_active' : 'passkey_not_verified' },
      });
      return undefined;
    }
    const session = await createSession(trx, {
      userId: proven.userId,
      stage: 'active',
      methods: ['passkey'],
      policy,
      sourceIp: input.sourceIp,
      ...(input.userAgent ? { userAgent: input.userAgent } : {}),
      now,
    });
    const { token: deviceToken, hash } = mintTenantToken('rvd', tenantId);
    await trx
      .insertInto('trusted_devices')
      .values({ user_id: proven.userId, token_hash: hash, expires_at: new Date(now.getTime() + TRUSTED_DEVICE_MAX_AGE_S * 1000) })
      .execute();
    await recordAuditEvent(trx, {
      action: 'auth.login',
      outcome: 'success',
      actor: { type: 'user', id: proven.userId },
      target: { type: 'user', id: proven.userId },
      sourceIp: input.sourceIp,
      requestId: input.requestId,
      details: { method: 'passkey', stage: 'active', session: session.id },
    });
    return { userId: proven.userId, stage: 'active' as const, session, deviceToken };
  });
  if (result === 'ip_denied') {
    await padFrom(started);
    throw new AppError('ip_not_allowed');
  }
  return result ?? fail();
}

/** A passkey as the second factor of a session at stage 'mfa', or for a step-up. */
export async function provePasskeyFactor(
  deps: AuthDeps & { relyingParty: RelyingParty },
  tenantDb: TenantDb,
  input: { sessionId: string; userId: string; response: AuthenticationResponseJSON; purpose: 'login' | 'step_up' } & RequestContext,
): Promise<NewSession> {
  const action = input.purpose === 'login' ? 'auth.mfa_verify' : 'auth.reauthenticate';
  const session = await tenantDb.transaction(async (trx) => {
    const proven = await verifyPasskey(trx, deps.relyingParty, { purpose: 'mfa', userId: input.userId, sessionId: input.sessionId, response: input.response });
    if (!proven) return undefined;
    const policy = await loadSecurityPolicy(trx);
    const advanced = await advanceSession(trx, { sessionId: input.sessionId, stage: 'active', method: 'passkey', policy });
    await auditSession(trx, input, action, 'success', { method: 'passkey' });
    return advanced;
  });
  if (!session) {
    await tenantDb.transaction((trx) => auditSession(trx, input, action, 'failed', { method: 'passkey' }));
    throw new AppError('passkey_invalid');
  }
  return session;
}
