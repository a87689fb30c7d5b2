import type { AuthenticationResponseJSON, RegistrationResponseJSON } from '@simplewebauthn/server';
import { randomBytes } from 'node:crypto';
import type { FastifyReply } from 'fastify';
import { z } from '../../zod.ts';
import type { App } from '../../server/types.ts';
import { AppError } from '../../server/errors.ts';
import { problemResponses, uuidSchema } from '../../server/schemas.ts';
import { recordAuditEvent } from '../../audit/audit-event.ts';
import { announceAuthChange } from '../access/auth-changes.ts';
import { loadSecurityPolicy } from '../access/security-policy.ts';
import { findUserById } from '../users/users.repo.ts';
import { finishEnrolment, type AuthDeps } from './login.service.ts';
import { passkeyLogin, provePasskeyFactor } from './passkey-login.service.ts';
import { recoveryCodesLeft, replaceRecoveryCodes } from './mfa.ts';
import { authenticationOptions, listPasskeys, registerPasskey, registrationOptions, type RelyingParty } from './passkeys.ts';
import { answerSession, enrollingSessionOf, requestContext, sessionAnswerSchema, sessionOf, tenantSlugSchema } from './http-session.ts';
import { DEVICE_COOKIE, loadUserAccess, TRUSTED_DEVICE_MAX_AGE_S, type NewSession } from './sessions.ts';

const b64url = (max: number) => z.string().regex(/^[A-Za-z0-9_-]*$/).max(max);
const extensions = z.record(z.string(), z.unknown());

/** What a browser's navigator.credentials.create() gives, as JSON (bounded, nothing extra). */
const registrationResponse = z.strictObject({
  id: b64url(1400),
  rawId: b64url(1400),
  type: z.literal('public-key'),
  authenticatorAttachment: z.enum(['platform', 'cross-platform']).optional(),
  clientExtensionResults: extensions,
  response: z.strictObject({
    clientDataJSON: b64url(4096),
    attestationObject: b64url(16_384),
    authenticatorData: b64url(4096).optional(),
    transports: z.array(z.string().max(20)).max(10).optional(),
    publicKeyAlgorithm: z.number().int().optional(),
    publicKey: b64url(4096).optional(),
  }),
});

/** What navigator.credentials.get() gives, as JSON. */
const authenticationResponse = z.strictObject({
  id: b64url(1400),
  rawId: b64url(1400),
  type: z.literal('public-key'),
  authenticatorAttachment: z.enum(['platform', 'cross-platform']).optional(),
  clientExtensionResults: extensions,
  response: z.strictObject({
    clientDataJSON: b64url(4096),
    authenticatorData: b64url(4096),
    signature: b64url(2048),
    userHandle: b64url(200).optional(),
  }),
});

const options = z.looseObject({ challenge: z.string() });
const sessionAnswer = sessionAnswerSchema;
const slug = tenantSlugSchema;
const context = requestContext;

export async function passkeysRoutes(app: App, deps: AuthDeps & { relyingParty: RelyingParty }): Promise<void> {
  const rp = deps.relyingParty;
  const answer = (reply: FastifyReply, session: NewSession) => answerSession(reply, session, 'active');

  app.post(
    '/api/v1/auth/passkeys/registration-options',
    {
      config: { access: 'login' },
      schema: { summary: 'Options for navigator.credentials.create(): register a passkey', tags: ['auth'], response: { 200: options, ...problemResponses(401, 403) } },
    },
    async (request, reply) => {
      const { principal, credential } = enrollingSessionOf(request);
      const result = await request.tenantDb.transaction(async (trx) => {
        const user = await findUserById(trx, deps.cipher, principal.userId);
        if (!user) throw new AppError('unauthenticated');
        return registrationOptions(trx, rp, user, credential.id);
      });
      reply.header('cache-control', 'no-store');
      return { ...result };
    },
  );

  app.post(
    '/api/v1/auth/passkeys',
    {
      config: { access: 'login' },
      schema: {
        summary: 'Register a passkey (completes enrolment; answers recovery codes once if you had none)',
        tags: ['auth'],
        body: z.strictObject({ name: z.string().trim().min(1).max(100), response: registrationResponse }),
        response: { 201: sessionAnswer.extend({ id: uuidSchema, recoveryCodes: z.array(z.string()) }), ...problemResponses(400, 401, 403, 409) },
      },
    },
    async (request, reply) => {
      const { principal, credential } = enrollingSessionOf(request);
      const outcome = await request.tenantDb.transaction(async (trx) => {
        const registered = await registerPasskey(trx, rp, { userId: principal.userId, sessionId: credential.id, name: request.body.name, response: request.body.response as RegistrationResponseJSON });
        if ('refused' in registered) {
          await recordAuditEvent(trx, { action: 'auth.mfa_enroll', outcome: 'failed', actor: { type: 'user', id: principal.userId }, target: { type: 'user', id: principal.userId }, sourceIp: request.ip, requestId: request.id, details: { method: 'passkey', reason: registered.refused.code } });
          return registered;
        }
        const { id } = registered;
        const recoveryCodes = (await recoveryCodesLeft(trx, principal.userId)) === 0 ? await replaceRecoveryCodes(trx, principal.userId) : [];
        const session = await finishEnrolment(trx, { userId: principal.userId, sessionId: credential.id, method: 'passkey', target: { type: 'passkey', id }, sourceIp: request.ip, requestId: request.id });
        return { id, session, recoveryCodes };
      });
      if ('refused' in outcome) throw outcome.refused;
      const { id, session, recoveryCodes } = outcome;
      reply.header('cache-control', 'no-store');
      return reply.code(201).send({ ...answer(reply, session), id, recoveryCodes });
    },
  );

  app.get(
    '/api/v1/auth/passkeys',
    {
      config: { access: 'authenticated', sessionOnly: true },
      schema: {
        summary: 'Your passkeys',
        tags: ['auth'],
        response: { 200: z.object({ items: z.array(z.object({ id: z.string(), name: z.string(), createdAt: z.string(), lastUsedAt: z.string().nullable(), backedUp: z.boolean() })) }), ...problemResponses(401, 403) },
      },
    },
    async (request) => {
      const { principal } = sessionOf(request);
      const items = await request.tenantDb.read((trx) => listPasskeys(trx, principal.userId));
      return { items: items.map((item) => ({ ...item, createdAt: item.createdAt.toISOString(), lastUsedAt: item.lastUsedAt?.toISOString() ?? null })) };
    },
  );

  app.delete(
    '/api/v1/auth/passkeys/:passkeyId',
    {
      config: { access: 'authenticated', stepUp: true },
      schema: { summary: 'Remove one of your passkeys', tags: ['auth'], params: z.strictObject({ passkeyId: uuidSchema }), response: { 204: z.null(), ...problemResponses(400, 401, 403, 404, 409) } },
    },
    async (request, reply) => {
      const { principal } = sessionOf(request);
      await request.tenantDb.transaction(async (trx) => {
        const access = await loadUserAccess(trx, principal.userId, await loadSecurityPolicy(trx));
        const mine = await trx.selectFrom('webauthn_credentials').select('id').where('user_id', '=', principal.userId).execute();
        if (!mine.some((row) => row.id === request.params.passkeyId)) throw new AppError('not_found');
        if (access?.mfaRequired && !access.hasTotp && mine.length === 1) {
          throw new AppError('conflict', 'This is your only second factor and your role requires one: add another first.');
        }
        await trx.deleteFrom('webauthn_credentials').where('id', '=', request.params.passkeyId).execute();
        announceAuthChange(trx);
        await recordAuditEvent(trx, { action: 'auth.mfa_remove', outcome: 'success', actor: { type: 'user', id: principal.userId }, target: { type: 'passkey', id: request.params.passkeyId }, sourceIp: request.ip, requestId: request.id, details: { method: 'passkey' } });
      });
      return reply.code(204).send(null);
    },
  );

  app.post(
    '/api/v1/auth/mfa/passkey-options',
    {
      config: { access: 'login' },
      schema: { summary: 'Options for navigator.credentials.get(): a passkey as second factor or step-up', tags: ['auth'], response: { 200: options, ...problemResponses(401, 403, 409) } },
    },
    async (request, reply) => {
      const { principal, credential } = sessionOf(request);
      if (credential.stage === 'mfa_enrollment') throw new AppError('mfa_enrollment_required');
      const result = await request.tenantDb.transaction((trx) => authenticationOptions(trx, rp, { purpose: 'mfa', userId: principal.userId, sessionId: credential.id }));
      reply.header('cache-control', 'no-store');
      return { ...result };
    },
  );

  app.post(
    '/api/v1/auth/mfa/passkey',
    {
      config: { access: 'login' },
      schema: {
        summary: 'Prove a passkey: finishes a login at its second-factor step, or steps a session up',
        tags: ['auth'],
        body: z.strictObject({ response: authenticationResponse }),
        response: { 200: sessionAnswer, ...problemResponses(400, 401, 403) },
      },
    },
    async (request, reply) => {
      const { principal, credential } = sessionOf(request);
      if (credential.stage === 'mfa_enrollment') throw new AppError('mfa_enrollment_required');
      const session = await provePasskeyFactor(deps, request.tenantDb, {
        sessionId: credential.id,
        userId: principal.userId,
        response: request.body.response as AuthenticationResponseJSON,
        purpose: credential.stage === 'mfa' ? 'login' : 'step_up',
        ...context(request),
      });
      return answer(reply, session);
    },
  );

  app.post(
    '/api/v1/auth/passkey-login/options',
    {
      config: { access: 'public' },
      schema: { summary: 'Options for a passwordless passkey login', tags: ['auth'], body: z.strictObject({ tenant: slug }), response: { 200: options, ...problemResponses(400) } },
    },
    async (request, reply) => {
      reply.header('cache-control', 'no-store');
      const tenantId = await deps.systemDb.tenantIdBySlug(request.body.tenant);
      // An unknown organisation gets options too (that nothing will accept): the answer does not tell.
      if (!tenantId) return { challenge: randomBytes(32).toString('base64url'), rpId: rp.id, userVerification: 'required', allowCredentials: [], timeout: 60000 };
      return { ...(await deps.forTenant(tenantId).transaction((trx) => authenticationOptions(trx, rp, { purpose: 'login' }))) };
    },
  );

  app.post(
    '/api/v1/auth/passkey-login',
    {
      config: { access: 'public' },
      schema: {
        summary: 'Sign in with a passkey alone',
        tags: ['auth'],
        body: z.strictObject({ tenant: slug, response: authenticationResponse }),
        response: { 200: sessionAnswer, ...problemResponses(400, 401, 403) },
      },
    },
    async (request, reply) => {
      const result = await passkeyLogin(deps, { tenant: request.body.tenant, response: request.body.response as AuthenticationResponseJSON, ...context(request) });
      reply.setCookie(DEVICE_COOKIE, result.deviceToken, { httpOnly: true, secure: true, sameSite: 'strict', path: '/', maxAge: TRUSTED_DEVICE_MAX_AGE_S });
      return answer(reply, result.session);
    },
  );
}
