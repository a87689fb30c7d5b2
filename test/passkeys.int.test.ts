import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../src/server/types.ts';
import { buildTestApp, capturingLogger, PUBLIC_URL } from './support/app.ts';
import { softwareAuthenticator } from './support/authenticator.ts';
import { newBrowser, send, setPassword, type Browser } from './support/auth.ts';
import { registerPersonalData } from './support/canary.ts';
import { createTestDatabase, serverLabel, type TestDatabase } from './support/database.ts';
import { seedTenant, type SeededTenant } from './support/seed.ts';
import { createUser } from '../src/modules/users/users.repo.ts';

const PASSWORD = 'silver otter canyon seven';

describe(`passkeys (${serverLabel()} server)`, () => {
  let db: TestDatabase;
  let app: App;
  let a: SeededTenant;
  let supervisorEmail: string;
  const capture = capturingLogger('info');
  const authenticator = softwareAuthenticator(new URL(PUBLIC_URL).hostname);

  beforeAll(async () => {
    db = await createTestDatabase({ logger: capture.logger });
    a = await seedTenant(db.handles, 'keys-a');
    await seedTenant(db.handles, 'keys-b');
    const { cipher } = await db.handles.crypto();
    supervisorEmail = 'supervisor@keys-a.example';
    registerPersonalData(supervisorEmail, 'Supervisor of keys-a');
    const supervisor = await db.handles.forTenant(a.tenantId).transaction((trx) => createUser(trx, cipher, { email: supervisorEmail, displayName: 'Supervisor of keys-a', role: 'supervisor' }));
    await setPassword(db.handles, a.tenantId, supervisor.id, PASSWORD);
    app = await buildTestApp(db);
  });
  afterAll(async () => {
    await app?.close();
    await db?.drop();
  });

  const passwordLogin = async (browser: Browser) => send(app, browser, 'POST', '/api/v1/auth/login', { tenant: 'keys-a', email: supervisorEmail, password: PASSWORD });

  it('enrols a passkey as the second factor a supervisor must have', async () => {
    const browser = newBrowser();
    expect((await passwordLogin(browser)).json()).toMatchObject({ stage: 'mfa_enrollment' });
    const options = (await send(app, browser, 'POST', '/api/v1/auth/passkeys/registration-options')).json() as { challenge: string; user: { id: string }; rp: { id: string } };
    expect(options.rp.id).toBe('127.0.0.1');
    // A response made for another site is refused, and spends its challenge.
    const phished = await send(app, browser, 'POST', '/api/v1/auth/passkeys', { name: 'Laptop', response: authenticator.create(options, 'https://ringvakt.evil.example') });
    expect(phished.statusCode).toBe(400);
    expect(phished.json()).toMatchObject({ code: 'passkey_invalid' });
    authenticator.credentials.length = 0;
    const replayed = await send(app, browser, 'POST', '/api/v1/auth/passkeys', { name: 'Laptop', response: authenticator.create(options, PUBLIC_URL) });
    expect(replayed.statusCode).toBe(400);
    authenticator.credentials.length = 0;

    const fresh = (await send(app, browser, 'POST', '/api/v1/auth/passkeys/registration-options')).json() as { challenge: string; user: { id: string } };
    const registered = await send(app, browser, 'POST', '/api/v1/auth/passkeys', { name: 'Laptop', response: authenticator.create(fresh, PUBLIC_URL) });
    expect(registered.statusCode, capture.lines.filter((line) => line.includes('request failed')).join('\n')).toBe(201);
    const body = registered.json() as { stage: string; recoveryCodes: string[] };
    expect(body.stage).toBe('active');
    expect(body.recoveryCodes).toHaveLength(10);
    expect((await send(app, browser, 'GET', '/api/v1/users')).statusCode).toBe(200);
    const listed = (await send(app, browser, 'GET', '/api/v1/auth/passkeys')).json() as { items: { name: string }[] };
    expect(listed.items.map((item) => item.name)).toEqual(['Laptop']);
  });

  it('asks for the passkey after the password; an assertion works once', async () => {
    const browser = newBrowser();
    expect((await passwordLogin(browser)).json()).toMatchObject({ stage: 'mfa' });
    const options = (await send(app, browser, 'POST', '/api/v1/auth/mfa/passkey-options')).json() as { challenge: string; allowCredentials: unknown[] };
    expect(options.allowCredentials).toHaveLength(1);
    const assertion = authenticator.get(options, PUBLIC_URL);
    const proven = await send(app, browser, 'POST', '/api/v1/auth/mfa/passkey', { response: assertion });
    expect(proven.statusCode, proven.body).toBe(200);
    expect(proven.json()).toMatchObject({ stage: 'active' });
    const other = newBrowser();
    await passwordLogin(other);
    const replay = await send(app, other, 'POST', '/api/v1/auth/mfa/passkey', { response: assertion });
    expect(replay.statusCode).toBe(400);
  });

  it('signs in with the passkey alone, in its own organisation only, and refuses a cloned authenticator', async () => {
    const browser = newBrowser();
    const options = (await send(app, browser, 'POST', '/api/v1/auth/passkey-login/options', { tenant: 'keys-a' })).json() as { challenge: string };
    const signedIn = await send(app, browser, 'POST', '/api/v1/auth/passkey-login', { tenant: 'keys-a', response: authenticator.get(options, PUBLIC_URL) });
    expect(signedIn.statusCode, signedIn.body).toBe(200);
    expect(signedIn.json()).toMatchObject({ stage: 'active' });
    expect((await send(app, browser, 'GET', '/api/v1/users')).statusCode).toBe(200);

    const elsewhere = newBrowser();
    const otherOptions = (await send(app, elsewhere, 'POST', '/api/v1/auth/passkey-login/options', { tenant: 'keys-b' })).json() as { challenge: string };
    const wrongTenant = await send(app, elsewhere, 'POST', '/api/v1/auth/passkey-login', { tenant: 'keys-b', response: authenticator.get(otherOptions, PUBLIC_URL) });
    expect(wrongTenant.statusCode).toBe(401);
    expect(wrongTenant.json()).toMatchObject({ code: 'login_failed' });

    // A copy of the key whose counter lags behind the real one.
    const cloned = newBrowser();
    const cloneOptions = (await send(app, cloned, 'POST', '/api/v1/auth/passkey-login/options', { tenant: 'keys-a' })).json() as { challenge: string };
    const refused = await send(app, cloned, 'POST', '/api/v1/auth/passkey-login', { tenant: 'keys-a', response: authenticator.get(cloneOptions, PUBLIC_URL, authenticator.credentials[0], -3) });
    expect(refused.statusCode).toBe(401);
    const failures = await db.superQuery(`SELECT count(*)::int AS n FROM ringvakt.audit_events WHERE action = 'auth.login' AND outcome = 'failed' AND details::text LIKE '%passkey%'`);
    expect(failures.rows[0]!.n).toBeGreaterThanOrEqual(2);
  });
});
