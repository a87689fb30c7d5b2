import { randomBytes } from 'node:crypto';
import { createSocket } from 'node:dgram';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createUser } from '../src/modules/users/users.repo.ts';
import { recordHits } from '../src/security/alerts.ts';
import { effectiveSettings } from '../src/security/detection-rules.ts';
import { alertRecipients } from '../src/security/contacts.ts';
import { startSecurityMonitor } from '../src/security/monitor-service.ts';
import { aboveBaseline } from '../src/security/baseline.ts';
import { createTenantDetector } from '../src/security/detector.ts';
import { loadWorkingHours } from '../src/security/working-hours.ts';
import { resetSignals } from '../src/security/installation-alerts.ts';
import { createRootKeyProvider } from '../src/crypto/root-keys/create-root-key-provider.ts';
import { recordAuditEvent } from '../src/audit/audit-event.ts';
import { sealTenantLedger } from '../src/audit/seal-audit-log.ts';
import { loadSigningKey } from '../src/audit/signing-key.ts';
import { pruneAuditLedger } from '../src/audit/retention.ts';
import type { App } from '../src/server/types.ts';
import { bearer, buildTestApp, PUBLIC_URL } from './support/app.ts';
import { send, sessionFor, type Browser } from './support/auth.ts';
import { createTestDatabase, serverLabel, type TestDatabase } from './support/database.ts';
import { seedTenant, type SeededTenant } from './support/seed.ts';

type Json = Record<string, unknown>;

/**
 * Incident response: a case opened from an alert, contained from the case (sessions and tokens
 * ended, an account disabled, an address range blocked), linked to a breach record; the security
 * contacts and on-call rota that alerts go to; the syslog copy of alerts; and the security policy
 * and training every person must acknowledge before anything else.
 */
describe(`incident response and security attestations (${serverLabel()} server)`, () => {
  let db: TestDatabase;
  let app: App;
  let tenant: SeededTenant;
  let owner: Browser;

  const asToken = (token: string, method: string, url: string, payload?: unknown, remoteAddress = '127.0.0.1') =>
    app.inject({ method: method as 'GET', url, remoteAddress, headers: { ...bearer(token), ...(method === 'GET' ? {} : { origin: PUBLIC_URL }) }, ...(payload === undefined ? {} : { payload: payload as Json }) });
  const raise = async (ruleId: string, subject: string, firstSeen: Date) => {
    const outcome = await db.handles.forTenant(tenant.tenantId).transaction((trx) => recordHits(trx, [{ ruleId, subject, windowCount: 30, newEvents: 30, firstSeen, lastSeen: new Date(), evidence: [] }], effectiveSettings([]), new Date()));
    return outcome.raised[0] as string;
  };
  const auditActions = async (since: Date) => (await db.superQuery<{ action: string; details: Json }>(`SELECT action, details FROM ringvakt.audit_events WHERE tenant_id = $1 AND occurred_at >= $2 ORDER BY id`, [tenant.tenantId, since])).rows;

  beforeAll(async () => {
    // Owner access: the audit retention procedure runs with the owner's rights.
    db = await createTestDatabase({ ownerAccess: true });
    tenant = await seedTenant(db.handles, 'incidents');
    app = await buildTestApp(db);
    owner = await sessionFor(db.handles, tenant.tenantId, tenant.owner.id);
  });
  afterAll(async () => {
    await app?.close();
    await db?.drop();
  });

  it('an incident from an alert: contained from the case, its time to contain measured, a breach opened in one step, everything on its timeline and in the ledger', async () => {
    const started = new Date();
    const firstSeen = new Date(Date.now() - 90_000);
    const alertId = await raise('data.reveal_burst', `user:${tenant.agent.id}`, firstSeen);
    const opened = await send(app, owner, 'POST', '/api/v1/security/incidents', { title: 'Agent scraping reveals', severity: 'high', alertIds: [alertId] });
    expect(opened.statusCode, opened.body).toBe(201);
    const incident = opened.json() as Json & { id: string; reference: string; detectedAt: string };
    expect(incident.reference).toMatch(/^INC-\d{4}-001$/);
    // The first sign is the alert's first event, not the moment the case was opened.
    expect(new Date(incident.detectedAt).getTime()).toBe(firstSeen.getTime());
    const alert = await db.superQuery<{ state: string }>(`SELECT state FROM ringvakt.security_alerts WHERE id = $1`, [alertId]);
    expect(alert.rows[0]?.state).toBe('acknowledged');
    // An alert belongs to one case.
    expect((await send(app, owner, 'POST', '/api/v1/security/incidents', { title: 'Again', severity: 'low', alertIds: [alertId] })).statusCode).toBe(409);
    // Nobody takes an alert about themselves into a case (they would own its investigation).
    const aboutOwner = await raise('privilege.admin_granted', `user:${tenant.owner.id}`, new Date());
    expect((await send(app, owner, 'POST', '/api/v1/security/incidents', { title: 'Mine', severity: 'high', alertIds: [aboutOwner] })).statusCode).toBe(403);

    // The agent's API token works until containment ends it.
    expect((await asToken(tenant.agent.token, 'GET', '/api/v1/tenant')).statusCode).toBe(200);
    const revoked = await send(app, owner, 'POST', `/api/v1/security/incidents/${incident.id}/containment`, { action: 'revoke_user_access', userId: tenant.agent.id, reason: 'stop the scraping now' });
    expect(revoked.statusCode, revoked.body).toBe(200);
    expect((await asToken(tenant.agent.token, 'GET', '/api/v1/tenant')).statusCode).toBe(401);
    // Nobody contains themselves (an insider would end the case's own investigation).
    const self = await send(app, owner, 'POST', `/api/v1/security/incidents/${incident.id}/containment`, { action: 'disable_user', userId: tenant.owner.id, reason: 'mistake' });
    expect(self.statusCode).toBe(409);
    const disabled = await send(app, owner, 'POST', `/api/v1/security/incidents/${incident.id}/containment`, { action: 'disable_user', userId: tenant.agent.id, reason: 'until the interview' });
    expect(disabled.statusCode, disabled.body).toBe(200);
    const agentRow = await db.superQuery<{ status: string }>(`SELECT status FROM ringvakt.users WHERE id = $1`, [tenant.agent.id]);
    expect(agentRow.rows[0]?.status).toBe('disabled');
    // A campaign that does not exist cannot be paused; nothing is recorded for it.
    expect((await send(app, owner, 'POST', `/api/v1/security/incidents/${incident.id}/containment`, { action: 'pause_campaign', campaignId: '00000000-0000-4000-8000-000000000000', reason: 'dialer abuse' })).statusCode).toBe(404);

    const contained = await send(app, owner, 'POST', `/api/v1/security/incidents/${incident.id}/contain`, { entry: 'Access ended; account disabled' });
    expect(contained.statusCode).toBe(200);
    const afterContain = contained.json() as { state: string; secondsToContain: number };
    expect(afterContain.state).toBe('contained');
    expect(afterContain.secondsToContain).toBeGreaterThanOrEqual(90);
    expect(afterContain.secondsToContain).toBeLessThan(200);

    // Personal data was revealed: one step opens the breach record, whose 72 hours start now.
    const breach = await send(app, owner, 'POST', `/api/v1/security/incidents/${incident.id}/breach`, { dataCategories: ['phone numbers'], dataEncrypted: true });
    expect(breach.statusCode, breach.body).toBe(200);
    const withBreach = breach.json() as { breachId: string; personalData: boolean; timeline: { kind: string; entry: string }[]; alertIds: string[] };
    expect(withBreach.personalData).toBe(true);
    const register = await db.superQuery<{ reference: string; detected_at: Date; aware_at: Date; description: string }>(`SELECT reference, detected_at, aware_at, description FROM ringvakt.breaches WHERE id = $1`, [withBreach.breachId]);
    expect(register.rows[0]?.reference).toMatch(/^BR-\d{4}-\d{3}$/);
    expect(register.rows[0]?.detected_at.getTime()).toBe(firstSeen.getTime());
    expect(register.rows[0]?.description).toContain(incident.reference);
    expect((await send(app, owner, 'POST', `/api/v1/security/incidents/${incident.id}/breach`, {})).statusCode).toBe(409);
    // The case waits for the privacy team's decision on telling the authority.
    const early = await send(app, owner, 'POST', `/api/v1/security/incidents/${incident.id}/resolve`, { resolution: 'Agent dismissed' });
    expect(early.statusCode).toBe(409);
    expect(withBreach.alertIds).toEqual([alertId]);
    expect(withBreach.timeline.map((entry) => entry.kind)).toEqual(['opened', 'alert_linked', 'containment', 'containment', 'contained', 'breach_opened']);

    const actions = (await auditActions(started)).map((row) => `${row.action}${row.details.step ? `:${String(row.details.step)}` : ''}${row.details.action ? `:${String(row.details.action)}` : ''}`);
    for (const expected of ['security.incident:opened', 'security.alert_acknowledged', 'session.revoke', 'security.containment:revoke_user_access', 'security.incident:containment', 'user.disable', 'security.containment:disable_user', 'security.incident:contained', 'privacy.breach:recorded', 'security.incident:breach_opened']) {
      expect(actions, expected).toContain(expected);
    }
  });

  it('pausing a campaign’s dialer from the case: no new dials from its next round, the step audited with the incident', async () => {
    const campaign = await db.handles.forTenant(tenant.tenantId).transaction((trx) => trx.insertInto('campaigns').values({ name: 'Winter offer' }).returning('id').executeTakeFirstOrThrow());
    await db.superQuery(`UPDATE ringvakt.campaigns SET state = 'active', started_at = now() WHERE id = $1`, [campaign.id]);
    const incident = (await send(app, owner, 'POST', '/api/v1/security/incidents', { title: 'Dialer used to harass numbers', severity: 'high' })).json() as { id: string };
    const paused = await send(app, owner, 'POST', `/api/v1/security/incidents/${incident.id}/containment`, { action: 'pause_campaign', campaignId: campaign.id, reason: 'stop the calls' });
    expect(paused.statusCode, paused.body).toBe(200);
    expect((paused.json() as { timeline: { kind: string; entry: string }[] }).timeline.at(-1)).toMatchObject({ kind: 'containment', entry: expect.stringContaining('Paused the dialer') });
    const state = await db.superQuery<{ state: string }>(`SELECT state FROM ringvakt.campaigns WHERE id = $1`, [campaign.id]);
    expect(state.rows[0]?.state).toBe('paused');
    const audited = await db.superQuery<{ incident: string }>(`SELECT details->>'incident' AS incident FROM ringvakt.audit_events WHERE tenant_id = $1 AND action = 'campaign.pause' AND target_id = $2`, [tenant.tenantId, campaign.id]);
    expect(audited.rows.map((row) => row.incident)).toEqual([incident.id]);
    // A campaign paused already: the containment says so and changes nothing.
    expect((await send(app, owner, 'POST', `/api/v1/security/incidents/${incident.id}/containment`, { action: 'pause_campaign', campaignId: campaign.id, reason: 'again' })).statusCode).toBe(409);
  });

  it('a blocked address range is refused on every request until the block is lifted; a block that would lock the blocker out is refused', async () => {
    const tenantDb = db.handles.forTenant(tenant.tenantId);
    const cipher = (await db.handles.crypto()).cipher;
    const analyst = await tenantDb.transaction((trx) => createUser(trx, cipher, { email: 'analyst@incidents.example', displayName: 'Analyst', role: 'admin' }));
    await db.superQuery(`UPDATE ringvakt.users SET status = 'active' WHERE id = $1`, [analyst.id]);
    const opened = await send(app, owner, 'POST', '/api/v1/security/incidents', { title: 'Stuffing from one provider', severity: 'medium' });
    const incident = opened.json() as { id: string };
    const token = tenant.owner.token;
    expect((await asToken(token, 'GET', '/api/v1/tenant', undefined, '198.51.100.77')).statusCode).toBe(200);

    const tooWide = await send(app, owner, 'POST', `/api/v1/security/incidents/${incident.id}/containment`, { action: 'block_network', network: '198.0.0.0/8', reason: 'wave' });
    expect(tooWide.statusCode).toBe(400);
    const ownAddress = await send(app, owner, 'POST', `/api/v1/security/incidents/${incident.id}/containment`, { action: 'block_network', network: '127.0.0.0/24', reason: 'wave' });
    expect(ownAddress.statusCode).toBe(400);
    expect((ownAddress.json() as { errors: { message: string }[] }).errors[0]?.message).toBe('contains your address');

    const blocked = await send(app, owner, 'POST', `/api/v1/security/incidents/${incident.id}/containment`, { action: 'block_network', network: '198.51.100.0/24', expiresInHours: 24, reason: 'credential stuffing wave' });
    expect(blocked.statusCode, blocked.body).toBe(200);
    const block = (blocked.json() as { blockedNetworks: { id: string; network: string; expiresAt: string }[] }).blockedNetworks[0]!;
    expect(block.network).toBe('198.51.100.0/24');
    const refused = await asToken(token, 'GET', '/api/v1/tenant', undefined, '198.51.100.77');
    expect(refused.statusCode).toBe(403);
    expect((refused.json() as { code: string }).code).toBe('ip_not_allowed');
    // Sign-in from the range is refused too, and said so in the ledger.
    const signIn = await app.inject({ method: 'POST', url: '/api/v1/auth/login', remoteAddress: '198.51.100.9', headers: { origin: PUBLIC_URL }, payload: { tenant: tenant.slug, email: tenant.owner.email, password: 'not-checked-before-the-address' } });
    expect(signIn.statusCode).toBe(403);
    const denials = await db.superQuery<{ reason: string }>(`SELECT details->>'reason' AS reason FROM ringvakt.audit_events WHERE tenant_id = $1 AND outcome = 'denied' ORDER BY id DESC LIMIT 2`, [tenant.tenantId]);
    expect(denials.rows.map((row) => row.reason)).toEqual(['ip_blocked', 'ip_blocked']);
    // Other addresses are untouched.
    expect((await asToken(token, 'GET', '/api/v1/tenant', undefined, '203.0.113.5')).statusCode).toBe(200);

    const lifted = await send(app, owner, 'POST', `/api/v1/security/blocked-networks/${block.id}/lift`);
    expect(lifted.statusCode, lifted.body).toBe(200);
    expect((await asToken(token, 'GET', '/api/v1/tenant', undefined, '198.51.100.77')).statusCode).toBe(200);
    expect((await send(app, owner, 'POST', `/api/v1/security/blocked-networks/${block.id}/lift`)).statusCode).toBe(409);

    // Nobody blocks those above them: an administrator may not block the network the owner signs in from.
    const ownerSession = await sessionFor(db.handles, tenant.tenantId, tenant.owner.id);
    await db.superQuery(`UPDATE ringvakt.sessions SET source_ip = '192.0.2.10' WHERE tenant_id = $1 AND user_id = $2`, [tenant.tenantId, tenant.owner.id]);
    const admin = await sessionFor(db.handles, tenant.tenantId, analyst.id);
    const aboveMe = await send(app, admin, 'POST', `/api/v1/security/incidents/${incident.id}/containment`, { action: 'block_network', network: '192.0.2.0/24', reason: 'the owner’s office' });
    expect(aboveMe.statusCode, aboveMe.body).toBe(403);
    expect(ownerSession.cookies['__Host-rv_session']).toBeDefined();
    // An IPv4 range mapped into IPv6 would never match (requests are matched as IPv4): refused.
    const mapped = await send(app, owner, 'POST', `/api/v1/security/incidents/${incident.id}/containment`, { action: 'block_network', network: '::ffff:198.51.100.0/120', reason: 'wave' });
    expect(mapped.statusCode).toBe(400);

    const resolved = await send(app, owner, 'POST', `/api/v1/security/incidents/${incident.id}/resolve`, { resolution: 'The wave stopped; no account was entered' });
    expect(resolved.statusCode).toBe(200);
    expect((resolved.json() as { state: string; containedAt: string | null }).containedAt).not.toBeNull();
    // A resolved case takes no more steps.
    expect((await send(app, owner, 'POST', `/api/v1/security/incidents/${incident.id}/notes`, { entry: 'late' })).statusCode).toBe(409);
  });

  it('alerts go to the on-call person and the security contacts; with nobody named, high ones to owners and administrators', async () => {
    const tenantDb = db.handles.forTenant(tenant.tenantId);
    const admins = await db.superQuery<{ id: string }>(`SELECT id FROM ringvakt.users WHERE tenant_id = $1 AND status = 'active' AND role IN ('owner', 'admin') ORDER BY id`, [tenant.tenantId]);
    expect((await tenantDb.read((trx) => alertRecipients(trx, 'critical'))).sort()).toEqual(admins.rows.map((row) => row.id));
    expect(await tenantDb.read((trx) => alertRecipients(trx, 'medium'))).toEqual([]);
    // Only a security manager can be a contact.
    const agentContact = await send(app, owner, 'PUT', '/api/v1/security/contacts', { userIds: [tenant.agent.id] });
    expect(agentContact.statusCode).toBe(400);
    const analyst = admins.rows.find((row) => row.id !== tenant.owner.id)!.id;
    expect((await send(app, owner, 'PUT', '/api/v1/security/contacts', { userIds: [analyst] })).statusCode).toBe(200);
    const shift = await send(app, owner, 'POST', '/api/v1/security/on-call', { userId: tenant.owner.id, startsAt: new Date(Date.now() - 60_000).toISOString(), endsAt: new Date(Date.now() + 8 * 3_600_000).toISOString() });
    expect(shift.statusCode, shift.body).toBe(201);
    expect((shift.json() as { onCallNow: string[] }).onCallNow).toEqual([tenant.owner.id]);
    const overlap = await send(app, owner, 'POST', '/api/v1/security/on-call', { userId: analyst, startsAt: new Date(Date.now() + 3_600_000).toISOString(), endsAt: new Date(Date.now() + 10 * 3_600_000).toISOString() });
    expect(overlap.statusCode).toBe(409);
    expect(await tenantDb.read((trx) => alertRecipients(trx, 'medium'))).toEqual([tenant.owner.id]);
    expect((await tenantDb.read((trx) => alertRecipients(trx, 'high'))).sort()).toEqual([tenant.owner.id, analyst].sort());
    expect(await tenantDb.read((trx) => alertRecipients(trx, 'low'))).toEqual([]);
    // A contact demoted since is told nothing more.
    await db.superQuery(`UPDATE ringvakt.users SET role = 'agent' WHERE id = $1`, [analyst]);
    expect(await tenantDb.read((trx) => alertRecipients(trx, 'high'))).toEqual([tenant.owner.id]);
    await db.superQuery(`UPDATE ringvakt.users SET role = 'admin' WHERE id = $1`, [analyst]);

    // The tenant's status and the operator's view across tenants: open work and response times.
    const status = await send(app, owner, 'GET', '/api/v1/security/status');
    expect(status.statusCode).toBe(200);
    const body = status.json() as { timeToAcknowledge: { count: number }; timeToContain: { count: number; medianSeconds: number }; openIncidents: number; containedIncidents: number; onCallNow: string[] };
    expect(body.timeToAcknowledge.count).toBe(1);
    expect(body.timeToContain.count).toBe(2);
    expect(body.containedIncidents).toBe(1);
    expect(body.onCallNow).toEqual([tenant.owner.id]);
    const operator = (await db.handles.systemDb.securityStatus(new Date(Date.now() - 86_400_000))).find((row) => row.slug === tenant.slug);
    // Not resolved: the scraping case (contained) and the dialer case.
    expect(operator).toMatchObject({ openIncidents: 2, securityContact: true });
    expect(operator?.maxContainSeconds).toBeGreaterThanOrEqual(90);
  });

  it('the installation’s own alerts: a 4xx flood against one route, a failing key provider, audit sealing lag — one alert each, counted once', async () => {
    resetSignals();
    const monitor = startSecurityMonitor({ systemDb: db.handles.systemDb, connectionString: String(db.handles.pool.options.connectionString), cipher: async () => (await db.handles.crypto()).cipher, logger: db.logger, tickMs: 0 });
    const installation = async () => (await db.superQuery<{ rule_id: string; subject: string; hits: number; severity: string }>(`SELECT rule_id, subject, hits, severity FROM ringvakt.installation_alerts ORDER BY raised_at`)).rows;
    try {
      // A scanner tries stolen tokens against one route: 320 answers of 401 within the minute.
      const badToken = `rvk_${'0'.repeat(32)}_${'x'.repeat(40)}`;
      for (let index = 0; index < 320; index += 1) await app.inject({ method: 'GET', url: '/api/v1/contacts', headers: bearer(badToken) });
      // Everyday traffic on other routes stays below the line.
      for (let index = 0; index < 50; index += 1) await app.inject({ method: 'GET', url: '/api/v1/tenant', headers: bearer(badToken) });
      await monitor.runOnce();
      const flood = (await installation()).filter((row) => row.rule_id === 'installation.route_4xx_flood');
      expect(flood).toEqual([{ rule_id: 'installation.route_4xx_flood', subject: 'route:GET /api/v1/contacts', hits: 320, severity: 'medium' }]);
      // Counted once: a second look at the same minute adds nothing; more of the flood adds to the one alert.
      await monitor.runOnce();
      expect((await installation()).filter((row) => row.rule_id === 'installation.route_4xx_flood').map((row) => row.hits)).toEqual([320]);
      await new Promise((resolve) => setTimeout(resolve, 1100));
      for (let index = 0; index < 40; index += 1) await app.inject({ method: 'GET', url: '/api/v1/contacts', headers: bearer(badToken) });
      await monitor.runOnce();
      expect((await installation()).filter((row) => row.rule_id === 'installation.route_4xx_flood').map((row) => row.hits)).toEqual([360]);

      // The root key provider failing three times (here: keys it never wrapped).
      const provider = await createRootKeyProvider({ keys: { provider: 'env', rootKey: randomBytes(32).toString('base64'), previous: undefined }, dataDir: '/nonexistent' });
      for (let index = 0; index < 3; index += 1) await expect(provider.unwrap({ keyId: provider.currentKeyId(), wrapped: randomBytes(60) }, Buffer.from('context'))).rejects.toThrow();
      // An audit event waiting two minutes to be sealed.
      await db.handles.forTenant(tenant.tenantId).transaction((trx) => recordAuditEvent(trx, { action: 'audit.search', outcome: 'success', actor: { type: 'system' }, occurredAt: new Date(Date.now() - 120_000) }));
      await monitor.runOnce();
      const rows = await installation();
      expect(rows.filter((row) => row.rule_id === 'installation.key_provider_errors')).toMatchObject([{ subject: 'key-provider', hits: 3, severity: 'critical' }]);
      expect(rows.filter((row) => row.rule_id === 'installation.sealing_lag')).toMatchObject([{ subject: 'audit-sealer', severity: 'critical' }]);
      const status = await db.handles.systemDb.installationAlerts();
      expect(status.map((alert) => alert.rule_id).sort()).toEqual(['installation.key_provider_errors', 'installation.route_4xx_flood', 'installation.sealing_lag']);
      // Handled by the operator: acknowledged once, then resolved.
      const flooded = status.find((alert) => alert.rule_id === 'installation.route_4xx_flood')!;
      expect(await db.handles.systemDb.setInstallationAlertState(flooded.id, 'acknowledged', 'operator:test')).toBe(true);
      expect(await db.handles.systemDb.setInstallationAlertState(flooded.id, 'acknowledged', 'operator:test')).toBe(false);
      expect(await db.handles.systemDb.setInstallationAlertState(flooded.id, 'resolved', 'operator:test')).toBe(true);
    } finally {
      await monitor.stop();
    }
  });

  it('alerts are copied to the installation’s syslog receiver once, with their severity', async () => {
    const receiver = createSocket('udp4');
    const lines: string[] = [];
    receiver.on('message', (message) => lines.push(message.toString()));
    await new Promise<void>((resolve) => receiver.bind(0, '127.0.0.1', resolve));
    const monitor = startSecurityMonitor({ systemDb: db.handles.systemDb, connectionString: String(db.handles.pool.options.connectionString), cipher: async () => (await db.handles.crypto()).cipher, logger: db.logger, tickMs: 0, alertSyslog: `udp://127.0.0.1:${(receiver.address() as AddressInfo).port}` });
    try {
      const alertId = await raise('privilege.mfa_removed', `user:${tenant.owner.id}`, new Date());
      await monitor.runOnce();
      await new Promise((resolve) => setTimeout(resolve, 200));
      const mine = lines.filter((line) => line.includes(alertId));
      expect(mine).toHaveLength(1);
      // The installation's own alerts go the same way, as critical ones where they are.
      expect(lines.filter((line) => line.includes('"type":"ringvakt.installation.alert"') && line.includes('installation.key_provider_errors'))).toHaveLength(1);
      expect(lines.find((line) => line.includes('installation.key_provider_errors'))).toMatch(/^<34>1 /);
      // Facility 4 (security), severity 3 (error) for a high alert; RFC 5424 with the alert as JSON.
      expect(mine[0]).toMatch(/^<35>1 \S+ \S+ ringvakt \d+ security-alert - \{/);
      expect(JSON.parse(mine[0]!.slice(mine[0]!.indexOf('{')))).toMatchObject({ type: 'ringvakt.security.alert', tenantId: tenant.tenantId, alertId, rule: 'privilege.mfa_removed', severity: 'high' });
      await monitor.runOnce();
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(lines.filter((line) => line.includes(alertId))).toHaveLength(1);
    } finally {
      await monitor.stop();
      receiver.close();
    }
  });

  it("a reveal burst is judged against the larger of the user's own habit and the team's: a new agent by the team, a heavy user by their own", async () => {
    const team = await seedTenant(db.handles, 'baseline-team');
    const tenantDb = db.handles.forTenant(team.tenantId);
    // Day-long windows: the past week is seven of them.
    const settings = effectiveSettings([{ rule_id: 'data.reveal_burst', enabled: true, threshold: 5, window_seconds: 86_400, severity: 'high' }]);
    const now = Date.now();
    await tenantDb.transaction(async (trx) => {
      // Four agents reveal 70 values a week each (10 a day); a heavy user 700 (100 a day).
      for (const [actor, count] of [['agent-1', 70], ['agent-2', 70], ['agent-3', 70], ['agent-4', 70], ['heavy', 700]] as const) {
        for (let index = 0; index < count; index += 1) {
          await recordAuditEvent(trx, { action: 'contact.reveal', outcome: 'success', actor: { type: 'user', id: actor }, occurredAt: new Date(now - 86_400_000 - ((index * 6 * 86_400_000) / count)) });
        }
      }
    });
    const hit = (actor: string, windowCount: number) => ({ ruleId: 'data.reveal_burst', subject: `user:${actor}`, windowCount, newEvents: windowCount, firstSeen: new Date(now), lastSeen: new Date(now), evidence: [] });
    const kept = async (actor: string, windowCount: number) => (await aboveBaseline(tenantDb, [hit(actor, windowCount)], settings)).length === 1;
    // The team's usual day per user: (4 × 70 + 700) / 5 / 7 = 28; three times that is 84.
    expect(await kept('newcomer', 80)).toBe(false);
    expect(await kept('newcomer', 90)).toBe(true);
    expect(await kept('agent-1', 90)).toBe(true);
    // The heavy user's own day is 100: only past 300 is far above it.
    expect(await kept('heavy', 250)).toBe(false);
    expect(await kept('heavy', 310)).toBe(true);
  });

  it('exports outside the organisation’s own working hours, days and time zone raise the alert; bad settings are refused', async () => {
    expect((await send(app, owner, 'PUT', '/api/v1/security/working-hours', { timeZone: 'Mars/Olympus', from: 9, to: 17, days: [1, 2, 3, 4, 5] })).statusCode).toBe(400);
    const backwards = await send(app, owner, 'PUT', '/api/v1/security/working-hours', { timeZone: 'America/New_York', from: 17, to: 9, days: [1] });
    expect(backwards.statusCode).toBe(400);
    expect((backwards.json() as { code: string }).code).toBe('rule_impossible');
    const export_ = (at: string) => ({ id: at, occurredAt: new Date(at), actorType: 'user', actorId: 'exporter', action: 'contact_list.export', targetType: 'contact_list', targetId: 'l', outcome: 'success', sourceIp: null, details: {} });
    const offHours = (events: ReturnType<typeof export_>[], hours?: Awaited<ReturnType<typeof loadWorkingHours>>) => createTenantDetector().feed(events, effectiveSettings([]), hours ? { hours } : {}).filter((hit) => hit.ruleId === 'data.export_off_hours').length;
    // Wednesday 08:00 UTC: 09:00 in Oslo (working), 03:00 in New York (not); Saturday noon in Oslo: a weekend.
    const wednesdayMorning = export_('2026-12-02T08:00:00.000Z');
    const saturdayNoon = export_('2026-12-05T11:00:00.000Z');
    expect(offHours([wednesdayMorning])).toBe(0);
    expect(offHours([saturdayNoon])).toBe(1);
    const saved = await send(app, owner, 'PUT', '/api/v1/security/working-hours', { timeZone: 'America/New_York', from: 9, to: 17, days: [5, 1, 2, 3, 4, 1] });
    expect(saved.statusCode, saved.body).toBe(200);
    expect(saved.json()).toEqual({ timeZone: 'America/New_York', from: 9, to: 17, days: [1, 2, 3, 4, 5] });
    const hours = await db.handles.forTenant(tenant.tenantId).read(loadWorkingHours);
    expect(offHours([wednesdayMorning], hours)).toBe(1);
    expect(offHours([export_('2026-12-02T15:00:00.000Z')], hours)).toBe(0);
  });

  it('audit retention holds the events linked to an incident under investigation, and lets them go once it is resolved', async () => {
    const held = await seedTenant(db.handles, 'evidence-held');
    const heldDb = db.handles.forTenant(held.tenantId);
    const key = await loadSigningKey(db.handles.systemDb, (await db.handles.crypto()).root);
    const batch = async (count: number) => {
      await heldDb.transaction(async (trx) => {
        for (let index = 0; index < count; index += 1) await recordAuditEvent(trx, { action: 'contact.reveal', outcome: 'success', actor: { type: 'user', id: held.agent.id }, occurredAt: new Date(Date.now() - 86_400_000) });
      });
      await heldDb.transaction((trx) => sealTenantLedger(trx, key));
    };
    await batch(5);
    await batch(5);
    const second = await db.superQuery<{ id: string; leaf_index: string }>(`SELECT id, leaf_index FROM ringvakt.audit_events WHERE tenant_id = $1 AND action = 'contact.reveal' ORDER BY leaf_index DESC LIMIT 1`, [held.tenantId]);
    const linked = second.rows[0]!;
    await batch(5);
    const heldOwner = await sessionFor(db.handles, held.tenantId, held.owner.id);
    const incident = (await send(app, heldOwner, 'POST', '/api/v1/security/incidents', { title: 'Reveals under investigation', severity: 'high' })).json() as { id: string };
    expect((await send(app, heldOwner, 'POST', `/api/v1/security/incidents/${incident.id}/audit-events`, { eventIds: [linked.id] })).statusCode).toBe(200);
    const remaining = async () => (await db.superQuery<{ id: string }>(`SELECT id FROM ringvakt.audit_events WHERE tenant_id = $1 AND action = 'contact.reveal'`, [held.tenantId])).rows.map((row) => row.id);
    // Everything sealed is past its retention here (the seeded events are minutes old): only the hold keeps anything.
    const cutoff = new Date(Date.now() + 60_000);
    const first = await pruneAuditLedger(db.handles, key, { tenantId: held.tenantId, cutoff, reason: 'test', executedBy: 'test' });
    // Events before the linked one's checkpoint went; the linked one, and all after it, stayed.
    expect(first.removed).toBeGreaterThan(0);
    expect(first.prunedBeforeLeaf).toBeLessThanOrEqual(Number(linked.leaf_index));
    expect(await remaining()).toContain(linked.id);
    expect((await send(app, heldOwner, 'POST', `/api/v1/security/incidents/${incident.id}/resolve`, { resolution: 'A colleague’s test, not an attack' })).statusCode).toBe(200);
    await heldDb.transaction((trx) => sealTenantLedger(trx, key));
    await pruneAuditLedger(db.handles, key, { tenantId: held.tenantId, cutoff, reason: 'test', executedBy: 'test' });
    expect(await remaining()).not.toContain(linked.id);
  });

  it('a published security policy must be acknowledged before anything else, again for a new version and after a year; completion is evidence', async () => {
    const tenantDb = db.handles.forTenant(tenant.tenantId);
    const cipher = (await db.handles.crypto()).cipher;
    const person = await tenantDb.transaction((trx) => createUser(trx, cipher, { email: 'supervisor@incidents.example', displayName: 'Supervisor', role: 'supervisor' }));
    await db.superQuery(`UPDATE ringvakt.users SET status = 'active' WHERE id = $1`, [person.id]);
    const browser = await sessionFor(db.handles, tenant.tenantId, person.id);
    expect((await send(app, browser, 'GET', '/api/v1/tenant')).statusCode).toBe(200);

    const noText = await send(app, owner, 'POST', '/api/v1/security/documents', { kind: 'policy', title: 'Information security policy', version: '1.0' });
    expect(noText.statusCode).toBe(400);
    const published = await send(app, owner, 'POST', '/api/v1/security/documents', { kind: 'policy', title: 'Information security policy', version: '1.0', content: 'Lock your screen. Never share a password. Report anything odd to security.' });
    expect(published.statusCode, published.body).toBe(201);
    const policy = published.json() as { id: string; sha256: string };
    expect((await send(app, owner, 'POST', '/api/v1/security/documents', { kind: 'policy', title: 'Again', version: '1.0', content: 'x' })).statusCode).toBe(409);

    // From the next request on, the person must acknowledge first (a session, not a token).
    const gated = await send(app, browser, 'GET', '/api/v1/tenant');
    expect(gated.statusCode).toBe(403);
    expect((gated.json() as { code: string }).code).toBe('attestation_required');
    expect((await send(app, browser, 'GET', '/api/v1/auth/session')).json()).toMatchObject({ attestationRequired: true });
    const owed = (await send(app, browser, 'GET', '/api/v1/me/security-documents')).json() as { items: { id: string; due: boolean; content: string; sha256: string }[] };
    expect(owed.items).toHaveLength(1);
    expect(owed.items[0]).toMatchObject({ id: policy.id, due: true, sha256: policy.sha256 });
    expect((await send(app, browser, 'POST', `/api/v1/me/security-documents/${policy.id}/acknowledge`, { sha256: '0'.repeat(64) })).statusCode).toBe(409);
    expect((await send(app, browser, 'POST', `/api/v1/me/security-documents/${policy.id}/acknowledge`, { sha256: policy.sha256 })).statusCode).toBe(204);
    expect((await send(app, browser, 'GET', '/api/v1/tenant')).statusCode).toBe(200);
    // Acknowledging again while it holds records nothing more.
    expect((await send(app, browser, 'POST', `/api/v1/me/security-documents/${policy.id}/acknowledge`, { sha256: policy.sha256 })).statusCode).toBe(204);
    expect((await db.superQuery<{ n: number }>(`SELECT count(*)::int AS n FROM ringvakt.security_attestations WHERE user_id = $1`, [person.id])).rows[0]?.n).toBe(1);
    expect((await send(app, browser, 'GET', '/api/v1/auth/session')).json()).toMatchObject({ attestationRequired: false });

    // Training published: owed again.
    const training = (await send(app, owner, 'POST', '/api/v1/security/documents', { kind: 'training', title: 'Phishing and social engineering', version: '2026.1', url: 'https://learning.example/ringvakt/phishing' })).json() as { id: string; sha256: string };
    expect((await send(app, browser, 'GET', '/api/v1/tenant')).statusCode).toBe(403);
    expect((await send(app, browser, 'POST', `/api/v1/me/security-documents/${training.id}/acknowledge`, { sha256: training.sha256 })).statusCode).toBe(204);
    expect((await send(app, browser, 'GET', '/api/v1/tenant')).statusCode).toBe(200);

    // Completion per user: the supervisor has both; the owner (who published) has neither yet.
    const completion = (await send(app, owner, 'GET', '/api/v1/security/attestations')).json() as { users: { userId: string; complete: boolean }[]; summary: { activeUsers: number; complete: number } };
    expect(completion.users.find((user) => user.userId === person.id)?.complete).toBe(true);
    expect(completion.users.find((user) => user.userId === tenant.owner.id)?.complete).toBe(false);
    expect(completion.summary.complete).toBe(1);

    // A year later the acknowledgement has lapsed: a new session is held at the gate again.
    await db.superQuery(`UPDATE ringvakt.security_attestations SET acknowledged_at = acknowledged_at - interval '366 days' WHERE user_id = $1 AND document_id = $2`, [person.id, policy.id]);
    const nextYear = await sessionFor(db.handles, tenant.tenantId, person.id);
    expect((await send(app, nextYear, 'GET', '/api/v1/tenant')).statusCode).toBe(403);
    // An API token is not held: integrations keep running while people catch up.
    expect((await asToken(tenant.owner.token, 'GET', '/api/v1/tenant')).statusCode).toBe(200);
  });
});
