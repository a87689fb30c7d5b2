import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../src/server/types.ts';
import { bearer, buildTestApp } from './support/app.ts';
import { createTestDatabase, serverLabel, type TestDatabase } from './support/database.ts';
import { seedTenant, type SeededTenant } from './support/seed.ts';

type BadRequest = { name: string; method?: string; url?: string; headers?: Record<string, string>; payload?: string | Buffer };

/**
 * Every kind of bad input, sent to every route the app has: the answer is always a 4xx
 * problem+json, never a 500, and no table changes.
 */
describe(`bad input to every route (${serverLabel()} server)`, () => {
  let db: TestDatabase;
  let app: App;
  let tenant: SeededTenant;
  let baseUrl: string;

  beforeAll(async () => {
    db = await createTestDatabase();
    tenant = await seedTenant(db.handles, 'bad-input');
    app = await buildTestApp(db);
    await app.listen({ host: '127.0.0.1', port: 0 });
    baseUrl = `127.0.0.1:${(app.server.address() as { port: number }).port}`;
  });
  afterAll(async () => {
    await app?.close();
    await db?.drop();
  });

  const snapshot = async () => {
    const tables = await db.superQuery<{ table_name: string }>(`SELECT table_name FROM information_schema.tables WHERE table_schema = 'ringvakt' ORDER BY 1`);
    const counts: Record<string, unknown> = {};
    // The ledger grows by design (denials are audited): compared below by what it gained.
    for (const { table_name } of tables.rows.filter((row) => !['audit_events', 'audit_tree_nodes'].includes(row.table_name))) {
      const rows = await db.superQuery(`SELECT md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), '')) AS digest FROM ringvakt.${table_name} t`);
      counts[table_name] = rows.rows[0]!.digest;
    }
    const audited = await db.superQuery(`SELECT md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), '')) AS digest FROM ringvakt.audit_events t WHERE action <> 'auth.denied'`);
    counts.audit_events_other_than_denials = audited.rows[0]!.digest;
    return counts;
  };

  const json = { 'content-type': 'application/json' };
  const badInputs = (url: string): BadRequest[] => [
    { name: 'malformed JSON', headers: json, payload: '{"token": ' },
    { name: 'JSON that is not an object', headers: json, payload: '"just a string"' },
    { name: 'wrong types', headers: json, payload: JSON.stringify({ token: 123, password: ['x'] }) },
    { name: 'unknown fields', headers: json, payload: JSON.stringify({ token: 'rvs_x', password: 'long enough password', isAdmin: true }) },
    { name: 'prototype poisoning', headers: json, payload: '{"token":"x","password":"y","__proto__":{"admin":true}}' },
    { name: 'oversize body', headers: json, payload: JSON.stringify({ token: 'x', password: 'y'.repeat(80 * 1024) }) },
    { name: 'invalid UTF-8 in the body', headers: json, payload: Buffer.concat([Buffer.from('{"token":"'), Buffer.from([0xff, 0xfe, 0xc3]), Buffer.from('","password":"aaaaaaaaaaaaaa"}')]) },
    { name: 'lone surrogate escapes', headers: json, payload: '{"token":"x","password":"pass\\ud800word-long-enough"}' },
    { name: 'wrong content type', headers: { 'content-type': 'text/plain' }, payload: 'token=x' },
    { name: 'unknown query field', method: 'GET', url: `${url}${url.includes('?') ? '&' : '?'}isAdmin=true` },
    { name: 'wrongly typed query', method: 'GET', url: `${url}?limit=lots` },
    { name: 'very long URL', method: 'GET', url: `${url}?q=${'a'.repeat(6000)}` },
    { name: 'path traversal appended', method: 'GET', url: `${url}/../../../../etc/passwd` },
    { name: 'encoded path traversal appended', method: 'GET', url: `${url}/..%2F..%2F..%2Fetc%2Fpasswd` },
    { name: 'invalid UTF-8 in the URL', method: 'GET', url: `${url}/%FF%FE` },
  ];

  const expectProblem = (response: { statusCode: number; headers: Record<string, unknown>; body: string }, label: string) => {
    expect(response.statusCode, label).toBeGreaterThanOrEqual(400);
    expect(response.statusCode, label).toBeLessThan(500);
    expect(String(response.headers['content-type']), label).toMatch(/^application\/problem\+json/);
    const body = JSON.parse(response.body) as { code: string; status: number };
    expect(body.status, label).toBe(response.statusCode);
    expect(body.code, label).toMatch(/^[a-z0-9_]+$/);
    expect(response.body, label).not.toMatch(/at .*\.ts:\d+|node_modules|SELECT |stack/);
  };

  it('answers each bad input to each route with a 4xx problem and changes nothing', async () => {
    // The token's first use records its last-use time (then at most once a minute): before the snapshot.
    expect((await app.inject({ url: '/api/v1/tenant', headers: bearer(tenant.owner.token) })).statusCode).toBe(200);
    const before = await snapshot();
    const routes = app.routeTable.filter((route) => !route.url.startsWith('/api/docs/static') && route.method !== 'HEAD');
    expect(routes.length).toBeGreaterThan(8);
    let sent = 0;
    for (const route of routes) {
      const url = route.url.replace(':userId', tenant.owner.id).replace('/*', '/index.html');
      for (const bad of badInputs(url)) {
        const response = await app.inject({
          method: (bad.method ?? route.method) as 'GET',
          url: bad.url ?? url,
          headers: { ...bearer(tenant.owner.token), ...bad.headers },
          ...(bad.payload !== undefined ? { payload: bad.payload } : {}),
        });
        expectProblem(response, `${bad.name} → ${route.method} ${route.url}`);
        sent += 1;
      }
    }
    expect(sent).toBeGreaterThan(100);
    expect(await snapshot()).toEqual(before);
  });

  it('answers malformed ids in the path with 400, not 500', async () => {
    for (const id of ['not-a-uuid', '..%2F..%2Fetc%2Fpasswd', "1' OR '1'='1", 'A'.repeat(300), '%00']) {
      const response = await app.inject({ url: `/api/v1/users/${id}`, headers: bearer(tenant.owner.token) });
      expectProblem(response, id);
    }
  });

  const raw = (request: string): Promise<string> =>
    new Promise((resolve, reject) => {
      const [host, port] = baseUrl.split(':');
      const socket = connect({ host, port: Number(port) }, () => socket.end(request));
      let received = '';
      socket.on('data', (chunk) => (received += chunk.toString('utf8')));
      socket.on('end', () => resolve(received));
      socket.on('error', reject);
      socket.setTimeout(5000, () => socket.destroy(new Error('timeout')));
    });

  it('answers oversize headers with 431 problem+json from the HTTP parser itself', async () => {
    const response = await raw(`GET /livez HTTP/1.1\r\nHost: x\r\nX-Filler: ${'a'.repeat(20_000)}\r\n\r\n`);
    expect(response).toMatch(/^HTTP\/1.1 431 /);
    expect(response).toContain('application/problem+json');
    expect(response).toContain('"code":"headers_too_large"');
  });

  it('answers a garbled request line with 400 problem+json', async () => {
    const response = await raw('GET /livez HTTP/9.9 nonsense\r\n\r\n');
    expect(response).toMatch(/^HTTP\/1.1 400 /);
    expect(response).toContain('"code":"bad_request"');
  });
});
