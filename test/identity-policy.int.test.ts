import { hash } from '@node-rs/argon2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../src/server/types.ts';
import { bearer, buildTestApp } from './support/app.ts';
import { newBrowser, send, sessionFor } from './support/auth.ts';
import { createTestDatabase, serverLabel, type TestDatabase } from './support/database.ts';
import { seedTenant, type SeededTenant } from './support/seed.ts';

const PASSWORD = 'ｔｅａｌ harbour ferry thirteen'; // full-width letters: NFKC makes them "teal"

/** Tenant policy, custom roles, password upgrades and session lifetimes. */
describe(`identity policy (${serverLabel()} server)`, () => {
  let db: TestDatabase;
  let app: App;
  let a: SeededTenant;

  beforeAll(async () => {
    db = await createTestDatabase();
    a = await seedTenant(db.handles, 'policy-a');
    app = await buildTestApp(db);
  });
  afterAll(async () => {
    await app?.close();
    await db?.drop();
  });

  const login = (password: string) => send(app, newBrowser(), 'POST', '/api/v1/auth/login', { tenant: 'policy-a', email: a.agent.email, password });

  it('accepts the password in any Unicode form that normalises alike, and upgrades a weaker stored hash at login', async () => {
    // A hash made with OWASP's minimum, as an older release would have stored it.
    const weaker = await hash(PASSWORD.normalize('NFKC'), { algorithm: 2, memoryCost: 19 * 1024, timeCost: 2, parallelism: 1 });
    await db.superQuery(`UPDATE ringvakt.users SET password_hash = $1 WHERE tenant_id = $2 AND id = $3`, [weaker, a.tenantId, a.agent.id]);
    expect((await login('teal harbour ferry thirteen')).statusCode).toBe(200);
    const stored = await db.superQuery(`SELECT password_hash FROM ringvakt.users WHERE tenant_id = $1 AND id = $2`, [a.tenantId, a.agent.id]);
    expect(stored.rows[0]!.password_hash).toMatch(/^\$argon2id\$v=19\$m=65536,t=3,p=1\$/);
    expect((await login(PASSWORD)).statusCode).toBe(200);
  });

  it('requires a second factor of everyone when the tenant says so', async () => {
    const owner = await sessionFor(db.handles, a.tenantId, a.owner.id);
    const policy = { mfaRequiredForAll: true, sessionIdleMinutes: 30, sessionAbsoluteHours: 12, ipAllowList: [] };
    expect((await send(app, owner, 'PUT', '/api/v1/security-policy', policy)).statusCode).toBe(200);
    const agent = await login(PASSWORD);
    expect(agent.json()).toMatchObject({ stage: 'mfa_enrollment' });
    expect((await send(app, owner, 'PUT', '/api/v1/security-policy', { ...policy, mfaRequiredForAll: false })).statusCode).toBe(200);
    expect((await login(PASSWORD)).json()).toMatchObject({ stage: 'active' });
  });

  it('gives a custom role exactly its permissions, changes them at once, and refuses escalation', async () => {
    const owner = await sessionFor(db.handles, a.tenantId, a.owner.id);
    // More than an agent sees needs a second factor: such a role cannot opt out of MFA.
    const lax = await send(app, owner, 'POST', '/api/v1/roles', { name: 'quality-reviewer', permissions: ['audit:read', 'tenant:read'], requiresMfa: false });
    expect(lax.statusCode).toBe(400);
    const created = await send(app, owner, 'POST', '/api/v1/roles', { name: 'quality-reviewer', permissions: ['audit:read', 'tenant:read'] });
    expect(created.statusCode, created.body).toBe(201);
    const roleId = (created.json() as { id: string }).id;
    expect((await send(app, owner, 'PATCH', `/api/v1/users/${a.agent.id}`, { customRoleId: roleId })).statusCode).toBe(200);
    const reviewer = await sessionFor(db.handles, a.tenantId, a.agent.id);
    expect((await send(app, reviewer, 'GET', '/api/v1/audit/checkpoint')).statusCode).not.toBe(403);
    expect((await send(app, reviewer, 'GET', '/api/v1/users')).statusCode).toBe(403);
    // Narrowed: the holder loses it with the next request.
    expect((await send(app, owner, 'PUT', `/api/v1/roles/${roleId}`, { name: 'quality-reviewer', permissions: ['tenant:read'], requiresMfa: false })).statusCode).toBe(200);
    expect((await send(app, reviewer, 'GET', '/api/v1/audit/checkpoint')).statusCode).toBe(403);
    // A role in use cannot be deleted; nobody grants what they lack.
    expect((await send(app, owner, 'DELETE', `/api/v1/roles/${roleId}`)).statusCode).toBe(409);
    const supervisorId = await db.handles.forTenant(a.tenantId).transaction(async (trx) => {
      await trx.updateTable('users').set({ role: 'supervisor', custom_role_id: null }).where('id', '=', a.agent.id).execute();
      return a.agent.id;
    });
    const supervisor = await sessionFor(db.handles, a.tenantId, supervisorId);
    const escalate = await send(app, supervisor, 'POST', '/api/v1/roles', { name: 'sneaky', permissions: ['users:manage'] });
    expect(escalate.statusCode).toBe(403);
    await db.handles.forTenant(a.tenantId).transaction((trx) => trx.updateTable('users').set({ role: 'agent' }).where('id', '=', a.agent.id).execute());
  });

  it('ends sessions at their absolute lifetime, and refuses expired and swapped cookies', async () => {
    const browser = newBrowser();
    await send(app, browser, 'POST', '/api/v1/auth/login', { tenant: 'policy-a', email: a.agent.email, password: PASSWORD });
    const session = await db.superQuery(`SELECT expires_at - created_at AS lifetime FROM ringvakt.sessions WHERE tenant_id = $1 AND user_id = $2 ORDER BY created_at DESC LIMIT 1`, [a.tenantId, a.agent.id]);
    expect(session.rows[0]!.lifetime).toMatchObject({ hours: 12 });
    expect((await send(app, browser, 'GET', '/api/v1/tenant')).statusCode).toBe(200);
    await db.superQuery(`UPDATE ringvakt.sessions SET expires_at = now() - interval '1 second' WHERE tenant_id = $1 AND user_id = $2`, [a.tenantId, a.agent.id]);
    await db.superQuery(`NOTIFY ringvakt_auth, '${a.tenantId}'`);
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect((await send(app, browser, 'GET', '/api/v1/tenant')).statusCode).toBe(401);
  });

  it('asks a session, but not a scoped API token, for a recent sign-in before exporting the audit log', async () => {
    const auditorToken = a.owner.token;
    expect((await app.inject({ url: '/api/v1/audit/events', headers: bearer(auditorToken) })).statusCode).toBe(200);
    const owner = await sessionFor(db.handles, a.tenantId, a.owner.id);
    expect((await send(app, owner, 'GET', '/api/v1/audit/events')).statusCode).toBe(200);
    await db.superQuery(`UPDATE ringvakt.sessions SET authenticated_at = now() - interval '10 minutes' WHERE tenant_id = $1`, [a.tenantId]);
    await db.superQuery(`NOTIFY ringvakt_auth, '${a.tenantId}'`);
    await new Promise((resolve) => setTimeout(resolve, 100));
    const stale = await send(app, owner, 'GET', '/api/v1/audit/events');
    expect(stale.statusCode).toBe(403);
    expect(stale.json()).toMatchObject({ code: 'reauthentication_required' });
  });

  it('lets users:manage act only on users who hold no more than the manager', async () => {
    const owner = await sessionFor(db.handles, a.tenantId, a.owner.id);
    const { cipher } = await db.handles.crypto();
    const admin = await db.handles.forTenant(a.tenantId).transaction(async (trx) => {
      const { createUser } = await import('../src/modules/users/users.repo.ts');
      const user = await createUser(trx, cipher, { email: 'admin@policy-a.example', displayName: 'Admin of policy-a', role: 'admin' });
      await trx.updateTable('users').set({ status: 'active' }).where('id', '=', user.id).execute();
      return user;
    });
    const role = await send(app, owner, 'POST', '/api/v1/roles', { name: 'people-manager', permissions: ['users:manage', 'users:read', 'tenant:read'] });
    expect(role.statusCode).toBe(201);
    expect((await send(app, owner, 'PATCH', `/api/v1/users/${a.agent.id}`, { customRoleId: (role.json() as { id: string }).id })).statusCode).toBe(200);
    const manager = await sessionFor(db.handles, a.tenantId, a.agent.id);
    const demote = await send(app, manager, 'PATCH', `/api/v1/users/${admin.id}`, { role: 'agent' });
    expect(demote.statusCode).toBe(403);
    expect((await send(app, manager, 'POST', `/api/v1/users/${admin.id}/disable`)).statusCode).toBe(403);
    expect((await send(app, manager, 'DELETE', `/api/v1/users/${admin.id}/sessions`)).statusCode).toBe(403);
    await db.handles.forTenant(a.tenantId).transaction((trx) => trx.updateTable('users').set({ role: 'agent', custom_role_id: null }).where('id', '=', a.agent.id).execute());
  });

  it('locks the second factor after repeated wrong codes, and a correct password does not lift it', async () => {
    const { cipher } = await db.handles.crypto();
    const { startTotpEnrollment, confirmTotpEnrollment } = await import('../src/modules/auth/mfa.ts');
    const { totpAt } = await import('./support/auth.ts');
    const secret = await db.handles.forTenant(a.tenantId).transaction(async (trx) => {
      const started = await startTotpEnrollment(trx, cipher, { id: a.agent.id, email: a.agent.email });
      await confirmTotpEnrollment(trx, cipher, a.agent.id, await totpAt(started.secret, Math.floor(Date.now() / 1000) - 30));
      return started.secret;
    });
    const statuses: number[] = [];
    for (let round = 0; round < 3; round += 1) {
      const browser = newBrowser();
      expect((await send(app, browser, 'POST', '/api/v1/auth/login', { tenant: 'policy-a', email: a.agent.email, password: PASSWORD })).json()).toMatchObject({ stage: 'mfa' });
      for (let guess = 0; guess < 3; guess += 1) {
        statuses.push((await send(app, browser, 'POST', '/api/v1/auth/mfa/verify', { method: 'totp', code: String(100000 + round * 10 + guess) })).statusCode);
      }
    }
    // Four wrong codes; the fifth locks (and says so); locked since — across three fresh password logins.
    expect(statuses.slice(0, 4)).toEqual([400, 400, 400, 400]);
    expect(statuses.slice(4)).toEqual([429, 429, 429, 429, 429]);
    const browser = newBrowser();
    await send(app, browser, 'POST', '/api/v1/auth/login', { tenant: 'policy-a', email: a.agent.email, password: PASSWORD });
    const right = await send(app, browser, 'POST', '/api/v1/auth/mfa/verify', { method: 'totp', code: await totpAt(secret, Math.floor(Date.now() / 1000)) });
    expect(right.statusCode).toBe(429);
  });
});
