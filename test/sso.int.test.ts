import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../src/server/types.ts';
import { buildTestApp, PUBLIC_URL } from './support/app.ts';
import { newBrowser, send, sessionFor } from './support/auth.ts';
import { registerPersonalData } from './support/canary.ts';
import { createTestDatabase, serverLabel, type TestDatabase } from './support/database.ts';
import { startIdentityProvider } from './support/identity-provider.ts';
import { seedTenant, type SeededTenant } from './support/seed.ts';

/** Single sign-on end to end against a real OpenID Connect provider on loopback. */
describe(`single sign-on with OpenID Connect (${serverLabel()} server)`, () => {
  let db: TestDatabase;
  let app: App;
  let a: SeededTenant;
  let idp: Awaited<ReturnType<typeof startIdentityProvider>>;
  const callback = `${PUBLIC_URL}/api/v1/auth/sso/sso-a/callback`;

  beforeAll(async () => {
    db = await createTestDatabase();
    a = await seedTenant(db.handles, 'sso-a');
    app = await buildTestApp(db);
    idp = await startIdentityProvider({ clientId: 'ringvakt', clientSecret: 'a-client-secret-of-enough-length', redirectUris: [callback] });
    for (const account of [
      { sub: 'alice-1', email: 'alice@sso-a.example', emailVerified: true, name: 'Alice Agent', groups: ['cc-agents'] },
      { sub: 'sven-2', email: 'sven@sso-a.example', emailVerified: true, name: 'Sven Supervisor', groups: ['cc-supervisors', 'cc-agents'] },
      { sub: 'nina-3', email: 'nina@sso-a.example', emailVerified: true, name: 'Nina Nobody', groups: ['marketing'] },
      { sub: 'owner-4', email: a.owner.email, emailVerified: false, name: 'Impostor', groups: ['cc-supervisors'] },
      { sub: 'owner-5', email: a.owner.email, emailVerified: true, name: 'Verified impostor', groups: ['cc-supervisors'] },
    ]) {
      idp.accounts.set(account.sub, account);
      registerPersonalData(account.email, account.name);
    }
    const owner = await sessionFor(db.handles, a.tenantId, a.owner.id);
    const configured = await send(app, owner, 'PUT', '/api/v1/sso/provider', {
      issuer: idp.issuer,
      clientId: 'ringvakt',
      clientSecret: 'a-client-secret-of-enough-length',
      scopes: 'openid email profile groups',
      roleMappings: [
        { group: 'cc-supervisors', role: 'supervisor' },
        { group: 'cc-agents', role: 'agent' },
      ],
    });
    expect(configured.statusCode, configured.body).toBe(204);
  });
  afterAll(async () => {
    await app?.close();
    await idp?.close();
    await db?.drop();
  });

  const signIn = async (account: string) => {
    const browser = newBrowser();
    const start = await send(app, browser, 'GET', '/api/v1/auth/sso/sso-a/start');
    expect(start.statusCode).toBe(302);
    expect(String([start.headers['set-cookie']].flat()[0])).toMatch(/^__Host-rv_sso=.*HttpOnly; Secure; SameSite=Lax/);
    const location = new URL(String(start.headers.location));
    expect(location.origin).toBe(idp.issuer);
    expect(location.searchParams.get('code_challenge_method')).toBe('S256');
    expect(location.searchParams.get('state')).toMatch(/.{20,}/);
    expect(location.searchParams.get('nonce')).toMatch(/.{20,}/);
    const back = await idp.signIn(location.href, account, callback);
    const response = await send(app, browser, 'GET', back.slice(PUBLIC_URL.length));
    return { browser, response, back };
  };

  it('provisions a user just in time with the role its groups map to', async () => {
    const { browser, response } = await signIn('alice-1');
    expect(response.statusCode, response.body).toBe(200);
    const cookie = [response.headers['set-cookie']].flat().find((line) => String(line).startsWith('__Host-rv_session='));
    expect(String(cookie)).toMatch(/HttpOnly; Secure; SameSite=Strict/);
    const session = (await send(app, browser, 'GET', '/api/v1/auth/session')).json() as { stage: string; role: string };
    expect(session).toMatchObject({ stage: 'active', role: 'agent' });
    const users = await db.superQuery(`SELECT role, status FROM ringvakt.users u JOIN ringvakt.sso_identities s ON s.user_id = u.id AND s.tenant_id = u.tenant_id WHERE s.subject = 'alice-1'`);
    expect(users.rows).toEqual([{ role: 'agent', status: 'active' }]);
  });

  it('keeps the role in step with the groups, and enforces MFA for roles that need it', async () => {
    const { browser, response } = await signIn('sven-2');
    expect(response.statusCode).toBe(200);
    const session = (await send(app, browser, 'GET', '/api/v1/auth/session')).json() as { stage: string; role: string };
    expect(session).toMatchObject({ stage: 'mfa_enrollment', role: 'supervisor' });
    idp.accounts.set('sven-2', { ...idp.accounts.get('sven-2')!, groups: ['cc-agents'] });
    const again = await signIn('sven-2');
    expect((await send(app, again.browser, 'GET', '/api/v1/auth/session')).json()).toMatchObject({ stage: 'active', role: 'agent' });
    const changes = await db.superQuery(`SELECT count(*)::int AS n FROM ringvakt.audit_events WHERE action = 'user.update' AND details->>'via' = 'sso' AND details ? 'to'`);
    expect(changes.rows[0]!.n).toBe(1);
  });

  it('refuses users whose groups map to no role, unverified e-mail links, and replayed callbacks', async () => {
    const nobody = await signIn('nina-3');
    expect(nobody.response.statusCode).toBe(400);
    expect(nobody.response.json()).toMatchObject({ code: 'sso_failed' });
    // An unverified address that matches the owner's neither links to the owner nor creates anyone.
    const impostor = await signIn('owner-4');
    expect(impostor.response.statusCode).toBe(400);
    // Nor does a verified one: a provider never takes over an account someone already uses.
    const verifiedImpostor = await signIn('owner-5');
    expect(verifiedImpostor.response.statusCode).toBe(400);
    const linked = await db.superQuery(`SELECT count(*)::int AS n FROM ringvakt.sso_identities WHERE user_id = $1`, [a.owner.id]);
    expect(linked.rows[0]!.n).toBe(0);
    // A callback finished in another browser (login CSRF) is refused, and spends the state.
    const stranger = newBrowser();
    const started = await send(app, stranger, 'GET', '/api/v1/auth/sso/sso-a/start');
    const stolen = await idp.signIn(String(started.headers.location), 'alice-1', callback);
    expect((await app.inject({ url: stolen.slice(PUBLIC_URL.length) })).statusCode).toBe(400);
    expect((await send(app, stranger, 'GET', stolen.slice(PUBLIC_URL.length))).statusCode).toBe(400);
    // The same callback twice: its state is spent.
    const first = await signIn('alice-1');
    expect(first.response.statusCode).toBe(200);
    const replay = await send(app, first.browser, 'GET', first.back.slice(PUBLIC_URL.length));
    expect(replay.statusCode).toBe(400);
    // A forged state never started here.
    const forged = await app.inject({ url: `/api/v1/auth/sso/sso-a/callback?code=abc&state=${'x'.repeat(43)}` });
    expect(forged.statusCode).toBe(400);
    const failures = await db.superQuery(`SELECT details->>'reason' AS reason FROM ringvakt.audit_events WHERE action = 'auth.login' AND outcome = 'failed' ORDER BY occurred_at`);
    expect(failures.rows.map((row) => row.reason)).toEqual(expect.arrayContaining(['no_role_for_groups', 'no_verified_email', 'account_exists_not_linked', 'unknown_state_or_other_browser']));
    // Taken out of every mapped group at the provider: the linked user's access ends too.
    idp.accounts.set('alice-1', { ...idp.accounts.get('alice-1')!, groups: ['marketing'] });
    expect((await signIn('alice-1')).response.statusCode).toBe(400);
  });

  it('shows the provider to security managers without its secret', async () => {
    const owner = await sessionFor(db.handles, a.tenantId, a.owner.id);
    const view = await send(app, owner, 'GET', '/api/v1/sso/provider');
    expect(view.json()).toMatchObject({ issuer: idp.issuer, hasClientSecret: true, redirectUri: callback });
    expect(view.body).not.toContain('a-client-secret');
    const stored = await db.superQuery(`SELECT client_secret_ciphertext FROM ringvakt.oidc_providers`);
    expect((stored.rows[0]!.client_secret_ciphertext as Buffer).toString('latin1')).not.toContain('a-client-secret');
  });
});
