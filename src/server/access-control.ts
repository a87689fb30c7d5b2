import type { FastifyInstance, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import type { SessionStage, UserRole } from '../db/schema.ts';
import type { TenantDb } from '../db/tenant-db.ts';
import { findTokenOwner, presentedToken, uuidFromHex } from '../modules/api-tokens/api-tokens.service.ts';
import type { CredentialCache } from '../modules/access/credential-cache.ts';
import { isRouteAccess, type Permission, type RouteAccess } from '../modules/access/permissions.ts';
import { createAddressGate, loadSecurityPolicy, type AddressRefusal } from '../modules/access/security-policy.ts';
import { attestationDueAt } from '../security/attestations.ts';
import { csrfTokenFor, findSession, loadUserAccess, SESSION_COOKIE, STEP_UP_MS, TOUCH_INTERVAL_MS } from '../modules/auth/sessions.ts';
import { AppError } from './errors.ts';
import { recordAuditEvent, recordAuditEventAlone } from '../audit/audit-event.ts';

/**
 * Authentication and authorization of every request, before any handler runs.
 *
 * Deny by default: every route declares its access (a permission, `authenticated`, `login` or
 * `public`) and the server refuses to start when one does not. A request carries either an API
 * token (`Authorization: Bearer rvk_…`) or a session cookie; credentials in URLs are never read.
 * Verified credentials are cached (credential-cache.ts) with the tenant's IP allow-list, and
 * every cached answer that looks too old (idle, step-up) is re-read before it is believed.
 */

export type Credential =
  | { kind: 'api_token'; id: string }
  | { kind: 'session'; id: string; stage: SessionStage; authenticatedAt: number; csrfToken: string; attestationDueAt: number };

export type Principal = {
  tenantId: string;
  userId: string;
  role: UserRole;
  permissions: ReadonlySet<Permission>;
  credential: Credential;
};

export type RouteEntry = { method: string; url: string; access: RouteAccess; stepUp: boolean | 'sessions'; sessionOnly: boolean };

declare module 'fastify' {
  interface FastifyInstance {
    /** Every route with the access it declared: read by tests that walk all routes. */
    routeTable: RouteEntry[];
  }
  interface FastifyContextConfig {
    /** Required on every route: the permission it needs, or another access kind. */
    access?: RouteAccess;
    /**
     * The caller must have proved who they are within the last 5 minutes: `true` — a browser session
     * only; `'sessions'` — a session must be that recent, while an API token (whose creation needed a
     * step-up, and which a scope limits) may call it too (exports pulled by a SIEM).
     */
    stepUp?: boolean | 'sessions';
    /** API tokens are not accepted here: only a person in a browser session. */
    sessionOnly?: boolean;
    /** Reachable by a person who owes an acknowledgement of the security policy or training (src/security/attestations.ts). */
    beforeAttestation?: boolean;
    /** The route reads its body as a stream (file uploads), with no body schema; it checks what it reads. */
    streamedBody?: boolean;
  }
  interface FastifyRequest {
    principal: Principal | undefined;
    /** The raw session token of a cookie request (for rotation and logout). */
    sessionToken: string | undefined;
    /** The caller's tenant handle; throws on a public route (there is no tenant). */
    readonly tenantDb: TenantDb;
    /** Set by access control only; read through `tenantDb`. */
    scopedTenantDb: TenantDb | undefined;
    /**
     * Whether the credential of this request still holds (not revoked, expired, idle, or its user
     * disabled): for connections that outlive their request (the realtime WebSocket).
     */
    credentialStillValid: (() => Promise<boolean>) | undefined;
  }
}

/** The authenticated caller of a non-public route (the access hook has put it there). */
export function principalOf(request: FastifyRequest): Principal {
  if (!request.principal) throw new AppError('unauthenticated');
  return request.principal;
}

/** Routes added by the API-docs plugin, which cannot carry our config; public by design. */
const DOCS_PREFIX = '/api/docs';
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

export type CachedPrincipal = {
  tenantId: string;
  userId: string;
  role: UserRole;
  permissions: ReadonlySet<Permission>;
  kind: 'api_token' | 'session';
  credentialId: string;
  stage: SessionStage;
  authenticatedAt: number;
  lastSeenAt: number;
  idleMs: number;
  /** When the credential itself ends (the cache keeps an entry at most this long). */
  expiresAt: number;
  /** The session's CSRF token (computed once per lookup); empty for API tokens. */
  csrfToken: string;
  /** What the request sees; built once per lookup (nothing in it changes while the entry lives). */
  principal: Principal;
  /** The tenant's IP allow-list and blocked ranges as one check; undefined when it restricts nothing. */
  gate: ((address: string) => AddressRefusal | undefined) | undefined;
  /** When the user's acknowledgement of the security policy or training runs out (0: owed now; sessions only). */
  attestationDueAt: number;
};

export type AccessControlOptions = {
  forTenant(tenantId: string): TenantDb;
  credentials: CredentialCache<CachedPrincipal>;
  /** The origin browsers use to reach us (RINGVAKT_PUBLIC_URL); changes from elsewhere are refused. */
  publicOrigin: string;
};

/** Refusals that no tenant can be named for go to the security log (never a token or an address). */
function refuse(request: FastifyRequest, reason: string, code: 'csrf_failed' | 'unauthenticated'): AppError {
  request.log.warn({ event: 'auth.refused', reason, route: `${request.method} ${request.routeOptions.url ?? ''}` }, 'request refused');
  return new AppError(code);
}

function bearerToken(request: FastifyRequest): string | undefined {
  const header = request.headers.authorization;
  if (typeof header !== 'string') return undefined;
  const match = /^Bearer ([!-~]{1,200})$/.exec(header);
  if (!match) throw new AppError('unauthenticated');
  return match[1];
}

type Found = Omit<CachedPrincipal, 'principal'>;

function withPrincipal(found: Found): CachedPrincipal {
  const credential: Credential =
    found.kind === 'session'
      ? { kind: 'session', id: found.credentialId, stage: found.stage, authenticatedAt: found.authenticatedAt, csrfToken: found.csrfToken, attestationDueAt: found.attestationDueAt }
      : { kind: 'api_token', id: found.credentialId };
  return { ...found, principal: { tenantId: found.tenantId, userId: found.userId, role: found.role, permissions: found.permissions, credential } };
}

async function lookUp(tenantDb: TenantDb, kind: 'api_token' | 'session', token: string, hash: Buffer): Promise<CachedPrincipal | undefined> {
  const found = await tenantDb.read(async (trx): Promise<Found | undefined> => {
    const policy = await loadSecurityPolicy(trx);
    const gate = createAddressGate(policy);
    if (kind === 'api_token') {
      const owner = await findTokenOwner(trx, hash);
      if (!owner) return undefined;
      const access = await loadUserAccess(trx, owner.userId, policy);
      if (!access || access.status !== 'active') return undefined;
      // A token can do what its scopes say and its user can still do: never more than either.
      const permissions = new Set(access.permissions.filter((permission) => owner.scopes.includes(permission)));
      return {
        tenantId: trx.tenantId,
        userId: owner.userId,
        role: access.role,
        permissions,
        kind,
        credentialId: owner.tokenId,
        stage: 'active',
        authenticatedAt: 0,
        lastSeenAt: owner.lastUsedAt?.getTime() ?? 0,
        idleMs: Number.POSITIVE_INFINITY,
        expiresAt: owner.expiresAt.getTime(),
        csrfToken: '',
        gate,
        attestationDueAt: Number.POSITIVE_INFINITY,
      };
    }
    const session = await findSession(trx, hash);
    if (!session) return undefined;
    const access = await loadUserAccess(trx, session.userId, policy);
    if (!access || access.status !== 'active') return undefined;
    return {
      tenantId: trx.tenantId,
      userId: session.userId,
      role: access.role,
      permissions: new Set(access.permissions),
      kind,
      credentialId: session.id,
      stage: session.stage,
      authenticatedAt: session.authenticatedAt.getTime(),
      lastSeenAt: session.lastSeenAt.getTime(),
      idleMs: policy.sessionIdleMinutes * 60_000,
      expiresAt: session.expiresAt.getTime(),
      csrfToken: csrfTokenFor(token),
      gate,
      attestationDueAt: session.stage === 'active' ? await attestationDueAt(trx, session.userId) : Number.POSITIVE_INFINITY,
    };
  });
  return found && withPrincipal(found);
}

async function accessControl(app: FastifyInstance, options: AccessControlOptions): Promise<void> {
  // One handle per tenant (by the id's hex digits, as tokens carry it), reused across requests.
  const handles = new Map<string, TenantDb>();
  const tenantHandle = (tenantHex: string) => {
    let handle = handles.get(tenantHex);
    if (!handle) {
      if (handles.size >= 10_000) handles.clear();
      handle = options.forTenant(uuidFromHex(tenantHex));
      handles.set(tenantHex, handle);
    }
    return handle;
  };
  const routeTable: RouteEntry[] = [];
  app.decorate('routeTable', routeTable);

  // Deny by default: a route that does not say who may call it stops the server from starting.
  app.addHook('onRoute', (route) => {
    if (route.url.startsWith(DOCS_PREFIX)) {
      route.config = { ...route.config, access: 'public' };
    }
    const config = (route.config ?? {}) as { access?: unknown; stepUp?: boolean | 'sessions'; sessionOnly?: boolean };
    if (!isRouteAccess(config.access)) {
      throw new Error(`Route ${String(route.method)} ${route.url} declares no valid access (config.access)`);
    }
    if (config.stepUp && (config.access === 'public' || config.access === 'login')) {
      throw new Error(`Route ${String(route.method)} ${route.url}: step-up needs an authenticated access`);
    }
    for (const method of [route.method].flat()) {
      routeTable.push({ method, url: route.url, access: config.access, stepUp: config.stepUp ?? false, sessionOnly: Boolean(config.sessionOnly || config.stepUp === true) });
    }
  });

  app.decorateRequest('principal', undefined);
  app.decorateRequest('sessionToken', undefined);
  app.decorateRequest('scopedTenantDb', undefined);
  app.decorateRequest('credentialStillValid', undefined);
  app.decorateRequest('tenantDb', {
    getter(this: FastifyRequest) {
      const tenantDb = this.scopedTenantDb;
      if (!tenantDb) throw new Error('tenantDb used on a route without an authenticated principal');
      return tenantDb;
    },
  });

  const lookUpAndCache = async (tenantDb: TenantDb, kind: 'api_token' | 'session', token: string, key: string) => {
    options.credentials.delete(key);
    const stamp = options.credentials.stamp(tenantDb.tenantId);
    const found = await lookUp(tenantDb, kind, token, Buffer.from(key, 'hex'));
    if (found) options.credentials.set(key, found, stamp);
    return found;
  };

  const deny = async (request: FastifyRequest, tenantDb: TenantDb, cached: CachedPrincipal, reason: string, details: Record<string, unknown> = {}) => {
    // A denial of an authenticated caller is recorded, in a transaction of its own.
    await recordAuditEventAlone(tenantDb, {
      action: 'auth.denied',
      outcome: 'denied',
      actor: { type: cached.kind === 'session' ? 'user' : 'api_token', id: cached.kind === 'session' ? cached.userId : cached.credentialId },
      target: { type: 'route', id: `${request.method} ${request.routeOptions.url ?? ''}`.slice(0, 200) },
      sourceIp: request.ip,
      requestId: request.id,
      details: { reason, user: cached.userId, ...details },
    });
  };

  app.addHook('onRequest', async (request) => {
    const config = request.routeOptions.config;
    const access = config.access;
    if (access === undefined) return; // unmatched route: the 404 handler answers

    // CSRF, first line: a browser names the origin of every cross-site change; refuse any change
    // that comes from a page of another origin, whatever the credential (login included).
    const unsafe = !SAFE_METHODS.has(request.method);
    const origin = request.headers.origin;
    const crossOrigin = unsafe && ((origin !== undefined && origin !== options.publicOrigin) || request.headers['sec-fetch-site'] === 'cross-site');
    if (crossOrigin && access === 'public') throw refuse(request, 'cross_origin', 'csrf_failed');
    if (access === 'public') return;

    const bearer = bearerToken(request);
    const cookie = bearer === undefined ? request.cookies[SESSION_COOKIE] : undefined;
    const kind = bearer !== undefined ? 'api_token' : 'session';
    const token = bearer ?? cookie ?? '';
    const parsed = bearer !== undefined ? presentedToken('rvk', bearer) : cookie !== undefined ? presentedToken('rvc', cookie) : undefined;
    if (!parsed) throw crossOrigin ? refuse(request, 'cross_origin', 'csrf_failed') : refuse(request, bearer !== undefined || cookie !== undefined ? 'malformed_credential' : 'no_credential', 'unauthenticated');
    const tenantDb = tenantHandle(parsed.tenantHex);
    const key = parsed.hashHex;
    const now = Date.now();

    let cached = options.credentials.get(key) ?? (await lookUpAndCache(tenantDb, kind, token, key));
    if (!cached) throw crossOrigin ? refuse(request, 'cross_origin', 'csrf_failed') : refuse(request, 'unknown_credential', 'unauthenticated');
    // Another node may have seen this session more recently, or stepped it up: check before refusing.
    const looksIdle = now - cached.lastSeenAt > cached.idleMs;
    const stepUp = config.stepUp === true || (config.stepUp === 'sessions' && cached.kind === 'session');
    const needsStepUp = stepUp && now - cached.authenticatedAt > STEP_UP_MS;
    if (looksIdle || needsStepUp) {
      cached = await lookUpAndCache(tenantDb, kind, token, key);
      if (!cached) throw new AppError('unauthenticated');
    }
    if (now - cached.lastSeenAt > cached.idleMs) {
      const idle = cached;
      await tenantDb.transaction(async (trx) => {
        const ended = await trx.updateTable('sessions').set({ revoked_at: new Date(), revoke_reason: 'idle' }).where('id', '=', idle.credentialId).where('revoked_at', 'is', null).executeTakeFirst();
        if (Number(ended.numUpdatedRows) === 1) {
          await recordAuditEvent(trx, { action: 'session.revoke', outcome: 'success', actor: { type: 'system' }, target: { type: 'session', id: idle.credentialId }, sourceIp: request.ip, requestId: request.id, details: { user: idle.userId, reason: 'idle' } });
        }
      });
      options.credentials.delete(key);
      throw new AppError('unauthenticated', 'The session ended after a period of inactivity. Sign in again.');
    }

    request.scopedTenantDb = tenantDb;
    // A change from another origin carrying a real credential is an attack on that tenant: audited.
    if (crossOrigin) {
      await deny(request, tenantDb, cached, 'cross_origin');
      throw new AppError('csrf_failed');
    }
    const refusal = cached.gate?.(request.ip);
    if (refusal) {
      await deny(request, tenantDb, cached, refusal);
      throw new AppError('ip_not_allowed');
    }
    if (cached.kind === 'session') {
      const csrfToken = cached.csrfToken;
      // CSRF, second line: a cookie request that changes something carries the session's CSRF token.
      if (unsafe && request.headers['x-csrf-token'] !== csrfToken) {
        await deny(request, tenantDb, cached, 'csrf_token');
        throw new AppError('csrf_failed');
      }
      request.sessionToken = cookie;
      request.principal = cached.principal;
      if (now - cached.lastSeenAt > TOUCH_INTERVAL_MS) {
        const seen = cached;
        seen.lastSeenAt = now;
        await tenantDb.transaction((trx) =>
          trx.updateTable('sessions').set({ last_seen_at: new Date(now) }).where('id', '=', seen.credentialId).execute(),
        );
      }
    } else {
      request.principal = cached.principal;
      if (now - cached.lastSeenAt > TOUCH_INTERVAL_MS) {
        const used = cached;
        used.lastSeenAt = now;
        await tenantDb.transaction((trx) =>
          trx.updateTable('api_tokens').set({ last_used_at: new Date(now) }).where('id', '=', used.credentialId).execute(),
        );
      }
    }

    const userId = cached.userId;
    const granted = cached.permissions;
    const address = request.ip;
    // For connections that outlive the request: the credential must still hold, with the same
    // permissions (a demoted supervisor loses the floor) and from an address the tenant allows.
    request.credentialStillValid = async () => {
      const again = options.credentials.get(key) ?? (await lookUpAndCache(tenantDb, kind, token, key));
      const at = Date.now();
      if (!again || again.userId !== userId || again.stage !== 'active' || again.expiresAt <= at || at - again.lastSeenAt > again.idleMs) return false;
      // A person who now owes an acknowledgement of the policy or training is held at the gate here too.
      if (again.kind === 'session' && at >= again.attestationDueAt) return false;
      if (again.permissions.size !== granted.size || [...granted].some((permission) => !again.permissions.has(permission))) return false;
      return !again.gate?.(address);
    };

    if (access === 'login') {
      if (cached.kind !== 'session') throw new AppError('forbidden', 'This needs a signed-in browser session.');
      return;
    }
    if (cached.stage === 'mfa') throw new AppError('second_factor_required');
    if (cached.stage === 'mfa_enrollment') throw new AppError('mfa_enrollment_required');
    // A person who owes an acknowledgement of the security policy or training reads and acknowledges it first.
    if (cached.kind === 'session' && now >= cached.attestationDueAt && !config.beforeAttestation) throw new AppError('attestation_required');
    if ((config.sessionOnly || config.stepUp === true) && cached.kind !== 'session') {
      await deny(request, tenantDb, cached, 'session_only');
      throw new AppError('forbidden', 'This needs a signed-in browser session; API tokens cannot do it.');
    }
    if (access !== 'authenticated' && !cached.permissions.has(access)) {
      await deny(request, tenantDb, cached, 'permission', { permission: access });
      throw new AppError('forbidden');
    }
    if (stepUp && now - cached.authenticatedAt > STEP_UP_MS) {
      await deny(request, tenantDb, cached, 'step_up');
      throw new AppError('reauthentication_required');
    }
  });
}

export const accessControlPlugin = fp(accessControl, { name: 'ringvakt-access-control', dependencies: ['@fastify/cookie'] });
