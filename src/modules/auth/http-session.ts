import type { FastifyReply, FastifyRequest } from 'fastify';
import { z } from '../../zod.ts';
import { AppError } from '../../server/errors.ts';
import { principalOf } from '../../server/access-control.ts';
import { uuidSchema } from '../../server/schemas.ts';
import { csrfTokenFor, SESSION_COOKIE, STEP_UP_MS, type NewSession, type SessionView } from './sessions.ts';

/** What the identity routes share: the session cookie, the answer that carries a session, and the caller's context. */

export const tenantSlugSchema = z.string().regex(/^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$/);

export const sessionAnswerSchema = z.object({
  stage: z.enum(['mfa', 'mfa_enrollment', 'active']),
  csrfToken: z.string(),
  expiresAt: z.string(),
});

type Stage = z.infer<typeof sessionAnswerSchema>['stage'];

/** Sets the session cookie and answers the stage, the session's CSRF token and its expiry. */
export function answerSession(reply: FastifyReply, session: NewSession, stage: Stage): z.infer<typeof sessionAnswerSchema> {
  reply.setCookie(SESSION_COOKIE, session.token, { httpOnly: true, secure: true, sameSite: 'strict', path: '/', expires: session.expiresAt });
  return { stage, csrfToken: csrfTokenFor(session.token), expiresAt: session.expiresAt.toISOString() };
}

/** The caller's browser session (refused for API tokens). */
export function sessionOf(request: FastifyRequest) {
  const principal = principalOf(request);
  if (principal.credential.kind !== 'session') throw new AppError('unauthenticated');
  return { principal, credential: principal.credential };
}

/**
 * The caller's session, if it may enrol a second factor: a login at its enrolment stage, or a full
 * session that proved who it is within the step-up window (never a login still owing its factor).
 */
export function enrollingSessionOf(request: FastifyRequest) {
  const session = sessionOf(request);
  if (session.credential.stage === 'mfa') throw new AppError('second_factor_required');
  if (session.credential.stage === 'active' && Date.now() - session.credential.authenticatedAt > STEP_UP_MS) throw new AppError('reauthentication_required');
  return session;
}

/** Where a request came from, for audit events and the sessions list. */
export function requestContext(request: FastifyRequest) {
  const userAgent = request.headers['user-agent'];
  return { sourceIp: request.ip, requestId: request.id, userAgent: typeof userAgent === 'string' ? userAgent : undefined };
}

/** A session as its user (or a manager) sees it in a list. */
export const sessionSchema = z.object({
  id: uuidSchema,
  current: z.boolean(),
  createdAt: z.string(),
  lastSeenAt: z.string(),
  expiresAt: z.string(),
  methods: z.array(z.string()),
  sourceIp: z.string().nullable(),
  userAgent: z.string().nullable(),
});

export const presentSession = (session: SessionView, currentId?: string) => ({
  id: session.id,
  current: session.id === currentId,
  createdAt: session.createdAt.toISOString(),
  lastSeenAt: session.lastSeenAt.toISOString(),
  expiresAt: session.expiresAt.toISOString(),
  methods: session.methods,
  sourceIp: session.sourceIp,
  userAgent: session.userAgent,
});
