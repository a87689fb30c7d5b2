import type { FastifyInstance, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import type { UserRole } from '../db/schema.ts';
import type { TenantDb } from '../db/tenant-db.ts';
import { findTokenOwner, parseTenantToken } from '../modules/api-tokens/api-tokens.service.ts';
import type { CredentialCache } from '../modules/api-tokens/credential-cache.ts';
import { isRouteAccess, roleGrants, type Permission, type RouteAccess } from '../modules/access/permissions.ts';
import { AppError } from './errors.ts';
import { recordAuditEventAlone } from '../audit/audit-event.ts';

export type Principal = {
  tenantId: string;
  userId: string;
  role: UserRole;
  credential: { kind: 'api_token'; id: string };
};

export type RouteEntry = { method: string; url: string; access: RouteAccess };

declare module 'fastify' {
  interface FastifyInstance {
    /** Every route with the access it declared: read by tests that walk all routes. */
    routeTable: RouteEntry[];
  }
  interface FastifyContextConfig {
    /** Required on every route: the permission it needs, or 'public'. */
    access?: RouteAccess;
  }
  interface FastifyRequest {
    principal: Principal | undefined;
    /** The caller's tenant handle; throws on a public route (there is no tenant). */
    readonly tenantDb: TenantDb;
  }
}

/** Routes added by the API-docs plugin, which cannot carry our config; public by design. */
const DOCS_PREFIX = '/api/docs';

export type AccessControlOptions = { forTenant(tenantId: string): TenantDb; credentials: CredentialCache };

function bearerToken(request: FastifyRequest): string | undefined {
  const header = request.headers.authorization;
  if (typeof header !== 'string') return undefined;
  const match = /^Bearer ([!-~]{1,200})$/.exec(header);
  return match?.[1];
}

async function accessControl(app: FastifyInstance, options: AccessControlOptions): Promise<void> {
  const tenantDbs = new WeakMap<FastifyRequest, TenantDb>();

  const routeTable: RouteEntry[] = [];
  app.decorate('routeTable', routeTable);

  // Deny by default: a route that does not say who may call it stops the server from starting.
  app.addHook('onRoute', (route) => {
    if (route.url.startsWith(DOCS_PREFIX)) {
      route.config = { ...route.config, access: 'public' };
    }
    const access = (route.config as { access?: unknown } | undefined)?.access;
    if (!isRouteAccess(access)) {
      throw new Error(`Route ${String(route.method)} ${route.url} declares no valid access (config.access)`);
    }
    for (const method of [route.method].flat()) routeTable.push({ method, url: route.url, access });
  });

  app.decorateRequest('principal', undefined);
  app.decorateRequest('tenantDb', {
    getter(this: FastifyRequest) {
      const tenantDb = tenantDbs.get(this);
      if (!tenantDb) throw new Error('tenantDb used on a route without an authenticated principal');
      return tenantDb;
    },
  });

  app.addHook('onRequest', async (request) => {
    const access = request.routeOptions.config.access;
    if (access === undefined) return; // unmatched route: the 404 handler answers
    if (access === 'public') return;
    const token = bearerToken(request);
    const parsed = token === undefined ? undefined : parseTenantToken('rvt', token);
    if (!parsed) throw new AppError('unauthenticated');
    const tenantDb = options.forTenant(parsed.tenantId);
    const key = parsed.hash.toString('hex');
    let credential = options.credentials.get(key);
    if (!credential) {
      const stamp = options.credentials.stamp(parsed.tenantId);
      const owner = await tenantDb.read((trx) => findTokenOwner(trx, parsed.hash));
      if (!owner) throw new AppError('unauthenticated');
      credential = { tenantId: parsed.tenantId, userId: owner.userId, role: owner.role, tokenId: owner.tokenId, expiresAt: owner.expiresAt.getTime() };
      options.credentials.set(key, credential, stamp);
    }
    request.principal = {
      tenantId: credential.tenantId,
      userId: credential.userId,
      role: credential.role,
      credential: { kind: 'api_token', id: credential.tokenId },
    };
    tenantDbs.set(request, tenantDb);
    if (!roleGrants(credential.role, access as Permission)) {
      // A denial by an authenticated caller is recorded, in a transaction of its own.
      await recordAuditEventAlone(tenantDb, {
        action: 'auth.denied',
        outcome: 'denied',
        actor: { type: 'api_token', id: credential.tokenId },
        target: { type: 'route', id: `${request.method} ${request.routeOptions.url ?? ''}`.slice(0, 200) },
        sourceIp: request.ip,
        requestId: request.id,
        details: { permission: access, user: credential.userId },
      });
      throw new AppError('forbidden');
    }
  });
}

export const accessControlPlugin = fp(accessControl, { name: 'ringvakt-access-control' });
