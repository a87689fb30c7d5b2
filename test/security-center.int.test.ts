import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { recordAuditEvent } from '../src/audit/audit-event.ts';
import { sealTenantLedger } from '../src/audit/seal-audit-log.ts';
import { loadSigningKey, type SigningKey } from '../src/audit/signing-key.ts';
import { createLocalKeyProvider } from '../src/crypto/root-keys/local-key-provider.ts';
import type { App } from '../src/server/types.ts';
import { bearer, buildTestApp, PUBLIC_URL } from './support/app.ts';
import { createTestDatabase, serverLabel, type TestDatabase } from './support/database.ts';
import { seedTenant, type SeededTenant } from './support/seed.ts';
import { registerPersonalData } from './support/canary.ts';

/** What the web application's security center and wallboard read: audit search, sign-in failures, ledger verification, the floor. */
describe(`security center and floor API (${serverLabel()} server)`, () => {
  let db: TestDatabase;
  let app: App;
  let key: SigningKey;
  let a: SeededTenant;
  let b: SeededTenant;
  const folder = mkdtempSync(path.join(os.tmpdir(), 'rv-security-center-'));

  beforeAll(async () => {
    db = await createTestDatabase({ ownerAccess: true });
    key = await loadSigningKey(db.handles.systemDb, createLocalKeyProvider(path.join(folder, 'root-keys.json')));
    a = await seedTenant(db.handles, 'center-a');
    b = await seedTenant(db.handles, 'center-b');
    app = await buildTestApp(db);
  });
  afterAll(async () => {
    await app?.close();
    await db?.drop();
    rmSync(folder, { recursive: true, force: true });
  });

  const get = (token: string, url: string) => app.inject({ url, headers: bearer(token) });

  it('searches audit events newest first by action prefix and outcome, a page at a time, in the caller’s tenant only', async () => {
    await db.handles.forTenant(a.tenantId).transaction(async (trx) => {
      for (let index = 0; index < 7; index += 1) {
        await recordAuditEvent(trx, { actor: { type: 'system' }, action: 'auth.login', outcome: index % 2 === 0 ? 'failed' : 'success', details: { index } });
      }
    });
    await db.handles.forTenant(b.tenantId).transaction((trx) => recordAuditEvent(trx, { actor: { type: 'system' }, action: 'auth.login', outcome: 'failed', details: { index: 99 } }));

    const first = await get(a.owner.token, '/api/v1/audit/search?action=auth.&outcome=failed&limit=3');
    expect(first.statusCode, first.body).toBe(200);
    const page1 = first.json() as { items: { action: string; outcome: string; details: { index: number } }[]; next: string | null };
    expect(page1.items.map((item) => item.details.index)).toEqual([6, 4, 2]);
    expect(page1.next).not.toBeNull();
    const second = (await get(a.owner.token, `/api/v1/audit/search?action=auth.&outcome=failed&limit=3&before=${page1.next}`)).json() as typeof page1;
    expect(second.items.map((item) => item.details.index)).toEqual([0]);
    expect(second.next).toBeNull();

    for (const bad of ['action=DROP%20TABLE', 'outcome=maybe', 'limit=0', 'limit=1000', 'before=abc', 'from=yesterday', 'nonsense=1']) {
      const response = await get(a.owner.token, `/api/v1/audit/search?${bad}`);
      expect(response.statusCode, bad).toBe(400);
      expect(response.headers['content-type'], bad).toMatch(/problem\+json/);
    }
    // An agent holds no audit:read.
    expect((await get(a.agent.token, '/api/v1/audit/search')).statusCode).toBe(403);
  });

  it('counts failed sign-ins per hour over the window asked for', async () => {
    const response = await get(a.owner.token, '/api/v1/audit/sign-in-failures?hours=6');
    expect(response.statusCode).toBe(200);
    const { buckets } = response.json() as { buckets: { hour: string; failed: number }[] };
    expect(buckets).toHaveLength(6);
    expect(buckets.reduce((sum, bucket) => sum + bucket.failed, 0)).toBe(4);
    expect(Date.parse(buckets[5]!.hour)).toBeGreaterThan(Date.now() - 3_600_000);
    expect((await get(a.owner.token, '/api/v1/audit/sign-in-failures?hours=500')).statusCode).toBe(400);
  });

  it('verifies the tenant’s ledger on demand, audits that it did, and says when it no longer holds', async () => {
    await db.handles.forTenant(a.tenantId).transaction((trx) => sealTenantLedger(trx, key));
    const verify = () => app.inject({ method: 'POST', url: '/api/v1/audit/verify', headers: { ...bearer(a.owner.token), origin: PUBLIC_URL } });
    const good = await verify();
    expect(good.statusCode, good.body).toBe(200);
    expect(good.json()).toMatchObject({ ok: true, problem: null, checkpoints: 1 });
    expect((good.json() as { sealed: number }).sealed).toBeGreaterThanOrEqual(7);
    const audited = await db.superQuery<{ n: number }>(`SELECT count(*)::int AS n FROM ringvakt.audit_events WHERE action = 'audit.verify' AND tenant_id = $1`, [a.tenantId]);
    expect(audited.rows[0]!.n).toBe(1);

    // Someone with database access rewrites history: the next verification says so.
    // (Past the append-only trigger, as a superuser could.)
    await db.superQuery(`SET session_replication_role = replica; UPDATE ringvakt.audit_events SET action = 'auth.logout' WHERE tenant_id = '${a.tenantId}' AND leaf_index = 0; SET session_replication_role = origin;`);
    const bad = await verify();
    expect(bad.statusCode).toBe(200);
    expect(bad.json()).toMatchObject({ ok: false });
    expect((bad.json() as { problem: string }).problem).toMatch(/leaf 0/);
  });

  it('shows the floor: calls in progress per campaign and each queue, in the caller’s tenant', async () => {
    const response = await get(a.owner.token, '/api/v1/floor');
    expect(response.statusCode).toBe(200);
    expect(response.json()).toMatchObject({ campaigns: [], queues: [] });
    expect((await get(a.agent.token, '/api/v1/floor')).statusCode).toBe(403);
  });

  it('lists users with their second factors (never the factors themselves)', async () => {
    const response = await get(a.owner.token, '/api/v1/users');
    const users = (response.json() as { items: { id: string; mfa: unknown }[] }).items;
    expect(users.find((user) => user.id === a.agent.id)?.mfa).toEqual({ authenticator: false, passkeys: 0 });
    expect(response.body).not.toMatch(/totp|secret|ciphertext/i);
  });

  it('answers the agent’s call in hand, and only the agent’s: another agent’s call cannot be read or hung up', async () => {
    expect((await get(a.agent.token, '/api/v1/agent/call')).json()).toEqual({ call: null });
    const send = (token: string, method: string, url: string, payload?: Record<string, unknown>) =>
      app.inject({ method: method as 'POST', url, headers: { ...bearer(token), origin: PUBLIC_URL }, ...(payload ? { payload } : {}) });
    // The owner (who may take calls too) is on a call with a contact of a campaign.
    const list = (await send(a.owner.token, 'POST', '/api/v1/lists', { name: 'Calls', defaultRegion: 'NO' })).json() as { id: string };
    const contact = (await send(a.owner.token, 'POST', '/api/v1/contacts', { listId: list.id, name: 'Kari Nordmann', phones: [{ kind: 'mobile', number: '+4741000077' }] })).json() as { id: string };
    const campaign = (await send(a.owner.token, 'POST', '/api/v1/campaigns', { name: 'Calls', jurisdiction: 'nordic_eu', script: 'Hello from Acme.' })).json() as { id: string };
    const attemptId = '6f1c1f4e-2a5b-4c1e-9d51-8a4d2b7c9e10';
    await db.superQuery(
      `INSERT INTO ringvakt.dial_attempts (tenant_id, id, campaign_id, contact_id, attempt, state, dialer, agent_id, answered_at) VALUES ($1, $2, $3, $4, 1, 'connected', 'test', $5, now())`,
      [a.tenantId, attemptId, campaign.id, contact.id, a.owner.id],
    );
    await db.superQuery(`INSERT INTO ringvakt.agent_states (tenant_id, user_id, state, attempt_id) VALUES ($1, $2, 'on_call', $3)`, [a.tenantId, a.owner.id, attemptId]);
    registerPersonalData('Kari Nordmann', '+4741000077');

    const mine = (await get(a.owner.token, '/api/v1/agent/call')).json() as { call: { attemptId: string; contact: { name: string; phones: { masked: string }[] }; campaign: { script: string } } };
    expect(mine.call).toMatchObject({ attemptId, contact: { name: 'Kari Nordmann' }, campaign: { script: 'Hello from Acme.' } });
    expect(mine.call.contact.phones[0]!.masked).not.toContain('41000077');
    // The agent sees none of it, and cannot end it: the same 404 as for an id that does not exist.
    expect((await get(a.agent.token, '/api/v1/agent/call')).json()).toEqual({ call: null });
    for (const id of [attemptId, '00000000-0000-4000-8000-000000000000']) {
      const hangup = await send(a.agent.token, 'POST', `/api/v1/agent/calls/${id}/hangup`);
      expect(hangup.statusCode, id).toBe(404);
      expect(hangup.json()).toMatchObject({ code: 'not_found' });
    }
    // Nor can anyone in another tenant.
    expect((await send(b.owner.token, 'POST', `/api/v1/agent/calls/${attemptId}/hangup`)).statusCode).toBe(404);
    // The owner can: accepted, and audited.
    expect((await send(a.owner.token, 'POST', `/api/v1/agent/calls/${attemptId}/hangup`)).statusCode).toBe(202);
    const audited = await db.superQuery<{ n: number }>(`SELECT count(*)::int AS n FROM ringvakt.audit_events WHERE action = 'call.hangup' AND target_id = $1`, [attemptId]);
    expect(audited.rows[0]!.n).toBe(1);
  });
});
