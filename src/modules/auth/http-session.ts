import type { FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { AppError } from '../../server/errors.ts';
import { principalOf } from '../../server/access-control.ts';
import { csrfTokenFor, SESSION_COOKIE, type NewSession } from './sessions.ts';

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

/** Where a request came from, for audit events and the sessions list. */
export function requestContext(request: FastifyRequest) {
  const userAgent = request.headers['user-agent'];
  return { sourceIp: request.ip, requestId: request.id, userAgent: typeof userAgent === 'string' ? userAgent : undefined };
}
