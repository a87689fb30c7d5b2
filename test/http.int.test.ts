import { gunzipSync } from 'node:zlib';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../src/server/app.ts';
import { createTenantWithOwner } from '../src/modules/setup/setup.service.ts';
import type { App } from '../src/server/types.ts';
import { bearer, buildTestApp, capturingLogger, PUBLIC_URL } from './support/app.ts';
import { createTestDatabase, serverLabel, type TestDatabase } from './support/database.ts';
import { seedTenant, type SeededTenant } from './support/seed.ts';

describe(`HTTP API (${serverLabel()} server)`, () => {
  let db: TestDatabase;
  let app: App;
  let a: SeededTenant;
  let b: SeededTenant;
  let shuttingDown = false;

  beforeAll(async () => {
    db = await createTestDatabase();
    a = await seedTenant(db.handles, 'http-a');
    b = await seedTenant(db.handles, 'http-b');
    app = await buildTestApp(db, { isShuttingDown: () => shuttingDown });
  });
  afterAll(async () => {
    await app?.close();
    await db?.drop();
  });

  describe('tenancy over HTTP', () => {
    it("answers 404, not 403, for another tenant's user, and 200 for one's own", async () => {
      const other = await app.inject({ url: `/api/v1/users/${b.owner.id}`, headers: bearer(a.owner.token) });
      expect(other.statusCode).toBe(404);
      expect(other.json()).toMatchObject({ code: 'not_found' });
      const own = await app.inject({ url: `/api/v1/users/${a.agent.id}`, headers: bearer(a.owner.token) });
      expect(own.statusCode).toBe(200);
      expect(own.json()).toMatchObject({ id: a.agent.id, email: a.agent.email, role: 'agent', status: 'active' });
    });

    it("lists only the caller's tenant's users and shows only the caller's tenant", async () => {
      const list = await app.inject({ url: '/api/v1/users', headers: bearer(b.owner.token) });
      expect(list.statusCode).toBe(200);
      const emails = list.json().items.map((user: { email: string }) => user.email).sort();
      expect(emails).toEqual([b.agent.email, b.owner.email].sort());
      const tenant = await app.inject({ url: '/api/v1/tenant', headers: bearer(b.agent.token) });
      expect(tenant.json()).toMatchObject({ id: b.tenantId, slug: 'http-b' });
    });

    it('a token whose tenant part names another tenant is not accepted', async () => {
      const forged = a.owner.token.replace(a.tenantId.replaceAll('-', ''), b.tenantId.replaceAll('-', ''));
      const response = await app.inject({ url: '/api/v1/tenant', headers: bearer(forged) });
      expect(response.statusCode).toBe(401);
    });
  });

  describe('authentication and permissions', () => {
    it('asks for authentication without a token, with a malformed one, or with an unknown one', async () => {
      for (const headers of [{}, { authorization: 'Bearer nonsense' }, bearer(`rvk_${'0'.repeat(32)}_${'A'.repeat(43)}`), { authorization: `Basic ${a.owner.token}` }]) {
        const response = await app.inject({ url: '/api/v1/tenant', headers });
        expect(response.statusCode).toBe(401);
        expect(response.headers['content-type']).toMatch(/^application\/problem\+json/);
        expect(response.json()).toMatchObject({ code: 'unauthenticated', status: 401 });
      }
    });

    it('refuses a permission the role lacks (agent may not list users)', async () => {
      const response = await app.inject({ url: '/api/v1/users', headers: bearer(a.agent.token) });
      expect(response.statusCode).toBe(403);
      expect(response.json()).toMatchObject({ code: 'forbidden' });
    });

    it('never accepts a revoked or expired token, or the token of a disabled user', async () => {
      // Changed before first use, so no cached answer is involved (test/credential-cache.int.test.ts covers that).
      const c = await seedTenant(db.handles, 'http-c');
      const tenantDb = db.handles.forTenant(c.tenantId);
      await tenantDb.transaction((trx) => trx.updateTable('api_tokens').set({ revoked_at: new Date() }).where('user_id', '=', c.agent.id).execute());
      expect((await app.inject({ url: '/api/v1/tenant', headers: bearer(c.agent.token) })).statusCode).toBe(401);
      await tenantDb.transaction((trx) => trx.updateTable('api_tokens').set({ expires_at: new Date(Date.now() - 1000) }).where('user_id', '=', c.owner.id).execute());
      expect((await app.inject({ url: '/api/v1/tenant', headers: bearer(c.owner.token) })).statusCode).toBe(401);
      const d = await seedTenant(db.handles, 'http-d');
      await db.handles.forTenant(d.tenantId).transaction((trx) => trx.updateTable('users').set({ status: 'disabled' }).where('id', '=', d.owner.id).execute());
      expect((await app.inject({ url: '/api/v1/tenant', headers: bearer(d.owner.token) })).statusCode).toBe(401);
      expect((await app.inject({ url: '/api/v1/tenant', headers: bearer(d.agent.token) })).statusCode).toBe(200);
    });

    it("refuses every token of a suspended tenant, at once", async () => {
      const e = await seedTenant(db.handles, 'http-e');
      expect((await app.inject({ url: '/api/v1/tenant', headers: bearer(e.owner.token) })).statusCode).toBe(200);
      await db.superQuery(`UPDATE ringvakt.tenants SET status = 'suspended' WHERE id = $1`, [e.tenantId]);
      const started = Date.now();
      while ((await app.inject({ url: '/api/v1/tenant', headers: bearer(e.owner.token) })).statusCode !== 401) {
        expect(Date.now() - started).toBeLessThan(1000);
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      expect((await app.inject({ url: '/api/v1/tenant', headers: bearer(e.agent.token) })).statusCode).toBe(401);
    });

    it('denies by default: every non-public route asks for authentication', async () => {
      const guarded = app.routeTable.filter((route) => route.access !== 'public');
      expect(guarded.map((route) => `${route.method} ${route.url}`)).toEqual(
        expect.arrayContaining(['GET /api/v1/users', 'GET /api/v1/users/:userId', 'GET /api/v1/tenant']),
      );
      for (const route of guarded) {
        const url = route.url.replace(':userId', a.owner.id);
        const response = await app.inject({ method: route.method as 'GET', url });
        expect(response.statusCode, `${route.method} ${route.url}`).toBe(401);
      }
      const open = app.routeTable.filter((route) => route.access === 'public').map((route) => route.url);
      // The web application's pages and its hashed assets are public (src/server/web-app.ts); the data they show is not.
      expect(open.every((url) => /^\/($|signin$|account$|agent$|wallboard$|(admin|privacy|security|compliance)(\/[a-z]+)?$|assets\/:name$|livez|readyz|metrics|setup|api\/openapi\.json|api\/docs|api\/v1\/setup\/complete|api\/v1\/auth\/login$|api\/v1\/auth\/passkey-login(\/options)?$|api\/v1\/auth\/sso\/|api\/v1\/privacy\/downloads$)/.test(url)), open.join(' ')).toBe(true);
    });

    it('a route without declared access stops the app from building', async () => {
      const broken = await buildApp({ config: { bodyLimitBytes: 1024, trustProxy: [], tls: undefined, publicUrl: PUBLIC_URL }, logger: db.logger, database: db.handles });
      expect(() => broken.get('/api/v1/forgotten', async () => 'open')).toThrow(/declares no valid access/);
      await broken.close();
    });
  });

  describe('errors, headers and documents', () => {
    it('answers unknown routes with problem+json and a request id', async () => {
      const response = await app.inject({ url: '/no/such/thing' });
      expect(response.statusCode).toBe(404);
      const body = response.json();
      expect(body).toEqual({ type: 'urn:ringvakt:problem:not_found', title: 'Not found', status: 404, code: 'not_found', requestId: response.headers['x-request-id'] });
    });

    it('keeps a well-formed incoming request id and replaces a suspicious one', async () => {
      const kept = await app.inject({ url: '/livez', headers: { 'x-request-id': 'trace-1234567890' } });
      expect(kept.headers['x-request-id']).toBe('trace-1234567890');
      const replaced = await app.inject({ url: '/livez', headers: { 'x-request-id': 'evil\nline' } });
      expect(replaced.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
    });

    it('sends the security headers, and no HSTS over plain HTTP', async () => {
      const response = await app.inject({ url: '/livez' });
      const csp = String(response.headers['content-security-policy']);
      expect(csp).toContain("frame-ancestors 'none'");
      expect(csp).toContain("default-src 'self'");
      expect(csp).toContain("object-src 'none'");
      expect(response.headers['x-content-type-options']).toBe('nosniff');
      expect(response.headers['referrer-policy']).toBe('no-referrer');
      expect(response.headers['strict-transport-security']).toBeUndefined();
      expect(response.headers['x-frame-options']).toBe('DENY');
      expect(response.headers['cache-control']).toBe('no-store');
      // Also on answers the router gives before any route runs, and on a 404.
      for (const url of ['/api/v1/users/%E0%A4%A', '/no/such/place']) {
        const early = await app.inject({ url });
        expect(early.statusCode).toBeGreaterThanOrEqual(400);
        expect(String(early.headers['content-security-policy'])).toContain("frame-ancestors 'none'");
        expect(early.headers['x-content-type-options']).toBe('nosniff');
      }
    });

    it('serves OpenAPI 3.1 with the API routes and a browsable page', async () => {
      const spec = await app.inject({ url: '/api/openapi.json' });
      expect(spec.statusCode).toBe(200);
      const document = spec.json();
      expect(document.openapi).toBe('3.1.0');
      expect(Object.keys(document.paths)).toEqual(expect.arrayContaining(['/api/v1/users/{userId}', '/api/v1/tenant', '/api/v1/setup/complete', '/readyz']));
      const page = await app.inject({ url: '/api/docs/' });
      expect(page.statusCode).toBe(200);
      expect(page.body).toContain('swagger');
      expect(String(page.headers['content-security-policy'])).toContain("frame-ancestors 'none'");
    });

    it('reports readiness, and 503 while shutting down', async () => {
      const ready = await app.inject({ url: '/readyz' });
      expect(ready.statusCode).toBe(200);
      expect(ready.json()).toEqual({ status: 'ready', migrations: db.handles.migrations.length });
      shuttingDown = true;
      try {
        const draining = await app.inject({ url: '/readyz' });
        expect(draining.statusCode).toBe(503);
        expect(draining.json()).toMatchObject({ code: 'service_unavailable' });
      } finally {
        shuttingDown = false;
      }
    });

    it('answers /metrics only to this host, or to a scraper with the metrics token', async () => {
      expect((await app.inject({ url: '/metrics', remoteAddress: '192.0.2.5' })).statusCode).toBe(404);
      const token = 'metrics-token-for-the-test-0123456789';
      const guarded = await buildTestApp(db, { metricsToken: token });
      try {
        expect((await guarded.inject({ url: '/metrics' })).statusCode).toBe(401);
        expect((await guarded.inject({ url: '/metrics', headers: bearer(`${token}x`) })).statusCode).toBe(401);
        const scraped = await guarded.inject({ url: '/metrics', remoteAddress: '192.0.2.5', headers: bearer(token) });
        expect(scraped.statusCode).toBe(200);
        expect(scraped.body).toContain('ringvakt_http_requests_total');
      } finally {
        await guarded.close();
      }
    });

    it('exposes request and pool metrics labelled by route template, never by id', async () => {
      await app.inject({ url: `/api/v1/users/${a.owner.id}`, headers: bearer(a.owner.token) });
      const metrics = await app.inject({ url: '/metrics' });
      expect(metrics.statusCode).toBe(200);
      expect(metrics.body).toMatch(/ringvakt_http_requests_total\{method="GET",route="\/api\/v1\/users\/:userId",status="200"\} \d+/);
      expect(metrics.body).toMatch(/ringvakt_http_request_duration_seconds_bucket/);
      expect(metrics.body).toMatch(/ringvakt_db_pool_connections\{state="total"\} \d+/);
      expect(metrics.body).not.toContain(a.owner.id);
    });
  });

  describe('first-owner setup link', () => {
    it('sets a password once: weak passwords are refused without spending the link', async () => {
      const c = await seedTenant(db.handles, 'setup-c');
      const token = new URL(c.setupLink).hash.replace('#token=', '');
      const weak = await app.inject({ method: 'POST', url: '/api/v1/setup/complete', payload: { token, password: 'short' } });
      expect(weak.statusCode).toBe(400);
      expect(weak.json()).toMatchObject({ code: 'password_too_weak' });
      const good = await app.inject({ method: 'POST', url: '/api/v1/setup/complete', payload: { token, password: 'correct horse battery staple' } });
      expect(good.statusCode).toBe(204);
      const again = await app.inject({ method: 'POST', url: '/api/v1/setup/complete', payload: { token, password: 'another long passphrase' } });
      expect(again.statusCode).toBe(400);
      expect(again.json()).toMatchObject({ code: 'setup_link_invalid' });
      const stored = await db.superQuery('SELECT password_hash FROM ringvakt.users WHERE id = $1', [c.owner.id]);
      expect(stored.rows[0]!.password_hash).toMatch(/^\$argon2id\$v=19\$m=65536,t=3,p=1\$/);
    });

    it('refuses, rather than silently alters, a password that is not valid Unicode', async () => {
      const c = await seedTenant(db.handles, 'setup-u');
      const token = new URL(c.setupLink).hash.replace('#token=', '');
      const response = await app.inject({
        method: 'POST',
        url: '/api/v1/setup/complete',
        headers: { 'content-type': 'application/json' },
        payload: `{"token":"${token}","password":"long enough pass\\ud800phrase"}`,
      });
      expect(response.statusCode).toBe(400);
      expect(response.json()).toMatchObject({ code: 'invalid_utf8' });
      const good = await app.inject({ method: 'POST', url: '/api/v1/setup/complete', payload: { token, password: 'correct horse battery staple' } });
      expect(good.statusCode).toBe(204);
    });

    it('creates a tenant and its owner together or not at all', async () => {
      await expect(
        createTenantWithOwner(db.handles, { slug: 'half-made', name: 'Half', ownerEmail: `${'x'.repeat(330)}@example.com`, ownerName: 'X', publicUrl: 'http://x' }),
      ).rejects.toMatchObject({ code: 'validation_failed' });
      expect(await db.handles.systemDb.tenantIdBySlug('half-made')).toBeUndefined();
    });

    it('refuses an expired link', async () => {
      const c = await seedTenant(db.handles, 'setup-d');
      await db.superQuery(`UPDATE ringvakt.setup_tokens SET expires_at = now() - interval '1 second' WHERE tenant_id = $1`, [c.tenantId]);
      const token = new URL(c.setupLink).hash.replace('#token=', '');
      const response = await app.inject({ method: 'POST', url: '/api/v1/setup/complete', payload: { token, password: 'correct horse battery staple' } });
      expect(response.json()).toMatchObject({ code: 'setup_link_invalid' });
    });

    it('serves the setup page of the web application, whose script reads the token from the fragment', async () => {
      const page = await app.inject({ url: '/setup' });
      expect(page.statusCode).toBe(200);
      expect(page.headers['content-type']).toMatch(/text\/html/);
      expect(page.headers['cache-control']).toBe('no-store');
      expect(page.headers['content-security-policy']).toContain("script-src 'self'");
      // No inline script: the only scripts are files from /assets (the CSP would refuse anything else).
      expect(page.body).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/);
      const src = /<script type="module" crossorigin src="(\/assets\/[^"]+\.js)"/.exec(page.body)?.[1];
      expect(src).toBeDefined();
      const script = await app.inject({ url: src!, headers: { 'accept-encoding': 'gzip, deflate' } });
      expect(script.statusCode).toBe(200);
      expect(script.headers['content-encoding']).toBe('gzip');
      expect(script.headers['cache-control']).toBe('public, max-age=31536000, immutable');
      expect(gunzipSync(script.rawPayload).toString('utf8')).toContain('location.hash');
      // Only files of the build are served; nothing else of the file system is reachable.
      for (const url of ['/assets/..%2F..%2Fpackage.json', '/assets/no-such.js', '/admin/..%2F..%2Fetc%2Fpasswd', '/admin/nonsense']) {
        expect((await app.inject({ url })).statusCode, url).toBe(404);
      }
    });
  });
});

describe('TLS', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => db?.drop());

  it('serves HTTPS from certificate files and then sends HSTS', async () => {
    const folder = mkdtempSync(path.join(os.tmpdir(), 'ringvakt-tls-'));
    const certFile = path.join(folder, 'cert.pem');
    const keyFile = path.join(folder, 'key.pem');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', keyFile, '-out', certFile], { stdio: 'ignore' });
    const app = await buildTestApp(db, { tls: { certFile, keyFile } });
    await app.listen({ host: '127.0.0.1', port: 0 });
    try {
      const { port } = app.server.address() as { port: number };
      const response = await new Promise<{ status: number; headers: Record<string, unknown> }>((resolve, reject) => {
        https
          .get({ host: '127.0.0.1', port, path: '/livez', ca: readFileSync(certFile) }, (res) => {
            res.resume();
            resolve({ status: res.statusCode ?? 0, headers: res.headers });
          })
          .on('error', reject);
      });
      expect(response.status).toBe(200);
      expect(response.headers['strict-transport-security']).toBe('max-age=31536000; includeSubDomains');
      expect(String(response.headers['content-security-policy'])).toContain('upgrade-insecure-requests');
    } finally {
      await app.close();
    }
  });
});

describe('trusted proxies', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => db?.drop());

  const loggedAddress = async (trustProxy: string[], remoteAddress: string) => {
    const capture = capturingLogger('info');
    const app = await buildTestApp(db, { logger: capture.logger, trustProxy });
    try {
      await app.inject({ url: '/livez', remoteAddress, headers: { 'x-forwarded-for': '203.0.113.9' } });
    } finally {
      await app.close();
    }
    const line = capture.lines.map((text) => JSON.parse(text) as { req?: { ip?: string } }).find((entry) => entry.req?.ip);
    return line?.req?.ip;
  };

  it('believes X-Forwarded-For only from a configured proxy address', async () => {
    expect(await loggedAddress([], '127.0.0.1')).toBe('127.0.0.1');
    expect(await loggedAddress(['127.0.0.1'], '127.0.0.1')).toBe('203.0.113.9');
    expect(await loggedAddress(['10.0.0.0/8'], '192.0.2.7')).toBe('192.0.2.7');
    expect(await loggedAddress(['10.0.0.0/8'], '10.1.2.3')).toBe('203.0.113.9');
  });
});
