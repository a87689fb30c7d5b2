import type { FastifyRequest } from 'fastify';
import type { AuditEvent } from '../audit/audit-event.ts';
import { principalOf } from './access-control.ts';

/** Who did it, from where, in which request: the part of an audit event every route fills alike. */
export function requestAudit(request: FastifyRequest): Pick<AuditEvent, 'actor' | 'sourceIp' | 'requestId'> {
  const principal = principalOf(request);
  return {
    actor: principal.credential.kind === 'session' ? { type: 'user', id: principal.userId } : { type: 'api_token', id: principal.credential.id },
    sourceIp: request.ip,
    requestId: request.id,
  };
}

/** A short label of the actor for rows that keep who made them (consent, suppressions, imports). */
export function actorLabel(request: FastifyRequest): string {
  const principal = principalOf(request);
  return principal.credential.kind === 'session' ? `user:${principal.userId}` : `api_token:${principal.credential.id}`;
}
