import { z } from '../../zod.ts';
import type { App } from '../../server/types.ts';
import { AppError } from '../../server/errors.ts';
import { problemResponses, uuidSchema } from '../../server/schemas.ts';
import { principalOf } from '../../server/access-control.ts';
import { recordAuditEvent } from '../../audit/audit-event.ts';
import type { AuthDeps } from './login.service.ts';
import { SESSION_COOKIE } from './sessions.ts';
import { tenantSlugSchema } from './http-session.ts';
import { completeSsoLogin, loadSsoProvider, redirectUriFor, saveSsoProvider, SSO_BROWSER_COOKIE, startSsoLogin } from './sso.ts';
import { resolveRoleChoice } from '../users/users.service.ts';
import { randomBytes } from 'node:crypto';

const slug = tenantSlugSchema;
const assignable = z.enum(['admin', 'supervisor', 'agent', 'auditor', 'privacy_officer']);
const mapping = z.union([
  z.strictObject({ group: z.string().min(1).max(200), role: assignable }),
  z.strictObject({ group: z.string().min(1).max(200), customRoleId: uuidSchema }),
]);

const providerBody = z.strictObject({
  issuer: z.string().min(8).max(500),
  clientId: z.string().min(1).max(200),
  clientSecret: z.string().min(1).max(500).optional(),
  scopes: z.string().regex(/^openid( [A-Za-z0-9_:.-]{1,60}){0,10}$/, 'space-separated scopes starting with openid').default('openid email profile'),
  groupsClaim: z.string().regex(/^[A-Za-z0-9_:./-]{1,100}$/).default('groups'),
  roleMappings: z.array(mapping).max(100),
  defaultRole: assignable.nullable().default(null),
  trustProviderMfa: z.boolean().default(false),
  enabled: z.boolean().default(true),
});

const providerView = z.object({
  issuer: z.string(),
  clientId: z.string(),
  hasClientSecret: z.boolean(),
  scopes: z.string(),
  groupsClaim: z.string(),
  roleMappings: z.array(z.object({ group: z.string(), role: z.string().optional(), customRoleId: z.string().optional() })),
  defaultRole: z.string().nullable(),
  trustProviderMfa: z.boolean(),
  enabled: z.boolean(),
  redirectUri: z.string(),
});

/** A page that moves the browser on with a same-site navigation, so the Strict session cookie goes along. */
const continuePage = `<!doctype html><meta charset="utf-8"><meta http-equiv="refresh" content="0;url=/"><title>Signed in</title><p>Signed in. <a href="/">Continue</a></p>`;

export async function ssoRoutes(app: App, deps: AuthDeps & { publicUrl: string }): Promise<void> {
  app.get(
    '/api/v1/sso/provider',
    {
      config: { access: 'security:manage' },
      schema: { summary: "The organisation's single sign-on provider (never its client secret)", tags: ['sso'], response: { 200: providerView, ...problemResponses(401, 403, 404) } },
    },
    async (request) => {
      const provider = await request.tenantDb.read((trx) => loadSsoProvider(trx, deps.cipher));
      if (!provider) throw new AppError('not_found');
      const tenant = await request.tenantDb.read((trx) => trx.selectFrom('tenants').select('slug').executeTakeFirstOrThrow());
      return {
        issuer: provider.issuer,
        clientId: provider.clientId,
        hasClientSecret: provider.clientSecret !== undefined,
        scopes: provider.scopes,
        groupsClaim: provider.groupsClaim,
        roleMappings: provider.roleMappings,
        defaultRole: provider.defaultRole,
        trustProviderMfa: provider.trustProviderMfa,
        enabled: provider.enabled,
        redirectUri: redirectUriFor(deps.publicUrl, tenant.slug),
      };
    },
  );

  app.put(
    '/api/v1/sso/provider',
    {
      config: { access: 'security:manage', stepUp: true },
      schema: { summary: 'Set the single sign-on provider (OpenID Connect)', tags: ['sso'], body: providerBody, response: { 204: z.null(), ...problemResponses(400, 401, 403) } },
    },
    async (request, reply) => {
      const body = request.body;
      const principal = principalOf(request);
      await request.tenantDb.transaction(async (trx) => {
        // Whoever sets the provider can give through it only roles they could give themselves.
        for (const wanted of [...body.roleMappings, ...(body.defaultRole ? [{ role: body.defaultRole }] : [])]) {
          await resolveRoleChoice(trx, principal, 'customRoleId' in wanted ? { customRoleId: wanted.customRoleId } : { role: wanted.role });
        }
        const before = await loadSsoProvider(trx, deps.cipher);
        await saveSsoProvider(trx, deps.cipher, { ...body, clientSecret: body.clientSecret ?? before?.clientSecret });
        await recordAuditEvent(trx, {
          action: 'security_policy.update',
          outcome: 'success',
          actor: { type: 'user', id: principal.userId },
          target: { type: 'sso_provider', id: trx.tenantId },
          sourceIp: request.ip,
          requestId: request.id,
          details: {
            issuer: body.issuer,
            clientId: body.clientId,
            secretChanged: body.clientSecret !== undefined,
            mappings: body.roleMappings.length,
            defaultRole: body.defaultRole,
            trustProviderMfa: body.trustProviderMfa,
            enabled: body.enabled,
          },
        });
      });
      return reply.code(204).send(null);
    },
  );

  app.get(
    '/api/v1/auth/sso/:tenant/start',
    {
      config: { access: 'public' },
      schema: { summary: 'Begin single sign-on: redirects to the identity provider', tags: ['auth'], params: z.strictObject({ tenant: slug }), response: { 302: z.null(), ...problemResponses(400, 404, 503) } },
    },
    async (request, reply) => {
      const tenantId = await deps.systemDb.tenantIdBySlug(request.params.tenant);
      if (!tenantId) throw new AppError('not_found', 'This organisation has no single sign-on.');
      const browserSecret = randomBytes(32).toString('base64url');
      const url = await startSsoLogin(deps.forTenant(tenantId), deps.cipher, { slug: request.params.tenant, publicUrl: deps.publicUrl, browserSecret });
      // Lax, not Strict: the provider sends the browser back with a cross-site top-level GET.
      reply.setCookie(SSO_BROWSER_COOKIE, browserSecret, { httpOnly: true, secure: true, sameSite: 'lax', path: '/', maxAge: 600 });
      return reply.code(302).header('location', url.href).send(null);
    },
  );

  app.get(
    '/api/v1/auth/sso/:tenant/callback',
    {
      config: { access: 'public' },
      schema: {
        summary: 'Where the identity provider sends the browser back',
        tags: ['auth'],
        params: z.strictObject({ tenant: slug }),
        querystring: z.strictObject({
          code: z.string().max(2000).optional(),
          state: z.string().min(16).max(200),
          iss: z.string().max(500).optional(),
          session_state: z.string().max(500).optional(),
          error: z.string().max(200).optional(),
          error_description: z.string().max(1000).optional(),
        }),
      },
    },
    async (request, reply) => {
      const tenantId = await deps.systemDb.tenantIdBySlug(request.params.tenant);
      if (!tenantId) throw new AppError('not_found');
      const userAgent = request.headers['user-agent'];
      const result = await completeSsoLogin(deps.forTenant(tenantId), deps.cipher, {
        slug: request.params.tenant,
        publicUrl: deps.publicUrl,
        callbackUrl: new URL(request.url, deps.publicUrl),
        state: request.query.state,
        browserSecret: request.cookies[SSO_BROWSER_COOKIE],
        sourceIp: request.ip,
        requestId: request.id,
        userAgent: typeof userAgent === 'string' ? userAgent : undefined,
      });
      reply.clearCookie(SSO_BROWSER_COOKIE, { httpOnly: true, secure: true, sameSite: 'lax', path: '/' });
      reply.setCookie(SESSION_COOKIE, result.session.token, { httpOnly: true, secure: true, sameSite: 'strict', path: '/', expires: result.session.expiresAt });
      return reply.type('text/html; charset=utf-8').header('cache-control', 'no-store').send(continuePage);
    },
  );
}
