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

  it('answers the agent’s call in hand: none while not on a call; hang-up refuses a call that is not the agent’s', async () => {
    expect((await get(a.agent.token, '/api/v1/agent/call')).json()).toEqual({ call: null });
    const hangup = await app.inject({ method: 'POST', url: `/api/v1/agent/calls/00000000-0000-4000-8000-000000000000/hangup`, headers: { ...bearer(a.agent.token), origin: PUBLIC_URL } });
    expect(hangup.statusCode).toBe(404);
    expect(hangup.json()).toMatchObject({ code: 'not_found' });
  });
});
