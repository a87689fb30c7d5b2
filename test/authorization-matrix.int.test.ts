import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BuiltInRole } from '../src/db/schema.ts';
import { builtInRoleNames, builtInRoles } from '../src/modules/access/permissions.ts';
import { createUser } from '../src/modules/users/users.repo.ts';
import type { App } from '../src/server/types.ts';
import type { RouteEntry } from '../src/server/access-control.ts';
import { buildTestApp, PUBLIC_URL } from './support/app.ts';
import { sessionFor } from './support/auth.ts';
import { createTestDatabase, serverLabel, type TestDatabase } from './support/database.ts';
import { seedTenant, type SeededTenant } from './support/seed.ts';
import { registerPersonalData } from './support/canary.ts';
import { createContact } from '../src/modules/contacts/contacts.service.ts';
import { addSuppression } from '../src/modules/suppression/suppression.service.ts';
import { createImport } from '../src/modules/imports/imports.routes.ts';
import { createRequest } from '../src/privacy/requests.ts';

/**
 * The authorization matrix, generated from the route table: every route × every built-in role ×
 * (own tenant, another tenant's object, no session). A new route is covered the moment it is
 * registered; a route whose parameter this test cannot fill fails it.
 */
describe(`authorization matrix over every route (${serverLabel()} server)`, () => {
  let db: TestDatabase;
  let app: App;
  let a: SeededTenant;
  let b: SeededTenant;
  const users: Partial<Record<BuiltInRole, string>> = {};
  const own: Record<string, string> = {};
  const other: Record<string, string> = {};

  beforeAll(async () => {
    db = await createTestDatabase();
    a = await seedTenant(db.handles, 'matrix-a');
    b = await seedTenant(db.handles, 'matrix-b');
    const { cipher } = await db.handles.crypto();
    const tenantA = db.handles.forTenant(a.tenantId);
    for (const role of builtInRoleNames) {
      const email = `${role}.member@matrix-a.example`;
      registerPersonalData(email);
      const user = await tenantA.transaction((trx) => createUser(trx, cipher, { email, displayName: `The ${role}`, role }));
      await tenantA.transaction((trx) => trx.updateTable('users').set({ status: 'active' }).where('id', '=', user.id).execute());
      users[role] = user.id;
    }
    // Objects each parameter can name: in the caller's tenant, and in the other one.
    const objects = async (tenant: SeededTenant, into: Record<string, string>) => {
      const handle = db.handles.forTenant(tenant.tenantId);
      const role = await handle.transaction((trx) => trx.insertInto('roles').values({ name: 'matrix-role', permissions: ['tenant:read'] }).returning('id').executeTakeFirstOrThrow());
      const token = await handle.read((trx) => trx.selectFrom('api_tokens').select('id').where('user_id', '=', tenant.agent.id).executeTakeFirstOrThrow());
      await sessionFor(db.handles, tenant.tenantId, tenant.agent.id);
      const session = await handle.read((trx) => trx.selectFrom('sessions').select('id').where('user_id', '=', tenant.agent.id).executeTakeFirstOrThrow());
      into.userId = tenant.agent.id;
      into.roleId = role.id;
      into.tokenId = token.id;
      into.sessionId = session.id;
      const passkey = await handle.transaction((trx) =>
        trx.insertInto('webauthn_credentials').values({ user_id: tenant.agent.id, credential_id: `matrix-${tenant.slug}-credential`, public_key: Buffer.alloc(77, 1), name: 'key' }).returning('id').executeTakeFirstOrThrow(),
      );
      into.passkeyId = passkey.id;
      const crypto = await db.handles.crypto();
      await handle.transaction(async (trx) => {
        into.contactId = (await createContact(trx, crypto, { name: `Matrix ${tenant.slug}`, phones: [{ kind: 'mobile', number: '+4790000010' }] }, { defaultRegion: 'NO' })).id;
        into.listId = (await trx.insertInto('contact_lists').values({ name: 'Matrix list', default_region: 'NO' }).returning('id').executeTakeFirstOrThrow()).id;
        into.importId = await createImport(trx, { listId: into.listId, mapping: { Navn: 'name' }, onExisting: 'link', onSuppressed: 'skip' }, 'matrix');
        into.suppressionId = await addSuppression(trx, crypto, { channel: 'phone', value: '+4790000011', scope: 'tenant', reason: 'request', source: 'matrix', createdBy: 'matrix' });
        into.campaignId = (await trx.insertInto('campaigns').values({ name: 'Matrix campaign' }).returning('id').executeTakeFirstOrThrow()).id;
        into.attemptId = randomUUID();
        await trx.insertInto('dial_attempts').values({ id: into.attemptId, campaign_id: into.campaignId, contact_id: into.contactId, attempt: 1, dialer: 'matrix', state: 'ended', outcome: 'busy' }).execute();
        into.requestId = (await createRequest(trx, crypto, { kind: 'access', channel: 'email', requester: { name: 'Matrix requester' }, identifiers: { phone: '+4790000010' }, receivedAt: new Date() }, 'matrix')).id;
        into.holdId = (await trx.insertInto('legal_holds').values({ scope: 'campaign', campaign_id: into.campaignId, reason: 'matrix', created_by: 'matrix' }).returning('id').executeTakeFirstOrThrow()).id;
        into.sweepId = (await trx.insertInto('retention_sweeps').values({ dry_run: true, node: 'matrix', requested_by: 'matrix' }).returning('id').executeTakeFirstOrThrow()).id;
        await trx.updateTable('retention_sweeps').set({ state: 'done', finished_at: new Date() }).where('id', '=', into.sweepId).execute();
        into.processorId = (await trx.insertInto('processors').values({ name: 'Matrix carrier', service: 'telephony', location: 'EU' }).returning('id').executeTakeFirstOrThrow()).id;
        into.breachId = (await trx.insertInto('breaches').values({ reference: 'BR-2026-001', title: 'Matrix', description: 'Matrix breach', detected_at: new Date(), aware_at: new Date(), created_by: 'matrix' }).returning('id').executeTakeFirstOrThrow()).id;
        into.alertId = (await trx.insertInto('security_alerts').values({ rule_id: 'privilege.mfa_removed', severity: 'high', subject: 'user:matrix', summary: 'Matrix', first_seen: new Date(), last_seen: new Date() }).returning('id').executeTakeFirstOrThrow()).id;
        into.webhookId = (await trx.insertInto('alert_webhooks').values({ url: 'https://siem.example/hook', secret_ciphertext: Buffer.alloc(40, 5), created_by: 'matrix' }).returning('id').executeTakeFirstOrThrow()).id;
        into.incidentId = (await trx.insertInto('incidents').values({ reference: 'INC-2026-001', title: 'Matrix', severity: 'low', detected_at: new Date(Date.now() - 1000), opened_by: 'matrix' }).returning('id').executeTakeFirstOrThrow()).id;
        into.blockId = (await trx.insertInto('blocked_networks').values({ network: '192.0.2.0/24', reason: 'matrix', created_by: 'matrix' }).returning('id').executeTakeFirstOrThrow()).id;
        into.shiftId = (await trx.insertInto('security_on_call').values({ user_id: tenant.owner.id, starts_at: new Date(Date.now() + 86_400_000), ends_at: new Date(Date.now() + 2 * 86_400_000), created_by: 'matrix' }).returning('id').executeTakeFirstOrThrow()).id;
        // A compliance document (the acknowledgement route's :documentId names no security document with it: 404 there too).
        into.documentId = (await trx.insertInto('compliance_documents').values({ kind: 'certification', title: 'Matrix ISO 27001', issuer: 'Matrix CB', url: 'https://cert.example/matrix', evidence_date: '2026-01-01', expires_on: '2029-01-01', added_by: 'matrix' }).returning('id').executeTakeFirstOrThrow()).id;
        into.runId = (await trx.insertInto('compliance_runs').values({ started_at: new Date(), finished_at: new Date(), trigger: 'request', catalogue_version: 't', measured_by: 'matrix', digest: Buffer.alloc(32, 1), passed: 0, failed: 0 }).returning('id').executeTakeFirstOrThrow()).id;
        into.reviewId = (await trx.insertInto('access_reviews').values({ title: 'Matrix review', due_at: new Date(Date.now() + 86_400_000), created_by: 'matrix' }).returning('id').executeTakeFirstOrThrow()).id;
        into.queueId = (await trx.insertInto('queues').values({ name: 'Matrix queue', number: tenant.slug === 'matrix-a' ? '+4722000011' : '+4722000012' }).returning('id').executeTakeFirstOrThrow()).id;
      });
      // Not an object: a registry format names the same registry slot in every tenant.
      into.format = 'e164_list';
      into.category = 'recordings';
      into.ruleId = 'suppression.shrink';
      into.checkId = 'identity.mfa_privileged';
      // The web application's assets are public files; a name that is not one answers 404.
      into.name = 'no-such-asset.js';
    };
    await objects(a, own);
    await objects(b, other);
    own.tenant = a.slug;
    other.tenant = b.slug;
    app = await buildTestApp(db);
  });
  afterAll(async () => {
    await app?.close();
    await db?.drop();
  });

  /** Bodies that pass validation where a route's answer to another tenant's object is the point. */
  const bodies: Record<string, unknown> = {
    'PATCH /api/v1/users/:userId': { displayName: 'Renamed' },
    'PUT /api/v1/roles/:roleId': { name: 'matrix-role', permissions: ['tenant:read'] },
    'PATCH /api/v1/contacts/:contactId': { notes: 'Matrix note' },
    'PUT /api/v1/contacts/:contactId/status': { status: 'do_not_contact' },
    'POST /api/v1/contacts/:contactId/reveal': { fields: ['phones'], reason: 'matrix check' },
    'POST /api/v1/contacts/:contactId/consents': { purpose: 'survey', action: 'withdraw', source: 'matrix' },
    'PATCH /api/v1/lists/:listId': { name: 'Matrix renamed' },
    'POST /api/v1/lists/:listId/members': { add: [], remove: [] },
    'PATCH /api/v1/campaigns/:campaignId': { script: 'Matrix script' },
    'POST /api/v1/agent/calls/:attemptId/disposition': { code: 'sale' },
    'PUT /api/v1/agent/state': { state: 'offline' },
    'POST /api/v1/agent/calls/:attemptId/recording': { action: 'pause' },
    'PUT /api/v1/agents/:userId/skills': { skills: ['norwegian'], takesInbound: true },
    'POST /api/v1/privacy/requests/:requestId/verify': { method: 'document' },
    'PUT /api/v1/privacy/retention-policies/:category': { retainDays: 30, action: 'delete' },
    'PUT /api/v1/security/detection-rules/:ruleId': { enabled: true, threshold: 30, windowSeconds: 3600, severity: 'high' },
    'PUT /api/v1/privacy/processors/:processorId': { name: 'Matrix carrier', service: 'telephony', location: 'EU' },
    'PATCH /api/v1/privacy/breaches/:breachId': { title: 'Matrix renamed' },
    'POST /api/v1/privacy/breaches/:breachId/decisions': { authority: { decision: 'notify', reason: 'Matrix: a reason long enough' } },
    'POST /api/v1/privacy/breaches/:breachId/notified': { to: 'authority', at: new Date().toISOString() },
    'POST /api/v1/privacy/breaches/:breachId/timeline': { entry: 'Matrix entry' },
    'POST /api/v1/privacy/requests/:requestId/extend': { months: 1, reason: 'Matrix: many systems to search' },
    'POST /api/v1/privacy/requests/:requestId/assign': { officerId: '00000000-0000-4000-8000-000000000000' },
    'POST /api/v1/privacy/requests/:requestId/close': { status: 'rejected', outcome: 'Matrix' },
    'PATCH /api/v1/security/incidents/:incidentId': { severity: 'high' },
    'POST /api/v1/security/incidents/:incidentId/notes': { entry: 'Matrix note' },
    'POST /api/v1/security/incidents/:incidentId/alerts': { alertIds: ['00000000-0000-4000-8000-000000000000'] },
    'POST /api/v1/security/incidents/:incidentId/audit-events': { eventIds: ['1'] },
    'POST /api/v1/security/incidents/:incidentId/containment': { action: 'block_network', network: '203.0.113.0/24', reason: 'Matrix block' },
    'POST /api/v1/security/incidents/:incidentId/contain': { entry: 'Matrix contained' },
    'POST /api/v1/security/incidents/:incidentId/resolve': { resolution: 'Matrix resolved' },
    'POST /api/v1/security/incidents/:incidentId/breach': {},
    'POST /api/v1/me/security-documents/:documentId/acknowledge': { sha256: '0'.repeat(64) },
    'POST /api/v1/access-reviews/:reviewId/users/:userId': { decision: 'keep' },
    'POST /api/v1/compliance/documents/:documentId/share': { shared: true },
  };
  /** Parameters that name no object of a tenant (the same value means the same thing in each). */
  const notObjects = new Set(['format', 'category', 'ruleId', 'checkId']);

  const routes = (): RouteEntry[] => app.routeTable.filter((route) => route.method !== 'HEAD' && !route.url.startsWith('/api/docs'));
  const fill = (url: string, values: Record<string, string>) =>
    url.replace(/:([A-Za-z]+)/g, (_match, name: string) => {
      const value = values[name];
      if (value === undefined) throw new Error(`the matrix cannot fill :${name} in ${url}: add an object for it`);
      return value;
    });

  const call = async (route: RouteEntry, url: string, cookie: string | undefined, csrf: string | undefined) => {
    const body = bodies[`${route.method} ${route.url}`];
    const response = await app.inject({
      method: route.method as 'GET',
      url,
      ...(cookie ? { cookies: { '__Host-rv_session': cookie } } : {}),
      headers: route.method === 'GET' ? {} : { origin: PUBLIC_URL, ...(csrf ? { 'x-csrf-token': csrf } : {}) },
      ...(body !== undefined ? { payload: body as Record<string, unknown> } : {}),
    });
    return response.statusCode;
  };

  it('refuses every non-public route without a session', async () => {
    let checked = 0;
    for (const route of routes()) {
      const status = await call(route, fill(route.url, own), undefined, undefined);
      if (route.access === 'public') expect(status, `${route.method} ${route.url}`).not.toBe(401);
      else expect(status, `${route.method} ${route.url}`).toBe(401);
      checked += 1;
    }
    expect(checked).toBeGreaterThan(30);
  });

  it('gives each role exactly what its permissions say, in its own tenant', async () => {
    const failures: string[] = [];
    for (const route of routes().filter((entry) => entry.access !== 'public')) {
      for (const role of builtInRoleNames) {
        // A fresh session per call: some routes end or rotate the session they are called with.
        const session = await sessionFor(db.handles, a.tenantId, users[role]!);
        own.sessionId = (await db.handles.forTenant(a.tenantId).read((trx) => trx.selectFrom('sessions').select('id').where('user_id', '=', users[role]!).orderBy('created_at', 'desc').executeTakeFirstOrThrow())).id;
        const status = await call(route, fill(route.url, own), session.cookies['__Host-rv_session'], session.csrf);
        const permitted = route.access === 'authenticated' || route.access === 'login' || (builtInRoles[role] as readonly string[]).includes(route.access);
        const label = `${role} ${route.method} ${route.url} → ${status}`;
        if (permitted && (status === 401 || status === 403)) failures.push(`${label} (should be allowed)`);
        if (!permitted && status !== 403) failures.push(`${label} (should be 403)`);
      }
    }
    expect(failures).toEqual([]);
  });

  it("answers another tenant's objects with 404, to every role that could reach its own", async () => {
    const failures: string[] = [];
    let checked = 0;
    const namesObject = (url: string) => [...url.matchAll(/:([A-Za-z]+)/g)].some((match) => !notObjects.has(match[1] ?? ''));
    for (const route of routes().filter((entry) => entry.access !== 'public' && namesObject(entry.url))) {
      for (const role of builtInRoleNames) {
        const permitted = route.access === 'authenticated' || route.access === 'login' || (builtInRoles[role] as readonly string[]).includes(route.access);
        if (!permitted) continue;
        const session = await sessionFor(db.handles, a.tenantId, users[role]!);
        const status = await call(route, fill(route.url, other), session.cookies['__Host-rv_session'], session.csrf);
        if (status !== 404) failures.push(`${role} ${route.method} ${route.url} → ${status}`);
        checked += 1;
      }
    }
    expect(failures).toEqual([]);
    expect(checked).toBeGreaterThan(10);
    // And nothing of the other tenant changed.
    const renamed = await db.superQuery(`SELECT count(*)::int AS n FROM ringvakt.users WHERE tenant_id = $1 AND status <> 'active'`, [b.tenantId]);
    expect(renamed.rows[0]!.n).toBe(0);
  });
});
