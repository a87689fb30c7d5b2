import { createHmac } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sealTenantLedger } from '../src/audit/seal-audit-log.ts';
import { loadSigningKey } from '../src/audit/signing-key.ts';
import { createContact } from '../src/modules/contacts/contacts.service.ts';
import { createUser } from '../src/modules/users/users.repo.ts';
import { startSecurityMonitor, type SecurityMonitor } from '../src/security/monitor-service.ts';
import { deliverDue, MAX_ATTEMPTS, setWebhookTargets } from '../src/security/webhooks.ts';
import { recordHits } from '../src/security/alerts.ts';
import { effectiveSettings } from '../src/security/detection-rules.ts';
import { networkOf } from '../src/security/detector.ts';
import { recordAuditEvent } from '../src/audit/audit-event.ts';
import type { App } from '../src/server/types.ts';
import { bearer, buildTestApp, PUBLIC_URL } from './support/app.ts';
import { sessionFor, setPassword } from './support/auth.ts';
import { createTestDatabase, serverLabel, type TestDatabase } from './support/database.ts';
import { seedTenant, type SeededTenant } from './support/seed.ts';

type Received = { id: string; alert: { rule: string; severity: string; hits: number } };

/**
 * A webhook receiver as our documentation tells one to be written: it checks the signature over
 * "<timestamp>.<body>", refuses a timestamp more than 5 minutes off and a delivery id (in the
 * signed body) it has seen.
 */
function startReceiver(secret: () => Buffer | undefined, behaviour: { failFirst: number; silent: boolean }) {
  const seen = new Set<string>();
  const received: Received[] = [];
  const captured: { headers: Record<string, string>; body: string }[] = [];
  let failures = 0;
  const server = http.createServer((request, response) => {
    let body = '';
    request.on('data', (chunk: Buffer) => (body += chunk.toString()));
    request.on('end', () => {
      if (behaviour.silent) return; // never answers: the sender must time out
      const headers = { 'ringvakt-signature': String(request.headers['ringvakt-signature'] ?? ''), 'idempotency-key': String(request.headers['idempotency-key'] ?? ''), 'content-type': 'application/json' };
      captured.push({ headers, body });
      const match = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(headers['ringvakt-signature']);
      const key = secret();
      if (!match || !key) return response.writeHead(401).end();
      const expected = createHmac('sha256', key).update(`${match[1]}.${body}`).digest('hex');
      if (expected !== match[2]) return response.writeHead(401).end();
      if (Math.abs(Date.now() / 1000 - Number(match[1])) > 300) return response.writeHead(401).end();
      // The delivery id is read from the signed body, never from a header an attacker could change.
      const deliveryId = (JSON.parse(body) as { deliveryId: string }).deliveryId;
      if (seen.has(deliveryId)) return response.writeHead(409).end();
      if (failures < behaviour.failFirst) {
        failures += 1;
        return response.writeHead(503).end();
      }
      seen.add(deliveryId);
      received.push({ id: deliveryId, alert: (JSON.parse(body) as { alert: Received['alert'] }).alert });
      response.writeHead(204).end();
    });
  });
  return {
    received,
    captured,
    async listen() {
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      return `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks/ringvakt`;
    },
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

/**
 * Scripted attacks replayed against a server on loopback — a credential-stuffing wave, an agent
 * scraping reveals, a privilege escalation, a ledger altered in SQL — each raises exactly one
 * deduplicated alert of the right severity; normal traffic of the same volume raises none.
 */
describe(`security monitoring: detection, alerts, webhooks (${serverLabel()} server)`, () => {
  let db: TestDatabase;
  let app: App;
  let base = '';
  let attacked: SeededTenant;
  let calm: SeededTenant;
  let monitor: SecurityMonitor;
  let webhookSecret: Buffer | undefined;
  const receiver = startReceiver(() => webhookSecret, { failFirst: 2, silent: false });

  const send = (token: string | undefined, method: string, url: string, body?: unknown) =>
    fetch(`${base}${url}`, { method, headers: { ...(token ? bearer(token) : {}), origin: PUBLIC_URL, ...(body === undefined ? {} : { 'content-type': 'application/json' }) }, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
  /** A change to monitoring itself, as an owner signed in moments ago makes it (API tokens may not). */
  const asSession = async (tenant: SeededTenant, method: string, url: string, body?: unknown) => {
    const browser = await sessionFor(db.handles, tenant.tenantId, tenant.owner.id);
    return fetch(`${base}${url}`, { method, headers: { cookie: `__Host-rv_session=${browser.cookies['__Host-rv_session']}`, 'x-csrf-token': browser.csrf, origin: PUBLIC_URL, ...(body === undefined ? {} : { 'content-type': 'application/json' }) }, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
  };
  /** A role change, as an owner signed in moments ago does it (role changes need a recent sign-in, not an API token). */
  const changeRole = async (tenant: SeededTenant, userId: string, role: string) => {
    const browser = await sessionFor(db.handles, tenant.tenantId, tenant.owner.id);
    return fetch(`${base}/api/v1/users/${userId}`, { method: 'PATCH', headers: { cookie: `__Host-rv_session=${browser.cookies['__Host-rv_session']}`, 'x-csrf-token': browser.csrf, origin: PUBLIC_URL, 'content-type': 'application/json' }, body: JSON.stringify({ role }) });
  };
  const sealAll = async () => {
    const key = await loadSigningKey(db.handles.systemDb, (await db.handles.crypto()).root);
    for (const tenant of await db.handles.systemDb.listTenants()) await db.handles.forTenant(tenant.id).transaction((trx) => sealTenantLedger(trx, key));
  };
  const alertsOf = async (tenant: SeededTenant) =>
    (await db.superQuery<{ rule_id: string; severity: string; hits: number; state: string; evidence: string[] }>(`SELECT rule_id, severity, hits, state, evidence FROM ringvakt.security_alerts WHERE tenant_id = $1 ORDER BY raised_at, rule_id`, [tenant.tenantId])).rows;
  const evaluate = async () => {
    await sealAll();
    await monitor.runOnce();
  };

  beforeAll(async () => {
    // The receiver is on loopback: allowed here as RINGVAKT_ALERT_WEBHOOK_TARGETS=any allows it.
    setWebhookTargets('any');
    db = await createTestDatabase();
    attacked = await seedTenant(db.handles, 'sec-attacked');
    calm = await seedTenant(db.handles, 'sec-calm');
    app = await buildTestApp(db);
    await app.listen({ host: '127.0.0.1', port: 0 });
    base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
    // Timers off: each test drives the monitor itself.
    monitor = startSecurityMonitor({ systemDb: db.handles.systemDb, connectionString: String(db.handles.pool.options.connectionString), cipher: async () => (await db.handles.crypto()).cipher, logger: db.logger, tickMs: 0 });
    await evaluate();
  });
  afterAll(async () => {
    await monitor?.stop();
    await app?.close();
    await receiver.close();
    await db?.drop();
  });

  it('refuses webhooks that point inward (the default outside development), and registers a signed one', async () => {
    setWebhookTargets('public');
    try {
      const plain = await asSession(attacked, 'POST', '/api/v1/security/alert-webhooks', { url: 'http://siem.example/hook' });
      expect(plain.status).toBe(400);
      expect(await plain.json()).toMatchObject({ code: 'validation_failed', errors: [{ path: 'body/url' }] });
      for (const url of ['https://127.0.0.1:9/hook', 'https://[::1]/hook', 'https://10.1.2.3/hook', 'https://169.254.169.254/latest', 'https://localhost/hook']) {
        const inward = await asSession(attacked, 'POST', '/api/v1/security/alert-webhooks', { url });
        expect(inward.status, url).toBe(400);
        expect((await inward.json()) as { code: string }, url).toMatchObject({ code: 'webhook_forbidden_address' });
      }
    } finally {
      setWebhookTargets('any');
    }
    const created = await asSession(attacked, 'POST', '/api/v1/security/alert-webhooks', { url: await receiver.listen(), minSeverity: 'medium' });
    expect(created.status).toBe(201);
    const body = (await created.json()) as { id: string; secret: string };
    webhookSecret = Buffer.from(body.secret, 'base64url');
    expect(webhookSecret).toHaveLength(32);
    // The secret is shown once: never listed, and stored sealed.
    const listed = await (await send(attacked.owner.token, 'GET', '/api/v1/security/alert-webhooks')).text();
    expect(listed).not.toContain(body.secret);
    const stored = await db.superQuery<{ secret_ciphertext: Buffer }>(`SELECT secret_ciphertext FROM ringvakt.alert_webhooks WHERE id = $1`, [body.id]);
    expect(stored.rows[0]?.secret_ciphertext.includes(webhookSecret)).toBe(false);
    expect(stored.rows[0]?.secret_ciphertext.includes(Buffer.from(body.secret))).toBe(false);
  });

  it('refuses rule settings that could never fire, or would fire on everything', async () => {
    const never = await asSession(attacked, 'PUT', '/api/v1/security/detection-rules/auth.credential_stuffing', { enabled: true, threshold: 100_000, windowSeconds: 60, severity: 'high' });
    expect(never.status).toBe(400);
    expect(await never.json()).toMatchObject({ code: 'rule_impossible', errors: [{ path: 'body/threshold' }] });
    const always = await asSession(attacked, 'PUT', '/api/v1/security/detection-rules/auth.failed_signins_account', { enabled: true, threshold: 1, windowSeconds: 300, severity: 'medium' });
    expect(await always.json()).toMatchObject({ code: 'rule_impossible' });
    const unknown = await asSession(attacked, 'PUT', '/api/v1/security/detection-rules/no.such_rule', { enabled: true, threshold: 5, windowSeconds: 300, severity: 'medium' });
    expect(unknown.status).toBe(404);
    const tuned = await asSession(attacked, 'PUT', '/api/v1/security/detection-rules/suppression.shrink', { enabled: true, threshold: 30, windowSeconds: 3600, severity: 'critical' });
    expect(tuned.status).toBe(200);
    const rules = (await (await send(attacked.owner.token, 'GET', '/api/v1/security/detection-rules')).json()) as { items: { id: string; threshold: number; severity: string }[] };
    expect(rules.items.find((rule) => rule.id === 'suppression.shrink')).toMatchObject({ threshold: 30, severity: 'critical' });
    // An agent may not read or tune them.
    expect((await send(attacked.agent.token, 'GET', '/api/v1/security/detection-rules')).status).toBe(403);
  });

  it('normal traffic raises nothing; the same volume as attacks raises exactly one alert each, of the right severity', async () => {
    // Normal: sign-ins that succeed, a few mistyped passwords, reveals spread over several people, a role change that grants no administration.
    await setPassword(db.handles, calm.tenantId, (await db.superQuery<{ id: string }>(`SELECT id FROM ringvakt.users WHERE tenant_id = $1 AND role = 'owner'`, [calm.tenantId])).rows[0]!.id, 'calm-owner-password-2026');
    for (let index = 0; index < 40; index += 1) {
      const wrong = index % 10 === 0;
      const response = await send(undefined, 'POST', '/api/v1/auth/login', { tenant: 'sec-calm', email: 'owner@sec-calm.example', password: wrong ? 'mistyped-password-2026' : 'calm-owner-password-2026' });
      expect(response.status, String(index)).toBe(wrong ? 401 : 200);
    }
    const { cipher } = await db.handles.crypto();
    const crypto = await db.handles.crypto();
    const calmContacts = await db.handles.forTenant(calm.tenantId).transaction(async (trx) => {
      const ids: string[] = [];
      for (let index = 0; index < 12; index += 1) ids.push((await createContact(trx, crypto, { name: `Rolig ${index}`, phones: [{ kind: 'mobile', number: `+479300${String(index).padStart(4, '0')}` }] }, { defaultRegion: 'NO' })).id);
      return ids;
    });
    for (const contactId of calmContacts) expect((await send(calm.owner.token, 'POST', `/api/v1/contacts/${contactId}/reveal`, { fields: ['phones'], reason: 'callback requested' })).status).toBe(200);
    const calmUser = await db.handles.forTenant(calm.tenantId).transaction((trx) => createUser(trx, cipher, { email: 'new.agent@sec-calm.example', displayName: 'New agent', role: 'agent' }));
    expect((await changeRole(calm, calmUser.id, 'supervisor')).status).toBe(200);

    // Attacks. 1: credential stuffing — 40 failed sign-ins over 20 accounts that do not exist.
    for (let index = 0; index < 40; index += 1) {
      const response = await send(undefined, 'POST', '/api/v1/auth/login', { tenant: 'sec-attacked', email: `victim${index % 20}@stuffed.example`, password: `leaked-password-${index}` });
      expect(response.status).toBe(401);
    }
    // 2: an insider scraping: 45 reveals within minutes.
    const contacts = await db.handles.forTenant(attacked.tenantId).transaction(async (trx) => {
      const ids: string[] = [];
      for (let index = 0; index < 45; index += 1) ids.push((await createContact(trx, crypto, { name: `Skrapt ${index}`, phones: [{ kind: 'mobile', number: `+479400${String(index).padStart(4, '0')}` }] }, { defaultRegion: 'NO' })).id);
      return ids;
    });
    for (const contactId of contacts) expect((await send(attacked.owner.token, 'POST', `/api/v1/contacts/${contactId}/reveal`, { fields: ['phones'], reason: 'callback requested' })).status).toBe(200);
    // 3: privilege escalation — a fresh account made administrator.
    const accomplice = await db.handles.forTenant(attacked.tenantId).transaction((trx) => createUser(trx, cipher, { email: 'accomplice@sec-attacked.example', displayName: 'Accomplice', role: 'agent' }));
    expect((await changeRole(attacked, accomplice.id, 'admin')).status).toBe(200);

    await evaluate();
    const raised = await alertsOf(attacked);
    expect(await alertsOf(calm)).toEqual([]);
    // (The rule tuned in the test before is itself on the record: monitoring changed.)
    expect(raised.map((alert) => [alert.rule_id, alert.severity]), JSON.stringify(raised)).toEqual([
      ['auth.credential_stuffing', 'high'],
      ['data.reveal_burst', 'high'],
      ['privilege.admin_granted', 'high'],
      ['security.monitoring_changed', 'medium'],
    ]);
    // One alert with a count, not one per event; its evidence is the events.
    expect(raised[0]!.hits).toBeGreaterThanOrEqual(20);
    expect(raised[1]!.hits).toBeGreaterThanOrEqual(40);
    expect(raised[1]!.evidence.length).toBeGreaterThanOrEqual(40);

    // More of the same wave: the same alert counts on, no second one.
    for (let index = 0; index < 10; index += 1) await send(undefined, 'POST', '/api/v1/auth/login', { tenant: 'sec-attacked', email: `victim${20 + index}@stuffed.example`, password: 'again' });
    await evaluate();
    const after = await alertsOf(attacked);
    expect(after).toHaveLength(4);
    expect(after[0]!.hits).toBe(raised[0]!.hits + 10);
    // Every alert is in the ledger.
    const audited = await db.superQuery(`SELECT 1 FROM ringvakt.audit_events WHERE tenant_id = $1 AND action = 'security.alert_raised'`, [attacked.tenantId]);
    expect(audited.rowCount).toBe(4);
    // The high ones were e-mailed to the security contacts (the active owner: the new admin has not
    // set up their account yet), sealed in the outbox like every e-mail; the calm tenant got none.
    const mails = await db.superQuery<{ tenant_id: string; recipient_ciphertext: Buffer }>(`SELECT tenant_id, recipient_ciphertext FROM ringvakt.email_outbox WHERE template = 'security_alert'`);
    expect(mails.rows.filter((row) => row.tenant_id === attacked.tenantId)).toHaveLength(3);
    expect(mails.rows.filter((row) => row.tenant_id === calm.tenantId)).toHaveLength(0);
    expect(mails.rows.every((row) => !row.recipient_ciphertext.includes(Buffer.from('owner@sec-attacked.example')))).toBe(true);
  }, 120_000);

  it('a ledger altered in SQL raises one critical alert at the next verification', async () => {
    await monitor.stop();
    monitor = startSecurityMonitor({ systemDb: db.handles.systemDb, connectionString: String(db.handles.pool.options.connectionString), cipher: async () => (await db.handles.crypto()).cipher, logger: db.logger, tickMs: 0, ledgerCheckMs: 0 });
    await db.superQuery(`BEGIN; SET LOCAL session_replication_role = replica;
      UPDATE ringvakt.audit_events SET details = '{"field": "forged"}' WHERE tenant_id = '${attacked.tenantId}' AND action = 'user.update'; COMMIT`);
    await evaluate();
    await evaluate();
    const ledger = (await alertsOf(attacked)).filter((alert) => alert.rule_id === 'audit.ledger_failed');
    expect(ledger.map((alert) => alert.severity)).toEqual(['critical']);
    expect((await alertsOf(calm)).filter((alert) => alert.rule_id === 'audit.ledger_failed')).toEqual([]);
  });

  it('delivers each alert to the webhook signed, retrying with backoff; a replayed delivery is refused by the receiver', async () => {
    const tenantDb = db.handles.forTenant(attacked.tenantId);
    const { cipher } = await db.handles.crypto();
    // The receiver fails twice first; each retry comes after its backoff.
    let clock = Date.now();
    const now = () => new Date(clock);
    for (let round = 0; round < 6 && receiver.received.length < 5; round += 1) {
      await deliverDue(tenantDb, cipher, { now });
      clock += 10 * 60_000;
    }
    expect(receiver.received.map((entry) => entry.alert.rule).sort()).toEqual(['audit.ledger_failed', 'auth.credential_stuffing', 'data.reveal_burst', 'privilege.admin_granted', 'security.monitoring_changed']);
    const deliveries = await db.superQuery<{ state: string; attempts: number }>(`SELECT state, attempts FROM ringvakt.alert_deliveries WHERE tenant_id = $1 ORDER BY created_at`, [attacked.tenantId]);
    expect(deliveries.rows.every((row) => row.state === 'delivered')).toBe(true);
    expect(deliveries.rows.reduce((sum, row) => sum + row.attempts, 0)).toBe(deliveries.rowCount! + 2);
    // A captured request sent again: the receiver refuses it.
    const delivered = receiver.captured.at(-1)!;
    const hookUrl = (await db.superQuery<{ url: string }>(`SELECT url FROM ringvakt.alert_webhooks WHERE tenant_id = $1`, [attacked.tenantId])).rows[0]!.url;
    const replay = await fetch(hookUrl, { method: 'POST', headers: delivered.headers, body: delivered.body });
    expect(replay.status).toBe(409);
    // Also with another idempotency key: the id that counts is in the signed body.
    const disguised = await fetch(hookUrl, { method: 'POST', headers: { ...delivered.headers, 'idempotency-key': '00000000-0000-4000-8000-000000000001' }, body: delivered.body });
    expect(disguised.status).toBe(409);
    // Acknowledged by the security manager: recorded, and audited.
    const open = (await (await send(attacked.owner.token, 'GET', '/api/v1/security/alerts?state=open')).json()) as { items: { id: string }[] };
    const ack = await send(attacked.owner.token, 'POST', `/api/v1/security/alerts/${open.items[0]!.id}/acknowledge`);
    expect(ack.status).toBe(200);
    expect(await ack.json()).toMatchObject({ state: 'acknowledged', acknowledgedBy: expect.any(String) });
    expect((await send(attacked.owner.token, 'POST', `/api/v1/security/alerts/${open.items[0]!.id}/acknowledge`)).status).toBe(409);
    // Nobody handles the alert about themselves: the owner tuned a rule, that alert is another's to close.
    const aboutOwner = (await db.superQuery<{ id: string }>(`SELECT id FROM ringvakt.security_alerts WHERE tenant_id = $1 AND rule_id = 'security.monitoring_changed'`, [attacked.tenantId])).rows[0]!;
    const self = await send(attacked.owner.token, 'POST', `/api/v1/security/alerts/${aboutOwner.id}/resolve`);
    expect(self.status).toBe(403);
  });

  it('an alert storm: past 20 new alerts a minute the lesser ones fold into one storm alert with a count; a high one still raises its own', async () => {
    const tenant = await seedTenant(db.handles, 'sec-storm');
    const tenantDb = db.handles.forTenant(tenant.tenantId);
    const settings = effectiveSettings([]);
    const now = new Date();
    const hit = (ruleId: string, subject: string, id: number) => ({ ruleId, subject, windowCount: 10, newEvents: 1, firstSeen: now, lastSeen: now, evidence: [String(id)] });
    const flood = Array.from({ length: 60 }, (_, index) => hit('auth.failed_signins_account', `account:${index}`, index + 1));
    const outcome = await tenantDb.transaction((trx) => recordHits(trx, [...flood, hit('privilege.mfa_removed', 'user:victim', 999)], settings, now));
    expect(outcome.stormed).toBe(41);
    const alerts = await db.superQuery<{ rule_id: string; hits: number }>(`SELECT rule_id, hits FROM ringvakt.security_alerts WHERE tenant_id = $1`, [tenant.tenantId]);
    const byRule = (rule: string) => alerts.rows.filter((row) => row.rule_id === rule);
    // The high one first: it takes one of the 20, and is never folded.
    expect(byRule('privilege.mfa_removed')).toHaveLength(1);
    expect(byRule('auth.failed_signins_account')).toHaveLength(19);
    expect(byRule('monitor.alert_storm').map((row) => row.hits)).toEqual([41]);
    // The next wave in the same minute adds to the storm; no new lesser alert.
    await tenantDb.transaction((trx) => recordHits(trx, Array.from({ length: 5 }, (_, index) => hit('auth.failed_signins_account', `account:new-${index}`, 2000 + index)), settings, now));
    const storm = await db.superQuery<{ hits: number }>(`SELECT hits FROM ringvakt.security_alerts WHERE tenant_id = $1 AND rule_id = 'monitor.alert_storm'`, [tenant.tenantId]);
    expect(storm.rows.map((row) => row.hits)).toEqual([46]);
  });

  it('a receiver that never answers: each attempt ends at its timeout, and the delivery is given up after its last attempt', async () => {
    const silent = startReceiver(() => webhookSecret, { failFirst: 0, silent: true });
    const url = await silent.listen();
    const tenantDb = db.handles.forTenant(calm.tenantId);
    const { cipher } = await db.handles.crypto();
    try {
      const hook = (await (await asSession(calm, 'POST', '/api/v1/security/alert-webhooks', { url, minSeverity: 'low' })).json()) as { id: string };
      const alert = await db.superQuery<{ id: string }>(`INSERT INTO ringvakt.security_alerts (tenant_id, rule_id, severity, subject, summary, first_seen, last_seen) VALUES ($1, 'privilege.mfa_removed', 'high', 'user:x', 'test', now(), now()) RETURNING id`, [calm.tenantId]);
      await db.superQuery(`INSERT INTO ringvakt.alert_deliveries (tenant_id, alert_id, webhook_id, hits, attempts) VALUES ($1, $2, $3, 1, $4)`, [calm.tenantId, alert.rows[0]!.id, hook.id, MAX_ATTEMPTS - 1]);
      const started = Date.now();
      expect(await deliverDue(tenantDb, cipher)).toEqual({ delivered: 0, failed: 1, retried: 0 });
      expect(Date.now() - started).toBeLessThan(9_000);
      const row = await db.superQuery<{ state: string; last_error: string }>(`SELECT state, last_error FROM ringvakt.alert_deliveries WHERE tenant_id = $1`, [calm.tenantId]);
      expect(row.rows[0]).toEqual({ state: 'failed', last_error: 'ETIMEDOUT' });
    } finally {
      await silent.close();
    }
  }, 20_000);

  it('a sign-in from a network the organisation never signed in from raises one alert, also after a takeover rebuilt what the detector knows', async () => {
    expect(networkOf('::ffff:198.51.100.7')).toBe('198.51.100.0/24');
    expect(networkOf('2001:db8:1:2::5')).toBe('2001:db8:1::/48');
    const tenant = await seedTenant(db.handles, 'sec-novel');
    const tenantDb = db.handles.forTenant(tenant.tenantId);
    const signIn = (sourceIp: string, occurredAt = new Date()) =>
      tenantDb.transaction((trx) => recordAuditEvent(trx, { action: 'auth.login', outcome: 'success', actor: { type: 'user', id: tenant.owner.id }, target: { type: 'user', id: tenant.owner.id }, sourceIp, occurredAt }));
    const novel = async () => (await db.superQuery<{ subject: string; severity: string }>(`SELECT subject, severity FROM ringvakt.security_alerts WHERE tenant_id = $1 AND rule_id = 'auth.signin_new_network' ORDER BY raised_at`, [tenant.tenantId])).rows;
    // A history of 25 sign-ins from the office network, two days ago: learned, nothing raised.
    for (let index = 0; index < 25; index += 1) await signIn(`198.51.100.${index + 1}`, new Date(Date.now() - 2 * 86_400_000));
    await evaluate();
    expect(await novel()).toEqual([]);
    // Another node takes over: it learns the office network back from the ledger's past.
    await monitor.stop();
    monitor = startSecurityMonitor({ systemDb: db.handles.systemDb, connectionString: String(db.handles.pool.options.connectionString), cipher: async () => (await db.handles.crypto()).cipher, logger: db.logger, tickMs: 0 });
    await signIn('198.51.100.200');
    await evaluate();
    expect(await novel()).toEqual([]);
    await signIn('203.0.113.9');
    await signIn('203.0.113.50');
    await evaluate();
    expect(await novel()).toEqual([{ subject: 'network:203.0.113.0/24', severity: 'medium' }]);
  });
});
