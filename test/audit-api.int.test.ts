import { createPublicKey } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { recordAuditEvent } from '../src/audit/audit-event.ts';
import type { ExportedAuditEvent } from '../src/audit/audit-reader.ts';
import { rootFromInclusionProof, verifyConsistency } from '../src/audit/merkle.ts';
import { sealTenantLedger } from '../src/audit/seal-audit-log.ts';
import { pruneAuditLedger } from '../src/audit/retention.ts';
import { loadSigningKey, verifyTreeHead, type SigningKey } from '../src/audit/signing-key.ts';
import { createLocalKeyProvider } from '../src/crypto/root-keys/local-key-provider.ts';
import type { App } from '../src/server/types.ts';
import { bearer, buildTestApp } from './support/app.ts';
import { createTestDatabase, serverLabel, type TestDatabase } from './support/database.ts';
import { seedTenant, type SeededTenant } from './support/seed.ts';

describe(`the audit API for auditors (${serverLabel()} server)`, () => {
  let db: TestDatabase;
  let app: App;
  let key: SigningKey;
  let tenant: SeededTenant;
  let other: SeededTenant;
  const folder = mkdtempSync(path.join(os.tmpdir(), 'rv-audit-api-'));

  beforeAll(async () => {
    db = await createTestDatabase({ ownerAccess: true });
    key = await loadSigningKey(db.handles.systemDb, createLocalKeyProvider(path.join(folder, 'root-keys.json')));
    tenant = await seedTenant(db.handles, 'audited');
    other = await seedTenant(db.handles, 'audited-other');
    app = await buildTestApp(db);
  });
  afterAll(async () => {
    await app?.close();
    await db?.drop();
    rmSync(folder, { recursive: true, force: true });
  });

  const append = (who: SeededTenant, count: number) =>
    db.handles.forTenant(who.tenantId).transaction(async (trx) => {
      for (let index = 0; index < count; index += 1) {
        await recordAuditEvent(trx, { action: 'user.create', outcome: 'success', actor: { type: 'system' }, target: { type: 'user', id: `u-${index}` }, details: { index } });
      }
    });
  const seal = (who: SeededTenant) => db.handles.forTenant(who.tenantId).transaction((trx) => sealTenantLedger(trx, key));
  const get = (url: string, token = tenant.owner.token) => app.inject({ url, headers: bearer(token) });
  const lines = (body: string) =>
    body
      .split('\n')
      .filter((line) => line !== '')
      .map((line) => JSON.parse(line) as ExportedAuditEvent);

  it('streams every sealed event as JSON lines, gapless in leaf order across pages, resumable, and audits the export', async () => {
    await append(tenant, 4_500);
    await append(other, 3);
    await seal(tenant);
    await seal(other);
    const response = await get('/api/v1/audit/events');
    expect(response.statusCode).toBe(200);
    expect(response.headers['content-type']).toBe('application/x-ndjson; charset=utf-8');
    const events = lines(response.body);
    // Setup recorded four events (tenant, owner, agent, tokens); every one of this tenant only.
    expect(events.length).toBeGreaterThanOrEqual(4_500);
    expect(events.map((event) => event.leafIndex)).toEqual(events.map((_, index) => index));
    expect(events.filter((event) => event.action === 'user.create' && event.details.index === 4_499)).toHaveLength(1);

    const resumed = lines((await get(`/api/v1/audit/events?afterLeaf=${events.length - 3}`)).body);
    expect(resumed.map((event) => event.leafIndex)).toEqual([events.length - 2, events.length - 1]);
    const future = new Date(Date.now() + 60_000).toISOString();
    expect(lines((await get(`/api/v1/audit/events?since=${encodeURIComponent(future)}`)).body)).toEqual([]);

    // The other tenant's auditor sees only its own ledger.
    const theirs = lines((await get('/api/v1/audit/events', other.owner.token)).body);
    expect(theirs.length).toBeLessThan(20);
    expect(theirs.every((event) => !events.some((mine) => mine.id === event.id))).toBe(true);

    // Each export left an audit event naming who exported what.
    const exports = await db.superQuery<{ actor_id: string; details: Record<string, unknown> }>(
      `SELECT actor_id, details FROM ringvakt.audit_events WHERE tenant_id = $1 AND action = 'audit.export' ORDER BY id`,
      [tenant.tenantId],
    );
    expect(exports.rows.map((row) => row.details.afterLeaf)).toEqual([null, events.length - 3, null]);
    expect(exports.rows.every((row) => row.details.user === tenant.owner.id && row.details.channel === 'api')).toBe(true);
  });

  it('serves the signed tree head and proofs that check out against it, offline', async () => {
    const before = (await get('/api/v1/audit/checkpoint')).json() as { treeSize: number; rootHash: string };
    await append(tenant, 5);
    await seal(tenant);
    const response = await get('/api/v1/audit/checkpoint');
    expect(response.statusCode).toBe(200);
    const head = response.json() as { treeSize: number; rootHash: string; signedAt: string; publicKey: string; signature: string };
    expect(head.treeSize).toBeGreaterThan(before.treeSize);
    const publicKey = createPublicKey({ key: Buffer.from(head.publicKey, 'base64'), format: 'der', type: 'spki' });
    const treeHead = { tenantId: tenant.tenantId, treeSize: head.treeSize, rootHash: Buffer.from(head.rootHash, 'hex'), signedAt: new Date(head.signedAt) };
    expect(verifyTreeHead(publicKey, treeHead, Buffer.from(head.signature, 'base64'))).toBe(true);

    const events = lines((await get(`/api/v1/audit/events?afterLeaf=${head.treeSize - 3}`)).body);
    const event = events[0]!;
    const inclusion = (await get(`/api/v1/audit/proofs/inclusion?leaf=${event.leafIndex}`)).json() as { leafHash: string; proof: string[]; treeSize: number };
    expect(inclusion.leafHash).toBe(event.leafHash);
    const root = rootFromInclusionProof(event.leafIndex, inclusion.treeSize, Buffer.from(event.leafHash, 'hex'), inclusion.proof.map((hash) => Buffer.from(hash, 'hex')));
    expect(root.toString('hex')).toBe(head.rootHash);

    const consistency = (await get(`/api/v1/audit/proofs/consistency?from=${before.treeSize}&to=${head.treeSize}`)).json() as { proof: string[] };
    const proof = consistency.proof.map((hash) => Buffer.from(hash, 'hex'));
    expect(verifyConsistency(before.treeSize, head.treeSize, Buffer.from(before.rootHash, 'hex'), Buffer.from(head.rootHash, 'hex'), proof)).toBe(true);
    expect(verifyConsistency(before.treeSize, head.treeSize, Buffer.alloc(32), Buffer.from(head.rootHash, 'hex'), proof)).toBe(false);
  });

  it('answers forged or impossible proof requests with a clear 400, and keeps the ledger from agents', async () => {
    const head = (await get('/api/v1/audit/checkpoint')).json() as { treeSize: number };
    const cases: [string, string][] = [
      [`/api/v1/audit/proofs/inclusion?leaf=${head.treeSize}`, 'proof_out_of_range'],
      [`/api/v1/audit/proofs/inclusion?leaf=1&size=${head.treeSize + 1000}`, 'proof_out_of_range'],
      [`/api/v1/audit/proofs/inclusion?leaf=5&size=5`, 'proof_out_of_range'],
      [`/api/v1/audit/proofs/consistency?from=0&to=3`, 'proof_out_of_range'],
      [`/api/v1/audit/proofs/consistency?from=9&to=3`, 'proof_out_of_range'],
      [`/api/v1/audit/proofs/consistency?from=1&to=${head.treeSize + 1}`, 'proof_out_of_range'],
      [`/api/v1/audit/proofs/inclusion?leaf=-1`, 'validation_failed'],
      [`/api/v1/audit/proofs/inclusion?leaf=1.5`, 'validation_failed'],
      [`/api/v1/audit/proofs/inclusion?leaf=99999999999999999999`, 'validation_failed'],
      [`/api/v1/audit/proofs/inclusion`, 'validation_failed'],
      [`/api/v1/audit/events?since=yesterday`, 'validation_failed'],
      [`/api/v1/audit/events?afterLeaf=1&extra=1`, 'validation_failed'],
      [`/api/v1/audit/events?afterLeaf=`, 'validation_failed'],
      [`/api/v1/audit/proofs/inclusion?leaf=1e3`, 'validation_failed'],
      [`/api/v1/audit/proofs/inclusion?leaf=0x10`, 'validation_failed'],
    ];
    for (const [url, code] of cases) {
      const response = await get(url);
      expect({ url, status: response.statusCode, code: response.json().code }).toEqual({ url, status: 400, code });
      expect(response.headers['content-type']).toContain('application/problem+json');
    }
    for (const url of ['/api/v1/audit/events', '/api/v1/audit/checkpoint', '/api/v1/audit/proofs/inclusion?leaf=0']) {
      expect((await get(url, tenant.agent.token)).statusCode).toBe(403);
    }
    expect((await app.inject({ url: '/api/v1/audit/events' })).statusCode).toBe(401);
  });

  it('refuses to resume an export from before a retention cut, instead of silently skipping', async () => {
    const pruned = await seedTenant(db.handles, 'audited-pruned');
    await db.handles.forTenant(pruned.tenantId).transaction(async (trx) => {
      for (let index = 0; index < 6; index += 1) {
        await recordAuditEvent(trx, { action: 'user.create', outcome: 'success', actor: { type: 'system' }, occurredAt: new Date(Date.now() - 86_400_000), details: { index } });
      }
    });
    await seal(pruned);
    const outcome = await pruneAuditLedger(db.handles, key, { tenantId: pruned.tenantId, cutoff: new Date(), reason: 'policy', executedBy: 'ops' });
    await seal(pruned);
    const cut = outcome.prunedBeforeLeaf!;
    const stale = await get('/api/v1/audit/events?afterLeaf=2', pruned.owner.token);
    expect(stale.statusCode).toBe(409);
    expect(stale.json()).toMatchObject({ code: 'conflict', detail: `Events before leaf ${cut} were removed under the retention procedure; resume from afterLeaf=${cut - 1}.` });
    const resumed = lines((await get(`/api/v1/audit/events?afterLeaf=${cut - 1}`, pruned.owner.token)).body);
    expect(resumed.map((event) => event.action)).toEqual(['audit.retention']);
  });
});
