import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../src/server/types.ts';
import { FAILURE_FLOOR_MS } from '../src/modules/auth/login.service.ts';
import { bearer, buildTestApp, capturingLogger, PUBLIC_URL } from './support/app.ts';
import { createTestDatabase, serverLabel, type TestDatabase } from './support/database.ts';
import { seedTenant, type SeededTenant } from './support/seed.ts';
import { keepCookies, newBrowser, send, sessionFor, setPassword, totpAt, type Browser } from './support/auth.ts';

const OWNER_PASSWORD = 'violet harbour lantern 42';
const AGENT_PASSWORD = 'quiet meadow copper kettle';

describe(`identity and access (${serverLabel()} server)`, () => {
  const capture = capturingLogger('info');
  let db: TestDatabase;
  let app: App;
  let a: SeededTenant;
  let b: SeededTenant;

  beforeAll(async () => {
    db = await createTestDatabase({ logger: capture.logger });
    a = await seedTenant(db.handles, 'ident-a');
    b = await seedTenant(db.handles, 'ident-b');
    await setPassword(db.handles, a.tenantId, a.owner.id, OWNER_PASSWORD);
    await setPassword(db.handles, a.tenantId, a.agent.id, AGENT_PASSWORD);
    app = await buildTestApp(db);
  });
  afterAll(async () => {
    await app?.close();
    await db?.drop();
  });

  const login = (browser: Browser, email: string, password: string, tenant = 'ident-a', headers: Record<string, string> = {}) =>
    send(app, browser, 'POST', '/api/v1/auth/login', { tenant, email, password }, headers);
  const audited = async (action: string, outcome?: string) =>
    (await db.superQuery<{ n: number }>(`SELECT count(*)::int AS n FROM ringvakt.audit_events WHERE action = $1 ${outcome ? 'AND outcome = $2' : ''}`, outcome ? [action, outcome] : [action])).rows[0]!.n;

  /** Changes made behind the server's back (in SQL) reach its caches as real changes do: by notification. */
  const forgetCachedCredentials = async () => {
    await db.superQuery(`NOTIFY ringvakt_auth, '${a.tenantId}'`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  };

  let ownerSecret = '';
  /** The moment whose TOTP code confirmed the enrolment: that code, and every earlier one, is spent. */
  let spentAt = 0;
  let recoveryCodes: string[] = [];
  let owner: Browser;

  it('an owner must enrol a second factor before the login finishes; the session rotates at each stage', async () => {
    owner = newBrowser();
    const first = await login(owner, a.owner.email, OWNER_PASSWORD);
    expect(first.statusCode).toBe(200);
    expect(first.json()).toMatchObject({ stage: 'mfa_enrollment' });
    const cookie = [first.headers['set-cookie']].flat().find((line) => String(line).startsWith('__Host-rv_session='));
    expect(cookie).toMatch(/; Path=\/; .*HttpOnly; Secure; SameSite=Strict/);
    expect(String(cookie)).not.toMatch(/Domain=/);
    const pendingToken = owner.cookies['__Host-rv_session'];
    expect(pendingToken).toMatch(/^rvc_[0-9a-f]{32}_[A-Za-z0-9_-]{43}$/);

    // Nothing but enrolment is open to a half-finished login.
    const early = await send(app, owner, 'GET', '/api/v1/users');
    expect(early.statusCode).toBe(403);
    expect(early.json()).toMatchObject({ code: 'mfa_enrollment_required' });

    const enrolment = await send(app, owner, 'POST', '/api/v1/auth/mfa/totp/enrollment');
    expect(enrolment.statusCode).toBe(200);
    const { secret, uri, qrSvg } = enrolment.json() as { secret: string; uri: string; qrSvg: string };
    expect(uri).toMatch(/^otpauth:\/\/totp\/Ringvakt:.+\?.*secret=/);
    expect(qrSvg).toMatch(/^<svg/);
    ownerSecret = secret;

    const wrong = await send(app, owner, 'POST', '/api/v1/auth/mfa/totp/confirm', { code: '000000' });
    expect(wrong.statusCode).toBe(400);
    const now = Math.floor(Date.now() / 1000);
    spentAt = now - 30;
    const confirmed = await send(app, owner, 'POST', '/api/v1/auth/mfa/totp/confirm', { code: await totpAt(secret, spentAt) });
    expect(confirmed.statusCode).toBe(200);
    const body = confirmed.json() as { stage: string; recoveryCodes: string[] };
    expect(body.stage).toBe('active');
    expect(body.recoveryCodes).toHaveLength(10);
    recoveryCodes = body.recoveryCodes;
    expect(owner.cookies['__Host-rv_session']).not.toBe(pendingToken);
    // The token from before the second factor is dead.
    const stale = await app.inject({ url: '/api/v1/auth/session', cookies: { '__Host-rv_session': pendingToken! } });
    expect(stale.statusCode).toBe(401);
    expect((await send(app, owner, 'GET', '/api/v1/users')).statusCode).toBe(200);
    expect(await audited('auth.mfa_enroll', 'success')).toBe(1);
  });

  it('asks for the second factor at the next login; a used code is refused, a recovery code works once', async () => {
    expect((await send(app, owner, 'POST', '/api/v1/auth/logout')).statusCode).toBe(204);
    expect((await send(app, owner, 'GET', '/api/v1/auth/session')).statusCode).toBe(401);
    const browser = newBrowser();
    const first = await login(browser, a.owner.email, OWNER_PASSWORD);
    expect(first.json()).toMatchObject({ stage: 'mfa' });
    const now = Math.floor(Date.now() / 1000);
    // The code confirmed at enrolment, and the one before it, cannot be replayed. (Codes are named by the
    // moment they were spent, not by "now": a test that crosses a 30 s boundary would otherwise offer a
    // fresh, never-used code and call its acceptance a replay.)
    for (const replay of [await totpAt(ownerSecret, spentAt), await totpAt(ownerSecret, spentAt - 30)]) {
      const again = await send(app, browser, 'POST', '/api/v1/auth/mfa/verify', { method: 'totp', code: replay });
      if (again.statusCode === 200) throw new Error('a used TOTP code was accepted');
    }
    for (const malformed of ['12345', '1234567', 'abcdef', '１２３４５６', '']) {
      const response = await send(app, browser, 'POST', '/api/v1/auth/mfa/verify', { method: 'totp', code: malformed });
      expect(response.statusCode, malformed).toBe(400);
    }
    const recovery = await send(app, browser, 'POST', '/api/v1/auth/mfa/verify', { method: 'recovery_code', code: recoveryCodes[0] });
    expect(recovery.statusCode).toBe(200);
    expect(recovery.json()).toMatchObject({ stage: 'active' });
    owner = browser;

    const other = newBrowser();
    await login(other, a.owner.email, OWNER_PASSWORD);
    const reused = await send(app, other, 'POST', '/api/v1/auth/mfa/verify', { method: 'recovery_code', code: recoveryCodes[0] });
    expect(reused.statusCode).toBe(400);
    const next = await send(app, other, 'POST', '/api/v1/auth/mfa/verify', { method: 'totp', code: await totpAt(ownerSecret, now) });
    expect(next.statusCode).toBe(200);
    expect(await audited('auth.mfa_verify', 'failed')).toBeGreaterThanOrEqual(3);
  });

  it('refuses changes from another origin and cookie changes without the CSRF token', async () => {
    const invite = { email: 'csrf-target@ident-a.example', displayName: 'Nobody', role: 'agent' };
    const foreign = await send(app, owner, 'POST', '/api/v1/users', invite, { origin: 'https://evil.example' });
    expect(foreign.statusCode).toBe(403);
    expect(foreign.json()).toMatchObject({ code: 'csrf_failed' });
    const crossSite = await send(app, owner, 'POST', '/api/v1/users', invite, { 'sec-fetch-site': 'cross-site' });
    expect(crossSite.json()).toMatchObject({ code: 'csrf_failed' });
    const noToken = await send(app, owner, 'POST', '/api/v1/users', invite, { 'x-csrf-token': 'forged' });
    expect(noToken.json()).toMatchObject({ code: 'csrf_failed' });
    // A login form posted from another site is refused too (login CSRF).
    const loginElsewhere = await login(newBrowser(), a.owner.email, OWNER_PASSWORD, 'ident-a', { origin: 'https://evil.example' });
    expect(loginElsewhere.statusCode).toBe(403);
    // Audited where a tenant is known (the session's), logged where none is (the login form).
    const denials = await db.superQuery(`SELECT count(*)::int AS n FROM ringvakt.audit_events WHERE action = 'auth.denied' AND details->>'reason' IN ('cross_origin', 'csrf_token')`);
    expect(denials.rows[0]!.n).toBe(3);
    expect(capture.lines.some((line) => line.includes('"event":"auth.refused"') && line.includes('"reason":"cross_origin"') && line.includes('POST /api/v1/auth/login'))).toBe(true);
    expect(await db.superQuery(`SELECT 1 FROM ringvakt.users WHERE tenant_id = $1 AND status = 'invited'`, [a.tenantId]).then((r) => r.rowCount)).toBe(0);
  });

  it('requires a recent re-authentication (step-up) for sensitive changes', async () => {
    await db.superQuery(`UPDATE ringvakt.sessions SET authenticated_at = now() - interval '6 minutes' WHERE tenant_id = $1 AND revoked_at IS NULL`, [a.tenantId]);
    await forgetCachedCredentials();
    const expiresAt = new Date(Date.now() + 30 * 86_400_000).toISOString();
    const tooOld = await send(app, owner, 'POST', '/api/v1/api-tokens', { name: 'ci', scopes: ['users:read'], expiresAt });
    expect(tooOld.statusCode).toBe(403);
    expect(tooOld.json()).toMatchObject({ code: 'reauthentication_required' });
    const withoutCode = await send(app, owner, 'POST', '/api/v1/auth/reauthenticate', { password: OWNER_PASSWORD });
    expect(withoutCode.statusCode).toBe(401);
    const now = Math.floor(Date.now() / 1000);
    const stepUp = await send(app, owner, 'POST', '/api/v1/auth/reauthenticate', { password: OWNER_PASSWORD, code: await totpAt(ownerSecret, now + 30) });
    expect(stepUp.statusCode).toBe(200);
    const created = await send(app, owner, 'POST', '/api/v1/api-tokens', { name: 'ci', scopes: ['users:read'], expiresAt });
    expect(created.statusCode).toBe(201);
    expect(await audited('auth.reauthenticate', 'success')).toBe(1);
  });

  it('issues scoped, expiring API tokens with a scanner-friendly prefix, shown once and revocable', async () => {
    const expiresAt = new Date(Date.now() + 30 * 86_400_000).toISOString();
    const tooLong = await send(app, owner, 'POST', '/api/v1/api-tokens', { name: 'x', scopes: ['users:read'], expiresAt: new Date(Date.now() + 400 * 86_400_000).toISOString() });
    expect(tooLong.statusCode).toBe(400);
    const created = await send(app, owner, 'POST', '/api/v1/api-tokens', { name: 'reader', scopes: ['tenant:read'], expiresAt });
    const { token, id } = created.json() as { token: string; id: string };
    expect(token).toMatch(/^rvk_[0-9a-f]{32}_[A-Za-z0-9_-]{43}$/);
    expect((await app.inject({ url: '/api/v1/tenant', headers: bearer(token) })).statusCode).toBe(200);
    // Its scopes bound it, whatever its owner may do.
    expect((await app.inject({ url: '/api/v1/users', headers: bearer(token) })).statusCode).toBe(403);
    // API tokens cannot do what needs a person: no token minting, no session listing.
    expect((await app.inject({ method: 'POST', url: '/api/v1/api-tokens', headers: bearer(token), payload: { name: 'y', scopes: ['tenant:read'], expiresAt } })).statusCode).toBe(403);
    const listed = await send(app, owner, 'GET', '/api/v1/api-tokens');
    const entry = (listed.json() as { items: { id: string; lastUsedAt: string | null }[] }).items.find((item) => item.id === id);
    expect(entry?.lastUsedAt).not.toBeNull();
    expect(listed.body).not.toContain(token);
    const stored = await db.superQuery(`SELECT encode(token_hash, 'hex') AS h FROM ringvakt.api_tokens WHERE id = $1`, [id]);
    expect(stored.rows[0]!.h).toHaveLength(64);
    expect((await send(app, owner, 'DELETE', `/api/v1/api-tokens/${id}`)).statusCode).toBe(204);
    expect((await app.inject({ url: '/api/v1/tenant', headers: bearer(token) })).statusCode).toBe(401);
    // A token in the URL is never read.
    const inUrl = await app.inject({ url: `/api/v1/tenant?access_token=${a.owner.token}` });
    expect(inUrl.statusCode).toBe(400);
  });

  it('lets users list and end their sessions, and admins end anyone’s', async () => {
    const agentPhone = newBrowser();
    const agentDesk = newBrowser();
    expect((await login(agentPhone, a.agent.email, AGENT_PASSWORD)).json()).toMatchObject({ stage: 'active' });
    await login(agentDesk, a.agent.email, AGENT_PASSWORD);
    const listed = (await send(app, agentDesk, 'GET', '/api/v1/auth/sessions')).json() as { items: { id: string; current: boolean }[] };
    expect(listed.items.length).toBeGreaterThanOrEqual(2);
    const phone = listed.items.find((item) => !item.current)!;
    expect((await send(app, agentDesk, 'DELETE', `/api/v1/auth/sessions/${phone.id}`)).statusCode).toBe(204);
    expect((await send(app, agentPhone, 'GET', '/api/v1/auth/session')).statusCode).toBe(401);
    // Another tenant's session id is not found, not forbidden.
    const foreign = await sessionFor(db.handles, b.tenantId, b.agent.id);
    const foreignId = (await send(app, foreign, 'GET', '/api/v1/auth/sessions')).json() as { items: { id: string }[] };
    expect((await send(app, agentDesk, 'DELETE', `/api/v1/auth/sessions/${foreignId.items[0]!.id}`)).statusCode).toBe(404);
    const ended = await send(app, owner, 'DELETE', `/api/v1/users/${a.agent.id}/sessions`);
    expect(ended.json()).toMatchObject({ ended: 1 });
    expect((await send(app, agentDesk, 'GET', '/api/v1/auth/session')).statusCode).toBe(401);
  });

  it('ends a session after the idle timeout', async () => {
    const browser = newBrowser();
    await login(browser, a.agent.email, AGENT_PASSWORD);
    expect((await send(app, browser, 'GET', '/api/v1/tenant')).statusCode).toBe(200);
    await db.superQuery(`UPDATE ringvakt.sessions SET last_seen_at = now() - interval '31 minutes' WHERE tenant_id = $1 AND user_id = $2 AND revoked_at IS NULL`, [a.tenantId, a.agent.id]);
    // The cached copy still says "seen just now"; the database is asked before the session is trusted... and the
    // idle check is made on what the database says.
    await forgetCachedCredentials();
    const idle = await send(app, browser, 'GET', '/api/v1/tenant');
    expect(idle.statusCode).toBe(401);
    const reason = await db.superQuery(`SELECT revoke_reason FROM ringvakt.sessions WHERE tenant_id = $1 AND user_id = $2 ORDER BY created_at DESC LIMIT 1`, [a.tenantId, a.agent.id]);
    expect(reason.rows[0]!.revoke_reason).toBe('idle');
  });

  it('disabling a user ends every session and API token at once', async () => {
    const agent = newBrowser();
    await login(agent, a.agent.email, AGENT_PASSWORD);
    expect((await send(app, agent, 'GET', '/api/v1/tenant')).statusCode).toBe(200);
    expect((await app.inject({ url: '/api/v1/tenant', headers: bearer(a.agent.token) })).statusCode).toBe(200);
    const disabled = await send(app, owner, 'POST', `/api/v1/users/${a.agent.id}/disable`);
    expect(disabled.statusCode, disabled.body).toBe(200);
    expect((await send(app, agent, 'GET', '/api/v1/tenant')).statusCode).toBe(401);
    expect((await app.inject({ url: '/api/v1/tenant', headers: bearer(a.agent.token) })).statusCode).toBe(401);
    const left = await db.superQuery(`SELECT count(*)::int AS n FROM ringvakt.sessions WHERE tenant_id = $1 AND user_id = $2 AND revoked_at IS NULL`, [a.tenantId, a.agent.id]);
    expect(left.rows[0]!.n).toBe(0);
    expect(await audited('user.disable', 'success')).toBe(1);
    expect((await login(newBrowser(), a.agent.email, AGENT_PASSWORD)).statusCode).toBe(401);
    expect((await send(app, owner, 'POST', `/api/v1/users/${a.agent.id}/enable`)).statusCode).toBe(200);
  });

  it('answers unknown accounts, wrong passwords and locked accounts alike, in the same time', async () => {
    const problems: string[] = [];
    const timed = async (email: string, password: string) => {
      const started = performance.now();
      const response = await login(newBrowser(), email, password);
      const elapsed = performance.now() - started;
      const body = response.json() as Record<string, unknown>;
      delete body.requestId;
      problems.push(`${response.statusCode} ${JSON.stringify(body)}`);
      return elapsed;
    };
    const median = (values: number[]) => [...values].sort((x, y) => x - y)[Math.floor(values.length / 2)]!;
    const unknown: number[] = [];
    const wrong: number[] = [];
    for (let round = 0; round < 7; round += 1) {
      unknown.push(await timed(`nobody${round}@ident-a.example`, 'some password here'));
      wrong.push(await timed(a.owner.email, `not the password ${round}`));
    }
    // By now the owner's account is locked: even the right password fails, alike.
    const locked: number[] = [];
    for (let round = 0; round < 5; round += 1) locked.push(await timed(a.owner.email, OWNER_PASSWORD));
    expect(new Set(problems), problems.join('\n')).toEqual(new Set([`401 ${JSON.stringify({ type: 'urn:ringvakt:problem:login_failed', title: 'The organisation, e-mail address or password is not right', status: 401, code: 'login_failed' })}`]));
    for (const series of [unknown, wrong, locked]) expect(median(series)).toBeGreaterThanOrEqual(FAILURE_FLOOR_MS - 5);
    const medians = [median(unknown), median(wrong), median(locked)];
    expect(Math.max(...medians) - Math.min(...medians), medians.join(' / ')).toBeLessThan(60);
    // The holder is told by e-mail, once; the lockout is audited.
    const mails = await db.superQuery(`SELECT count(*)::int AS n FROM ringvakt.email_outbox WHERE tenant_id = $1 AND template = 'account_locked'`, [a.tenantId]);
    expect(mails.rows[0]!.n).toBe(1);
    expect(await audited('auth.lockout')).toBeGreaterThanOrEqual(1);
  });

  it('lets a browser that signed in before past the account lock, and tells it of its own lockout', async () => {
    // `owner` holds a trusted-device cookie from its earlier login: the locked account opens for it.
    expect(owner.cookies['__Host-rv_device']).toMatch(/^rvd_/);
    const trusted = await login(owner, a.owner.email, OWNER_PASSWORD);
    expect(trusted.statusCode).toBe(200);
    for (let round = 0; round < 5; round += 1) await login(owner, a.owner.email, 'wrong wrong wrong');
    const told = await login(owner, a.owner.email, OWNER_PASSWORD);
    expect(told.statusCode).toBe(429);
    expect(told.json()).toMatchObject({ code: 'account_locked' });
    await db.superQuery(`UPDATE ringvakt.account_throttle SET locked_until = NULL, consecutive = 0 WHERE tenant_id = $1`, [a.tenantId]);
    await db.superQuery(`UPDATE ringvakt.trusted_devices SET locked_until = NULL, failures = 0 WHERE tenant_id = $1`, [a.tenantId]);
  });

  it('applies the IP allow-list to login and to every request, and will not lock out its author', async () => {
    const browser = newBrowser();
    keepCookies(browser, await login(browser, a.owner.email, OWNER_PASSWORD));
    await send(app, browser, 'POST', '/api/v1/auth/mfa/verify', { method: 'recovery_code', code: recoveryCodes[1] });
    const policy = { mfaRequiredForAll: false, sessionIdleMinutes: 30, sessionAbsoluteHours: 12 };
    const lockout = await send(app, browser, 'PUT', '/api/v1/security-policy', { ...policy, ipAllowList: ['10.0.0.0/8'] });
    expect(lockout.statusCode).toBe(409);
    const bad = await send(app, browser, 'PUT', '/api/v1/security-policy', { ...policy, ipAllowList: ['10.0.0.0/33'] });
    expect(bad.statusCode).toBe(400);
    const saved = await send(app, browser, 'PUT', '/api/v1/security-policy', { ...policy, ipAllowList: ['127.0.0.0/8', '2001:db8::/32'] });
    expect(saved.json()).toMatchObject({ ipAllowList: ['127.0.0.0/8', '2001:db8::/32'] });
    expect((await send(app, browser, 'GET', '/api/v1/tenant')).statusCode).toBe(200);
    // From elsewhere (changed in the database, as another admin could from an allowed address).
    await db.superQuery(`UPDATE ringvakt.tenant_security_policies SET ip_allow_list = '{10.0.0.0/8}' WHERE tenant_id = $1`, [a.tenantId]);
    const denied = await send(app, browser, 'GET', '/api/v1/tenant');
    expect(denied.statusCode).toBe(403);
    expect(denied.json()).toMatchObject({ code: 'ip_not_allowed' });
    expect((await app.inject({ url: '/api/v1/tenant', headers: bearer(a.owner.token) })).statusCode).toBe(403);
    expect((await login(newBrowser(), a.agent.email, AGENT_PASSWORD)).statusCode).toBe(403);
    // A spoofed X-Forwarded-For from a client we do not trust as a proxy changes nothing.
    const spoofed = await app.inject({ url: '/api/v1/tenant', headers: { ...bearer(a.owner.token), 'x-forwarded-for': '10.1.2.3' } });
    expect(spoofed.statusCode).toBe(403);
    await db.superQuery(`UPDATE ringvakt.tenant_security_policies SET ip_allow_list = '{}' WHERE tenant_id = $1`, [a.tenantId]);
  });

  it('refuses weak, common and oversized passwords and forged cookies with clear errors', async () => {
    const setup = a.setupLink.split('#token=')[1]!;
    for (const weak of ['short', 'password1234', 'Password2024!', 'abcabcabcabcabc', 'qwertyuiop123']) {
      const response = await app.inject({ method: 'POST', url: '/api/v1/setup/complete', headers: { origin: PUBLIC_URL }, payload: { token: setup, password: weak } });
      expect(response.json(), weak).toMatchObject({ code: expect.stringMatching(/password_too_weak|setup_link_invalid/) });
    }
    const huge = await app.inject({ method: 'POST', url: '/api/v1/auth/login', payload: { tenant: 'ident-a', email: a.owner.email, password: 'x'.repeat(1024 * 1024) } });
    expect(huge.statusCode).toBe(413);
    const long = await app.inject({ method: 'POST', url: '/api/v1/auth/login', payload: { tenant: 'ident-a', email: a.owner.email, password: 'x'.repeat(2000) } });
    expect(long.statusCode).toBe(400);
    for (const cookie of ['rvc_nonsense', `rvc_${a.tenantId.replaceAll('-', '')}_${'A'.repeat(43)}`, owner.cookies['__Host-rv_session']!.replace(a.tenantId.replaceAll('-', ''), b.tenantId.replaceAll('-', ''))]) {
      const response = await app.inject({ url: '/api/v1/tenant', cookies: { '__Host-rv_session': cookie } });
      expect(response.statusCode).toBe(401);
    }
  });
});
