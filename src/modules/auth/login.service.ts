import { setTimeout as sleep } from 'node:timers/promises';
import type { SessionStage } from '../../db/schema.ts';
import type { SystemDb } from '../../db/system-db.ts';
import type { TenantDb, TenantTransaction } from '../../db/tenant-db.ts';
import type { FieldCipher } from '../../crypto/field-cipher.ts';
import { recordAuditEvent } from '../../audit/audit-event.ts';
import { AppError } from '../../server/errors.ts';
import { decoyPasswordHash, hashPassword, needsRehash, verifyPassword } from '../access/passwords.ts';
import { addressRefusal, loadSecurityPolicy, type SecurityPolicy } from '../access/security-policy.ts';
import { mintTenantToken, parseTenantToken } from '../api-tokens/api-tokens.service.ts';
import type { Mailer } from '../mail/mailer.ts';
import { findUserByEmail, findUserById, normaliseEmail } from '../users/users.repo.ts';
import { advanceSession, createSession, loadUserAccess, revokeSessions, stageAfterFirstFactor, TRUSTED_DEVICE_MAX_AGE_S, type NewSession } from './sessions.ts';
import { checkSecondFactorCode, useRecoveryCode, verifyTotp } from './mfa.ts';
import { sql } from '../../db/kysely.ts';
import { afterFailure, DEVICE_LIMITS, forgiveAccountAttempt, isLocked, takeAccountAttempt } from './throttle.ts';

/**
 * Password login, second factors and step-up.
 *
 * Every failed login answers the same `login_failed`, no sooner than FAILURE_FLOOR_MS after it
 * began, so neither the answer nor its timing tells an unknown address from a wrong password or a
 * locked account: an unknown address costs one argon2id verification against a decoy hash, like a
 * wrong password; a locked one costs none (the floor, far above one verification, hides that). The account holder learns of a lockout by
 * e-mail, and — on a browser they have signed in from before (trusted device) — in the answer.
 */
export const FAILURE_FLOOR_MS = 350;
export const THROTTLE_INDEX = 'auth.throttle';

export type AuthDeps = {
  systemDb: SystemDb;
  forTenant(tenantId: string): TenantDb;
  cipher: FieldCipher;
  mailer: Mailer;
};

export type RequestContext = { sourceIp: string; requestId: string; userAgent?: string | undefined };

export type LoginResult = { userId: string; stage: SessionStage; session: NewSession; deviceToken: string };

/** An identity event about one session of one user (second factors, step-up). */
export function auditSession(
  trx: TenantTransaction,
  input: { userId: string; sessionId: string } & RequestContext,
  action: 'auth.mfa_verify' | 'auth.reauthenticate',
  outcome: 'success' | 'failed',
  details?: Record<string, string | number | boolean | null>,
): Promise<void> {
  return recordAuditEvent(trx, {
    action,
    outcome,
    actor: { type: 'user', id: input.userId },
    target: { type: 'session', id: input.sessionId },
    sourceIp: input.sourceIp,
    requestId: input.requestId,
    ...(details ? { details } : {}),
  });
}

export async function padFrom(started: number): Promise<void> {
  const left = FAILURE_FLOOR_MS - (performance.now() - started);
  if (left > 0) await sleep(left);
}

const throttleSubject = (trx: TenantTransaction, cipher: FieldCipher, email: string) => cipher.blindIndex(trx, THROTTLE_INDEX, normaliseEmail(email), 32);

type FirstStep =
  | { kind: 'ip_denied' }
  | { kind: 'device_locked'; until: Date; userId: string }
  | { kind: 'check'; userId: string | undefined; passwordHash: string | undefined; subject: Buffer; blocked: boolean; trustedDeviceId: string | undefined; policy: SecurityPolicy };

export async function login(
  deps: AuthDeps,
  input: { tenant: string; email: string; password: string; deviceToken: string | undefined } & RequestContext,
): Promise<LoginResult> {
  const started = performance.now();
  const now = new Date();
  const fail = async (): Promise<never> => {
    await padFrom(started);
    throw new AppError('login_failed');
  };
  const tenantId = await deps.systemDb.tenantIdBySlug(input.tenant);
  if (!tenantId) {
    // Like a wrong password (one decoy verification), unless this network is locked out already.
    const source = await deps.systemDb.takeSourceAttempt(input.sourceIp, now);
    if (!source.blocked) await verifyPassword(await decoyPasswordHash(), input.password);
    return fail();
  }
  const tenantDb = deps.forTenant(tenantId);
  const device = input.deviceToken ? parseTenantToken('rvd', input.deviceToken) : undefined;
  const audit = (trx: TenantTransaction, outcome: 'success' | 'failed' | 'denied', userId: string | undefined, subject: Buffer | undefined, details: Record<string, string | number | boolean | null>) =>
    recordAuditEvent(trx, {
      action: 'auth.login',
      outcome,
      actor: userId ? { type: 'user', id: userId } : { type: 'anonymous' },
      // An unknown account is named by its keyed hash, never by the address tried.
      target: userId ? { type: 'user', id: userId } : { type: 'account', id: (subject ?? Buffer.alloc(0)).toString('hex').slice(0, 32) },
      sourceIp: input.sourceIp,
      requestId: input.requestId,
      details,
    });

  const first: FirstStep = await tenantDb.transaction(async (trx) => {
    const policy = await loadSecurityPolicy(trx);
    const subject = await throttleSubject(trx, deps.cipher, input.email);
    const refusal = addressRefusal(policy, input.sourceIp);
    if (refusal) {
      await audit(trx, 'denied', undefined, subject, { reason: refusal });
      return { kind: 'ip_denied' };
    }
    const user = await findUserByEmail(trx, deps.cipher, input.email);
    const active = user?.status === 'active' ? user : undefined;
    const trusted =
      active && device && device.tenantId === tenantId
        ? await trx
            .selectFrom('trusted_devices')
            .select(['id', 'failures', 'locked_until', 'created_at'])
            .where('token_hash', '=', device.hash)
            .where('user_id', '=', active.id)
            .where('expires_at', '>', now)
            .forUpdate()
            .executeTakeFirst()
        : undefined;
    let blocked: boolean;
    if (trusted && active) {
      // A browser this user has signed in from: its own counter instead of the account's.
      const state = { windowStartedAt: trusted.created_at, failures: 0, consecutive: trusted.failures, lockedUntil: trusted.locked_until };
      if (isLocked(state, now)) {
        await audit(trx, 'failed', active.id, subject, { reason: 'device_locked' });
        return { kind: 'device_locked', until: trusted.locked_until ?? now, userId: active.id };
      }
      const next = afterFailure(state, now, DEVICE_LIMITS);
      await trx.updateTable('trusted_devices').set({ failures: next.consecutive, locked_until: next.lockedUntil }).where('id', '=', trusted.id).execute();
      blocked = false;
    } else {
      const check = await takeAccountAttempt(trx, subject, now);
      blocked = check.blocked;
      const notifiedRecently = check.notifiedAt !== null && now.getTime() - check.notifiedAt.getTime() < 3600_000;
      if (check.justLocked && active && !notifiedRecently) {
        await deps.mailer.queue(trx, 'account_locked', {
          to: active.email,
          subject: 'Sign-ins to your Ringvakt account are paused',
          text:
            `After repeated failed sign-in attempts, sign-ins to your account in ${input.tenant} are paused until ` +
            `${(check.state.lockedUntil ?? now).toISOString()} (UTC), except from browsers you have signed in from before.\n\n` +
            'If these attempts were not yours, someone may be trying your password: tell your administrator.\n',
        });
        await trx.updateTable('account_throttle').set({ lock_notified_at: now }).where('subject', '=', subject).execute();
        await recordAuditEvent(trx, {
          action: 'auth.lockout',
          outcome: 'success',
          actor: { type: 'system' },
          target: { type: 'user', id: active.id },
          sourceIp: input.sourceIp,
          requestId: input.requestId,
          details: { until: (check.state.lockedUntil ?? now).toISOString(), failuresThisHour: check.state.failures },
        });
      }
    }
    const stored = active ? await trx.selectFrom('users').select('password_hash').where('id', '=', active.id).executeTakeFirst() : undefined;
    return { kind: 'check', userId: active?.id, passwordHash: stored?.password_hash ?? undefined, subject, blocked, trustedDeviceId: trusted?.id, policy };
  });

  if (first.kind === 'ip_denied') {
    await padFrom(started);
    throw new AppError('ip_not_allowed');
  }
  if (first.kind === 'device_locked') {
    await padFrom(started);
    throw new AppError('account_locked', `Too many failed attempts from this browser. Try again after ${first.until.toISOString()}.`);
  }
  const sourceBlocked = first.trustedDeviceId ? false : (await deps.systemDb.takeSourceAttempt(input.sourceIp, now)).blocked;
  // A refused attempt (locked account or network) checks no password at all, so an attacker cannot
  // spend our CPU on locked accounts; its answer still waits for the floor like every failure.
  const refused = first.blocked || sourceBlocked;
  const storedHash = refused ? undefined : first.passwordHash;
  const passwordOk =
    storedHash !== undefined ? await verifyPassword(storedHash, input.password) : !refused && (await verifyPassword(await decoyPasswordHash(), input.password)) && false;

  if (!passwordOk || !first.userId) {
    const reason = !first.userId ? 'unknown_account' : first.blocked ? 'account_locked' : sourceBlocked ? 'source_locked' : 'wrong_password';
    await tenantDb.transaction((trx) => audit(trx, 'failed', first.userId, first.subject, { reason }));
    return fail();
  }

  const userId = first.userId;
  const result = await tenantDb.transaction(async (trx) => {
    if (first.trustedDeviceId) {
      await trx.updateTable('trusted_devices').set({ failures: 0, locked_until: null }).where('id', '=', first.trustedDeviceId).execute();
    } else {
      await forgiveAccountAttempt(trx, first.subject, now);
    }
    if (needsRehash(storedHash ?? '')) {
      await trx.updateTable('users').set({ password_hash: await hashPassword(input.password) }).where('id', '=', userId).execute();
    }
    const access = await loadUserAccess(trx, userId, first.policy);
    if (!access || access.status !== 'active') return undefined;
    const stage = stageAfterFirstFactor(access);
    const session = await createSession(trx, {
      userId,
      stage,
      methods: ['password'],
      policy: first.policy,
      sourceIp: input.sourceIp,
      ...(input.userAgent ? { userAgent: input.userAgent } : {}),
      now,
    });
    // A browser that signed in is trusted for this user from now on (its own lockout counter).
    const { token: deviceToken, hash } = mintTenantToken('rvd', tenantId);
    await trx.deleteFrom('trusted_devices').where('user_id', '=', userId).where('expires_at', '<=', now).execute();
    await trx
      .insertInto('trusted_devices')
      .values({ user_id: userId, token_hash: hash, expires_at: new Date(now.getTime() + TRUSTED_DEVICE_MAX_AGE_S * 1000) })
      .execute();
    if (first.trustedDeviceId) await trx.deleteFrom('trusted_devices').where('id', '=', first.trustedDeviceId).execute();
    await audit(trx, 'success', userId, undefined, { stage, session: session.id });
    return { userId, stage, session, deviceToken };
  });
  if (!sourceBlocked && !first.trustedDeviceId) await deps.systemDb.forgiveSourceAttempt(input.sourceIp, now);
  if (!result) return fail();
  return result;
}

/**
 * A second factor for a session at stage 'mfa': a TOTP code or a recovery code. Failures count
 * against the account like failed passwords (and lock it alike); success rotates the session.
 */
export async function proveSecondFactor(
  deps: AuthDeps,
  tenantDb: TenantDb,
  input: { sessionId: string; userId: string; method: 'totp' | 'recovery_code'; code: string; purpose: 'login' | 'step_up' } & RequestContext,
): Promise<NewSession> {
  const now = new Date();
  const action = input.purpose === 'login' ? 'auth.mfa_verify' : 'auth.reauthenticate';
  const outcome = await tenantDb.transaction(async (trx) => {
    const checked = await checkSecondFactorCode(
      trx,
      input.userId,
      () => (input.method === 'totp' ? verifyTotp(trx, deps.cipher, input.userId, input.code) : useRecoveryCode(trx, input.userId, input.code)),
      now,
    );
    if (!checked.ok) {
      await auditSession(trx, input, action, 'failed', { method: input.method, reason: checked.lockedUntil ? 'second_factor_locked' : 'wrong_code' });
      return checked;
    }
    const policy = await loadSecurityPolicy(trx);
    const session = await advanceSession(trx, { sessionId: input.sessionId, stage: 'active', method: input.method, policy, now });
    await auditSession(trx, input, action, 'success', { method: input.method });
    return { ok: true as const, session };
  });
  if (!outcome.ok) {
    // The caller has proved the password already: telling them of the lock gives nothing away.
    if (outcome.lockedUntil) throw new AppError('account_locked', `Too many wrong codes. Try again after ${outcome.lockedUntil.toISOString()}, or use a passkey.`);
    throw new AppError('mfa_code_invalid');
  }
  return outcome.session;
}

/**
 * Step-up: the signed-in user proves again who they are — the password, and a TOTP code when they
 * have one — and the session's authentication time moves to now (with a new token).
 */
export async function reauthenticate(
  deps: AuthDeps,
  tenantDb: TenantDb,
  input: { sessionId: string; userId: string; password: string; code: string | undefined } & RequestContext,
): Promise<NewSession> {
  const started = performance.now();
  const now = new Date();
  const first = await tenantDb.transaction(async (trx) => {
    const user = await findUserById(trx, deps.cipher, input.userId);
    if (!user) throw new AppError('unauthenticated');
    const row = await trx
      .selectFrom('users')
      .select(['password_hash', 'totp_secret_ciphertext', sql<boolean>`EXISTS (SELECT 1 FROM webauthn_credentials w WHERE w.tenant_id = users.tenant_id AND w.user_id = users.id)`.as('has_passkey')])
      .where('id', '=', input.userId)
      .executeTakeFirstOrThrow();
    const hasTotp = row.totp_secret_ciphertext !== null;
    // Whoever has a second factor proves it again too: a passkey-only user steps up with the passkey.
    if (row.has_passkey && !hasTotp) return { passkeyOnly: true as const };
    const subject = await throttleSubject(trx, deps.cipher, user.email);
    const check = await takeAccountAttempt(trx, subject, now);
    return { passkeyOnly: false as const, subject, blocked: check.blocked, passwordHash: row.password_hash, hasTotp };
  });
  if (first.passkeyOnly) {
    throw new AppError('reauthentication_required', 'Confirm with your passkey: POST /api/v1/auth/mfa/passkey-options, then /api/v1/auth/mfa/passkey.');
  }
  const passwordOk =
    !first.blocked && first.passwordHash !== null
      ? await verifyPassword(first.passwordHash, input.password)
      : !first.blocked && (await verifyPassword(await decoyPasswordHash(), input.password)) && false;
  const result = await tenantDb.transaction(async (trx) => {
    let codeOk = passwordOk && !first.hasTotp;
    let locked: Date | null = null;
    if (passwordOk && first.hasTotp) {
      const code = input.code;
      const checked = code === undefined ? { ok: false as const, lockedUntil: null } : await checkSecondFactorCode(trx, input.userId, () => verifyTotp(trx, deps.cipher, input.userId, code), now);
      codeOk = checked.ok;
      locked = checked.ok ? null : checked.lockedUntil;
    }
    if (!codeOk) {
      await auditSession(trx, input, 'auth.reauthenticate', 'failed', { reason: first.blocked ? 'account_locked' : !passwordOk ? 'wrong_password' : locked ? 'second_factor_locked' : 'wrong_code' });
      return undefined;
    }
    await forgiveAccountAttempt(trx, first.subject, now);
    const policy = await loadSecurityPolicy(trx);
    const session = await advanceSession(trx, { sessionId: input.sessionId, stage: 'active', method: first.hasTotp ? 'totp' : 'password', policy, now });
    await auditSession(trx, input, 'auth.reauthenticate', 'success');
    return session;
  });
  if (!result) {
    await padFrom(started);
    throw new AppError('login_failed', first.hasTotp ? 'The password or the authenticator code is not right.' : undefined);
  }
  return result;
}

/**
 * A newly enrolled second factor takes effect: the session becomes active under a new token, the
 * user's other sessions (made under the old factors) end, and the enrolment is audited.
 */
export async function finishEnrolment(
  trx: TenantTransaction,
  input: { userId: string; sessionId: string; method: 'totp' | 'passkey'; target: { type: string; id: string }; sourceIp: string; requestId: string },
): Promise<NewSession> {
  const policy = await loadSecurityPolicy(trx);
  const session = await advanceSession(trx, { sessionId: input.sessionId, stage: 'active', method: input.method, policy });
  await revokeSessions(trx, { userId: input.userId, exceptSessionId: input.sessionId }, 'mfa_changed');
  await recordAuditEvent(trx, {
    action: 'auth.mfa_enroll',
    outcome: 'success',
    actor: { type: 'user', id: input.userId },
    target: input.target,
    sourceIp: input.sourceIp,
    requestId: input.requestId,
    details: { method: input.method },
  });
  return session;
}
