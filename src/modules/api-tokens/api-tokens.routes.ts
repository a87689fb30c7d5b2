import { z } from '../../zod.ts';
import type { App } from '../../server/types.ts';
import { principalOf } from '../../server/access-control.ts';
import { AppError } from '../../server/errors.ts';
import { problemResponses, uuidSchema } from '../../server/schemas.ts';
import { recordAuditEvent } from '../../audit/audit-event.ts';
import { assertGrantable, normalisePermissions, permissions } from '../access/permissions.ts';
import { announceAuthChange } from '../access/auth-changes.ts';
import { API_TOKEN_MAX_DAYS, issueApiToken } from './api-tokens.service.ts';

const tokenSchema = z.object({
  id: uuidSchema,
  name: z.string(),
  scopes: z.array(z.string()),
  createdAt: z.string(),
  expiresAt: z.string(),
  lastUsedAt: z.string().nullable(),
  revokedAt: z.string().nullable(),
});

/**
 * API tokens of the signed-in user: created only in a browser session after a step-up, scoped to
 * permissions the user holds, expiring within a year, shown once. A token's power is always the
 * intersection of its scopes and what its user may do now.
 */
export async function apiTokensRoutes(app: App): Promise<void> {
  app.post(
    '/api/v1/api-tokens',
    {
      config: { access: 'authenticated', stepUp: true },
      schema: {
        summary: 'Create an API token (shown once)',
        tags: ['api-tokens'],
        body: z.strictObject({
          name: z.string().trim().min(1).max(100),
          scopes: z.array(z.enum(permissions)).min(1).max(permissions.length),
          expiresAt: z.iso.datetime({ offset: true }),
        }),
        response: { 201: tokenSchema.extend({ token: z.string() }), ...problemResponses(400, 401, 403) },
      },
    },
    async (request, reply) => {
      const principal = principalOf(request);
      const expiresAt = new Date(request.body.expiresAt);
      const now = Date.now();
      if (expiresAt.getTime() <= now + 60_000 || expiresAt.getTime() > now + API_TOKEN_MAX_DAYS * 86_400_000) {
        throw new AppError('validation_failed', `A token expires between one minute and ${API_TOKEN_MAX_DAYS} days from now.`);
      }
      const scopes = normalisePermissions(request.body.scopes);
      assertGrantable(principal.permissions, scopes);
      const issued = await request.tenantDb.transaction(async (trx) => {
        const issued = await issueApiToken(trx, principal.tenantId, { userId: principal.userId, name: request.body.name, expiresAt, scopes });
        await recordAuditEvent(trx, {
          action: 'api_token.issue',
          outcome: 'success',
          actor: { type: 'user', id: principal.userId },
          target: { type: 'api_token', id: issued.id },
          sourceIp: request.ip,
          requestId: request.id,
          details: { scopes: scopes.join(' '), expiresAt: expiresAt.toISOString() },
        });
        return issued;
      });
      reply.header('cache-control', 'no-store');
      return reply.code(201).send({
        id: issued.id,
        name: request.body.name,
        scopes,
        createdAt: new Date(now).toISOString(),
        expiresAt: expiresAt.toISOString(),
        lastUsedAt: null,
        revokedAt: null,
        token: issued.token,
      });
    },
  );

  app.get(
    '/api/v1/api-tokens',
    {
      config: { access: 'authenticated', sessionOnly: true },
      schema: { summary: 'Your API tokens (never their secrets)', tags: ['api-tokens'], response: { 200: z.object({ items: z.array(tokenSchema) }), ...problemResponses(401, 403) } },
    },
    async (request) => {
      const rows = await request.tenantDb.read((trx) =>
        trx
          .selectFrom('api_tokens')
          .select(['id', 'name', 'scopes', 'created_at', 'expires_at', 'last_used_at', 'revoked_at'])
          .where('user_id', '=', principalOf(request).userId)
          .orderBy('created_at', 'desc')
          .limit(500)
          .execute(),
      );
      return {
        items: rows.map((row) => ({
          id: row.id,
          name: row.name,
          scopes: row.scopes,
          createdAt: row.created_at.toISOString(),
          expiresAt: row.expires_at.toISOString(),
          lastUsedAt: row.last_used_at?.toISOString() ?? null,
          revokedAt: row.revoked_at?.toISOString() ?? null,
        })),
      };
    },
  );

  app.delete(
    '/api/v1/api-tokens/:tokenId',
    {
      config: { access: 'authenticated', sessionOnly: true },
      schema: { summary: 'Revoke an API token (your own; users:manage may revoke anyone’s)', tags: ['api-tokens'], params: z.strictObject({ tokenId: uuidSchema }), response: { 204: z.null(), ...problemResponses(400, 401, 403, 404) } },
    },
    async (request, reply) => {
      const principal = principalOf(request);
      await request.tenantDb.transaction(async (trx) => {
        let query = trx.updateTable('api_tokens').set({ revoked_at: new Date() }).where('id', '=', request.params.tokenId).where('revoked_at', 'is', null);
        if (!principal.permissions.has('users:manage')) query = query.where('user_id', '=', principal.userId);
        const revoked = await query.returning(['id', 'user_id']).executeTakeFirst();
        if (!revoked) throw new AppError('not_found');
        announceAuthChange(trx);
        await recordAuditEvent(trx, {
          action: 'api_token.revoke',
          outcome: 'success',
          actor: { type: principal.credential.kind === 'session' ? 'user' : 'api_token', id: principal.credential.kind === 'session' ? principal.userId : principal.credential.id },
          target: { type: 'api_token', id: revoked.id },
          sourceIp: request.ip,
          requestId: request.id,
          details: { user: revoked.user_id },
        });
      });
      return reply.code(204).send(null);
    },
  );
}
