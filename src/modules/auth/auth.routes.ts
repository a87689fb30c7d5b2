import { z } from '../../zod.ts';
import type { App } from '../../server/types.ts';
import { AppError } from '../../server/errors.ts';
import { problemResponses, uuidSchema } from '../../server/schemas.ts';
import { recordAuditEvent } from '../../audit/audit-event.ts';
import { PASSWORD_MAX_LENGTH } from '../access/passwords.ts';
import { loadSecurityPolicy } from '../access/security-policy.ts';
import { findUserById } from '../users/users.repo.ts';
import { finishEnrolment, login, proveSecondFactor, reauthenticate, type AuthDeps } from './login.service.ts';
import { confirmTotpEnrollment, removeTotp, replaceRecoveryCodes, startTotpEnrollment } from './mfa.ts';
import { answerSession, enrollingSessionOf, presentSession, requestContext, sessionAnswerSchema, sessionOf, sessionSchema, tenantSlugSchema } from './http-session.ts';
import { DEVICE_COOKIE, listSessions, loadUserAccess, revokeSessions, SESSION_COOKIE, TRUSTED_DEVICE_MAX_AGE_S } from './sessions.ts';

const slug = tenantSlugSchema;
const password = z.string().min(1).max(PASSWORD_MAX_LENGTH * 4);
/** A six-digit authenticator code; malformed ones are refused before they count as attempts. */
const totpCode = z.string().regex(/^\d{6}$/, 'six digits');
const recoveryCode = z.string().regex(/^[a-zA-Z2-9]{4}(-?[a-zA-Z2-9]{4}){3}$/, 'a recovery code: four groups of four letters and digits');
const secondFactor = z.discriminatedUnion('method', [
  z.strictObject({ method: z.literal('totp'), code: totpCode }),
  z.strictObject({ method: z.literal('recovery_code'), code: recoveryCode }),
]);

const sessionAnswer = sessionAnswerSchema;


export async function authRoutes(app: App, deps: AuthDeps): Promise<void> {
  const answer = answerSession;
  const context = requestContext;

  app.post(
    '/api/v1/auth/login',
    {
      config: { access: 'public' },
      schema: {
        summary: 'Sign in with organisation, e-mail and password',
        tags: ['auth'],
        body: z.strictObject({ tenant: slug, email: z.string().min(1).max(320), password }),
        response: { 200: sessionAnswer, ...problemResponses(400, 401, 403, 429) },
      },
    },
    async (request, reply) => {
      const result = await login(deps, { ...request.body, deviceToken: request.cookies[DEVICE_COOKIE], ...context(request) });
      reply.setCookie(DEVICE_COOKIE, result.deviceToken, { httpOnly: true, secure: true, sameSite: 'strict', path: '/', maxAge: TRUSTED_DEVICE_MAX_AGE_S });
      return answer(reply, result.session, result.stage);
    },
  );

  app.post(
    '/api/v1/auth/mfa/verify',
    {
      config: { access: 'login' },
      schema: {
        summary: 'Finish signing in with a second factor (authenticator code or recovery code)',
        tags: ['auth'],
        body: secondFactor,
        response: { 200: sessionAnswer, ...problemResponses(400, 401, 403, 409) },
      },
    },
    async (request, reply) => {
      const { principal, credential } = sessionOf(request);
      if (credential.stage !== 'mfa') throw new AppError('conflict', 'This session is not waiting for a second factor.');
      const session = await proveSecondFactor(deps, request.tenantDb, {
        sessionId: credential.id,
        userId: principal.userId,
        method: request.body.method,
        code: request.body.code,
        purpose: 'login',
        ...context(request),
      });
      return answer(reply, session, 'active');
    },
  );

  app.post(
    '/api/v1/auth/mfa/totp/enrollment',
    {
      config: { access: 'login' },
      schema: {
        summary: 'Start enrolling an authenticator app: a new secret, its otpauth URI and QR code',
        tags: ['auth'],
        response: { 200: z.object({ secret: z.string(), uri: z.string(), qrSvg: z.string() }), ...problemResponses(401, 403, 409) },
      },
    },
    async (request, reply) => {
      const { principal } = enrollingSessionOf(request);
      const enrollment = await request.tenantDb.transaction(async (trx) => {
        const user = await findUserById(trx, deps.cipher, principal.userId);
        if (!user) throw new AppError('unauthenticated');
        return startTotpEnrollment(trx, deps.cipher, user);
      });
      reply.header('cache-control', 'no-store');
      return enrollment;
    },
  );

  app.post(
    '/api/v1/auth/mfa/totp/confirm',
    {
      config: { access: 'login' },
      schema: {
        summary: 'Confirm the authenticator with a code from it; answers the recovery codes, once',
        tags: ['auth'],
        body: z.strictObject({ code: totpCode }),
        response: { 200: sessionAnswer.extend({ recoveryCodes: z.array(z.string()) }), ...problemResponses(400, 401, 403, 409) },
      },
    },
    async (request, reply) => {
      const { principal, credential } = enrollingSessionOf(request);
      const confirmed = await request.tenantDb.transaction(async (trx) => {
        const recoveryCodes = await confirmTotpEnrollment(trx, deps.cipher, principal.userId, request.body.code);
        if (!recoveryCodes) {
          await recordAuditEvent(trx, { action: 'auth.mfa_enroll', outcome: 'failed', actor: { type: 'user', id: principal.userId }, target: { type: 'user', id: principal.userId }, sourceIp: request.ip, requestId: request.id, details: { method: 'totp', reason: 'wrong_code' } });
          return undefined;
        }
        const session = await finishEnrolment(trx, { userId: principal.userId, sessionId: credential.id, method: 'totp', target: { type: 'user', id: principal.userId }, sourceIp: request.ip, requestId: request.id });
        return { recoveryCodes, session };
      });
      if (!confirmed) throw new AppError('mfa_code_invalid');
      reply.header('cache-control', 'no-store');
      return { ...answer(reply, confirmed.session, 'active'), recoveryCodes: confirmed.recoveryCodes };
    },
  );

  app.delete(
    '/api/v1/auth/mfa/totp',
    {
      config: { access: 'authenticated', stepUp: true },
      schema: { summary: 'Remove your authenticator app (not allowed where MFA is required)', tags: ['auth'], response: { 204: z.null(), ...problemResponses(401, 403, 409) } },
    },
    async (request, reply) => {
      const { principal } = sessionOf(request);
      await request.tenantDb.transaction(async (trx) => {
        const access = await loadUserAccess(trx, principal.userId, await loadSecurityPolicy(trx));
        if (access?.mfaRequired) throw new AppError('conflict', 'Your role or your organisation requires a second factor: enrol a new one instead of removing it.');
        await removeTotp(trx, principal.userId);
        await recordAuditEvent(trx, { action: 'auth.mfa_remove', outcome: 'success', actor: { type: 'user', id: principal.userId }, target: { type: 'user', id: principal.userId }, sourceIp: request.ip, requestId: request.id });
      });
      return reply.code(204).send(null);
    },
  );

  app.post(
    '/api/v1/auth/mfa/recovery-codes',
    {
      config: { access: 'authenticated', stepUp: true },
      schema: { summary: 'Replace your recovery codes; answers the new ones, once', tags: ['auth'], response: { 200: z.object({ recoveryCodes: z.array(z.string()) }), ...problemResponses(401, 403, 409) } },
    },
    async (request, reply) => {
      const { principal } = sessionOf(request);
      const recoveryCodes = await request.tenantDb.transaction(async (trx) => {
        const access = await loadUserAccess(trx, principal.userId, await loadSecurityPolicy(trx));
        if (!access?.hasTotp && !access?.hasPasskey) throw new AppError('conflict', 'Enrol an authenticator app or a passkey first.');
        const codes = await replaceRecoveryCodes(trx, principal.userId);
        await recordAuditEvent(trx, { action: 'auth.recovery_codes_replace', outcome: 'success', actor: { type: 'user', id: principal.userId }, target: { type: 'user', id: principal.userId }, sourceIp: request.ip, requestId: request.id });
        return codes;
      });
      reply.header('cache-control', 'no-store');
      return { recoveryCodes };
    },
  );

  app.post(
    '/api/v1/auth/reauthenticate',
    {
      config: { access: 'authenticated', sessionOnly: true, beforeAttestation: true },
      schema: {
        summary: 'Step-up: prove again who you are (password, and authenticator code if you have one) for 5 minutes of sensitive changes',
        tags: ['auth'],
        body: z.strictObject({ password, code: totpCode.optional() }),
        response: { 200: sessionAnswer, ...problemResponses(400, 401, 403) },
      },
    },
    async (request, reply) => {
      const { principal, credential } = sessionOf(request);
      const session = await reauthenticate(deps, request.tenantDb, {
        sessionId: credential.id,
        userId: principal.userId,
        password: request.body.password,
        code: request.body.code,
        ...context(request),
      });
      return answer(reply, session, 'active');
    },
  );

  app.get(
    '/api/v1/auth/session',
    {
      config: { access: 'login' },
      schema: {
        summary: 'The current session: who you are, what you may do, and its CSRF token',
        tags: ['auth'],
        response: {
          200: z.object({
            userId: uuidSchema,
            tenantId: uuidSchema,
            role: z.string(),
            permissions: z.array(z.string()),
            stage: z.enum(['mfa', 'mfa_enrollment', 'active']),
            csrfToken: z.string(),
            authenticatedAt: z.string(),
            /** The person must acknowledge the current security policy or training before anything else. */
            attestationRequired: z.boolean(),
          }),
          ...problemResponses(401),
        },
      },
    },
    async (request) => {
      const { principal, credential } = sessionOf(request);
      return {
        userId: principal.userId,
        tenantId: principal.tenantId,
        role: principal.role,
        permissions: credential.stage === 'active' ? [...principal.permissions] : [],
        stage: credential.stage,
        csrfToken: credential.csrfToken,
        authenticatedAt: new Date(credential.authenticatedAt).toISOString(),
        attestationRequired: credential.stage === 'active' && Date.now() >= credential.attestationDueAt,
      };
    },
  );

  app.post(
    '/api/v1/auth/logout',
    {
      config: { access: 'login' },
      schema: { summary: 'Sign out: ends this session', tags: ['auth'], response: { 204: z.null(), ...problemResponses(401, 403) } },
    },
    async (request, reply) => {
      const { principal, credential } = sessionOf(request);
      await request.tenantDb.transaction(async (trx) => {
        await revokeSessions(trx, { sessionId: credential.id }, 'logout');
        await recordAuditEvent(trx, { action: 'auth.logout', outcome: 'success', actor: { type: 'user', id: principal.userId }, target: { type: 'session', id: credential.id }, sourceIp: request.ip, requestId: request.id });
      });
      reply.clearCookie(SESSION_COOKIE, { httpOnly: true, secure: true, sameSite: 'strict', path: '/' });
      return reply.code(204).send(null);
    },
  );

  app.get(
    '/api/v1/auth/sessions',
    {
      config: { access: 'authenticated', sessionOnly: true },
      schema: { summary: 'Your signed-in sessions', tags: ['auth'], response: { 200: z.object({ items: z.array(sessionSchema) }), ...problemResponses(401, 403) } },
    },
    async (request) => {
      const { principal, credential } = sessionOf(request);
      const sessions = await request.tenantDb.read(async (trx) => listSessions(trx, principal.userId, await loadSecurityPolicy(trx)));
      return { items: sessions.map((session) => presentSession(session, credential.id)) };
    },
  );

  app.delete(
    '/api/v1/auth/sessions/:sessionId',
    {
      config: { access: 'authenticated', sessionOnly: true },
      schema: { summary: 'End one of your sessions', tags: ['auth'], params: z.strictObject({ sessionId: uuidSchema }), response: { 204: z.null(), ...problemResponses(400, 401, 403, 404) } },
    },
    async (request, reply) => {
      const { principal } = sessionOf(request);
      await request.tenantDb.transaction(async (trx) => {
        const own = await trx.selectFrom('sessions').select('id').where('id', '=', request.params.sessionId).where('user_id', '=', principal.userId).where('revoked_at', 'is', null).executeTakeFirst();
        if (!own) throw new AppError('not_found');
        await revokeSessions(trx, { sessionId: own.id }, 'revoked');
        await recordAuditEvent(trx, { action: 'session.revoke', outcome: 'success', actor: { type: 'user', id: principal.userId }, target: { type: 'session', id: own.id }, sourceIp: request.ip, requestId: request.id, details: { user: principal.userId } });
      });
      return reply.code(204).send(null);
    },
  );
}
