import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { recordAuditEvent } from '../src/audit/audit-event.ts';
import { proveInclusion } from '../src/audit/audit-reader.ts';
import { rootFromInclusionProof } from '../src/audit/merkle.ts';
import { pruneAuditLedger } from '../src/audit/retention.ts';
import { fileWitness } from '../src/audit/checkpoint-publishers.ts';
import { checkWitnessedRetentions, readWitness, readWitnessRetentions, type WitnessedCheckpoint } from '../src/audit/witness.ts';
import { createLogger } from '../src/logger.ts';
import { sealTenantLedger } from '../src/audit/seal-audit-log.ts';
import { loadSigningKey, publicKeys, type SigningKey } from '../src/audit/signing-key.ts';
import { verifyTenantLedger } from '../src/audit/verify-audit-log.ts';
import { createLocalKeyProvider } from '../src/crypto/root-keys/local-key-provider.ts';
import { createTestDatabase, serverLabel, type TestDatabase } from './support/database.ts';
import { seedTenant, type SeededTenant } from './support/seed.ts';

describe(`audit retention under a signed record (${serverLabel()} server)`, () => {
  let db: TestDatabase;
  let key: SigningKey;
  const folder = mkdtempSync(path.join(os.tmpdir(), 'rv-retention-'));

  beforeAll(async () => {
    db = await createTestDatabase({ ownerAccess: true });
    key = await loadSigningKey(db.handles.systemDb, createLocalKeyProvider(path.join(folder, 'root-keys.json')));
  });
  afterAll(async () => {
    await db?.drop();
    rmSync(folder, { recursive: true, force: true });
  });

  const append = (tenant: SeededTenant, count: number, occurredAt: Date) =>
    db.handles.forTenant(tenant.tenantId).transaction(async (trx) => {
      for (let index = 0; index < count; index += 1) {
        await recordAuditEvent(trx, { action: 'user.create', outcome: 'success', actor: { type: 'system' }, occurredAt, details: { index } });
      }
    });
  const seal = (tenant: SeededTenant) => db.handles.forTenant(tenant.tenantId).transaction((trx) => sealTenantLedger(trx, key));
  const verify = async (tenant: SeededTenant) => {
    const keys = await publicKeys(db.handles.systemDb);
    return db.handles.forTenant(tenant.tenantId).snapshot((trx) => verifyTenantLedger(trx, keys));
  };
  const eventCount = async (tenant: SeededTenant) =>
    Number((await db.superQuery<{ n: string }>('SELECT count(*) AS n FROM ringvakt.audit_events WHERE tenant_id = $1', [tenant.tenantId])).rows[0]!.n);

  it('removes old events up to a signed checkpoint, keeps every proof working, and leaves a verifiable signed record', async () => {
    const tenant = await seedTenant(db.handles, 'retained');
    const old = new Date(Date.now() - 400 * 86_400_000);
    await seal(tenant); // setup's events: a first checkpoint
    await append(tenant, 20, old);
    const first = (await seal(tenant))!.treeSize;
    const cutoff = new Date();
    await append(tenant, 5, new Date(cutoff.getTime() + 1_000));
    const second = (await seal(tenant))!.treeSize;
    const before = await eventCount(tenant);

    const witnessFile = path.join(folder, 'witness-retained.jsonl');
    const publishers = [fileWitness(witnessFile, createLogger('silent'))];
    const outcome = await pruneAuditLedger(db.handles, key, { tenantId: tenant.tenantId, cutoff, reason: 'Retention policy RP-7: 12 months', executedBy: 'ops-on-call', publishers });
    // Stops at the newest checkpoint whose events all came before the cut-off.
    expect(outcome).toEqual({ removed: first, prunedBeforeLeaf: first });
    expect(await eventCount(tenant)).toBe(before - first + 1); // +1: the audit.retention event itself
    const record = await db.superQuery('SELECT reason, executed_by, pruned_before_leaf FROM ringvakt.audit_retention_records WHERE tenant_id = $1', [tenant.tenantId]);
    expect(record.rows).toEqual([{ reason: 'Retention policy RP-7: 12 months', executed_by: 'ops-on-call', pruned_before_leaf: String(first) }]);

    // Sealing goes on after the cut; the prune is in the ledger; everything verifies.
    expect(await seal(tenant)).toEqual({ sealed: 1, treeSize: second + 1 });
    expect(await verify(tenant)).toEqual({ ok: true, events: second + 1 - first, sealed: second + 1, checkpoints: 4, pruned: first });
    // The witness learnt of the removal, signed; verify can insist that every removal reached it.
    const witnessed = readWitnessRetentions(witnessFile);
    expect(witnessed).toMatchObject([{ type: 'retention', tenantId: tenant.tenantId, prunedBeforeLeaf: first, reason: 'Retention policy RP-7: 12 months', executedBy: 'ops-on-call' }]);
    expect(checkWitnessedRetentions(witnessed)).toBeUndefined();
    expect(checkWitnessedRetentions([{ ...witnessed[0]!, reason: 'nothing to see' }])).toBe(`the witness's retention record up to leaf ${first} has an invalid signature`);
    const keys = await publicKeys(db.handles.systemDb);
    const withWitness = (entries: typeof witnessed) =>
      db.handles.forTenant(tenant.tenantId).snapshot((trx) => verifyTenantLedger(trx, keys, [], { witnessedRetentions: entries }));
    expect(await withWitness(witnessed)).toMatchObject({ ok: true, pruned: first });
    expect(await withWitness([])).toEqual({ ok: false, problem: `the retention record up to leaf ${first} never reached the witness` });
    const retentionEvent = await db.superQuery<{ leaf_index: string; details: Record<string, unknown> }>(
      `SELECT leaf_index, details FROM ringvakt.audit_events WHERE tenant_id = $1 AND action = 'audit.retention'`,
      [tenant.tenantId],
    );
    expect(retentionEvent.rows).toEqual([{ leaf_index: String(second), details: { prunedBeforeLeaf: first, cutoff: cutoff.toISOString(), removed: first } }]);

    // A removed event's inclusion proof still checks out against the newest signed head.
    const head = await db.superQuery<{ root_hash: Buffer }>('SELECT root_hash FROM ringvakt.audit_checkpoints WHERE tenant_id = $1 ORDER BY tree_size DESC LIMIT 1', [tenant.tenantId]);
    const proof = await db.handles.forTenant(tenant.tenantId).read((trx) => proveInclusion(trx, 3));
    const root = rootFromInclusionProof(3, proof.treeSize, Buffer.from(proof.leafHash, 'hex'), proof.proof.map((hash) => Buffer.from(hash, 'hex')));
    expect(root.equals(head.rows[0]!.root_hash)).toBe(true);

    // Nothing left to remove under the same cut-off.
    expect(await pruneAuditLedger(db.handles, key, { tenantId: tenant.tenantId, cutoff, reason: 'again', executedBy: 'ops' })).toEqual({ removed: 0, prunedBeforeLeaf: undefined });
  });

  it('detects an altered retention record or kept leaf hash, and refuses removal outside the procedure', async () => {
    const tenant = await seedTenant(db.handles, 'retained-guard');
    await append(tenant, 6, new Date(Date.now() - 86_400_000));
    await seal(tenant);
    const cutoff = new Date();
    await pruneAuditLedger(db.handles, key, { tenantId: tenant.tenantId, cutoff, reason: 'policy', executedBy: 'ops' });
    await seal(tenant);
    expect(await verify(tenant)).toMatchObject({ ok: true });
    const asSuperuser = (statement: string) =>
      db.superQuery(`SET session_replication_role = replica; ${statement}; SET session_replication_role = origin;`);

    await asSuperuser(`UPDATE ringvakt.audit_retention_records SET reason = 'nothing to see' WHERE tenant_id = '${tenant.tenantId}'`);
    expect(await verify(tenant)).toEqual({ ok: false, problem: 'the retention record up to leaf 8 has no valid signature by a known audit signing key' });
    await asSuperuser(`UPDATE ringvakt.audit_retention_records SET reason = 'policy' WHERE tenant_id = '${tenant.tenantId}'`);
    expect(await verify(tenant)).toMatchObject({ ok: true });

    await asSuperuser(`UPDATE ringvakt.audit_tree_nodes SET hash = '\\x${'ab'.repeat(32)}' WHERE tenant_id = '${tenant.tenantId}' AND level = 0 AND index = 4`);
    expect(await verify(tenant)).toMatchObject({ ok: false, problem: expect.stringMatching(/does not match the leaves below it|do not add up to the root signed/) });
    await asSuperuser(`DELETE FROM ringvakt.audit_tree_nodes WHERE tenant_id = '${tenant.tenantId}' AND level = 0 AND index = 4`);
    expect(await verify(tenant)).toEqual({ ok: false, problem: 'the kept hash of removed leaf 4 is missing' });

    // The runtime role may not run the procedure, and cannot delete events at all.
    const runtime = await db.runtimeClient();
    try {
      await expect(runtime.query(`SELECT ringvakt.audit_apply_retention($1, 1, $2, now(), 'x', now(), 'x', 'x', $2)`, [tenant.tenantId, Buffer.alloc(32)])).rejects.toThrow(/permission denied/);
      await runtime.query(`SELECT set_config('app.tenant_id', $1, false)`, [tenant.tenantId]);
      await expect(runtime.query('DELETE FROM ringvakt.audit_events')).rejects.toThrow(/permission denied/);
    } finally {
      await runtime.end();
    }
    // The owner cannot delete directly either, not even naming an existing record of another transaction.
    const recordId = (await db.superQuery<{ id: string }>('SELECT id FROM ringvakt.audit_retention_records WHERE tenant_id = $1', [tenant.tenantId])).rows[0]!.id;
    await expect(
      db.handles.asOwner(async (owner) => {
        await owner.query(`SELECT set_config('app.tenant_id', $1, true), set_config('ringvakt.audit_retention', $2, true)`, [tenant.tenantId, recordId]);
        await owner.query('DELETE FROM audit_events WHERE leaf_index IS NOT NULL');
      }),
    ).rejects.toThrow(/append-only/);
    // Nor by writing a record of its own in the same transaction: the event's leaf hash is not kept.
    await expect(
      db.handles.asOwner(async (owner) => {
        await owner.query(`SELECT set_config('app.tenant_id', $1, true)`, [tenant.tenantId]);
        const own = await owner.query<{ id: string }>(
          `INSERT INTO audit_retention_records (pruned_before_leaf, root_hash, cutoff, reason, executed_at, executed_by, signing_key_id, signature)
           VALUES (1000, $1, now(), 'x', now(), 'x', 'x', $2) RETURNING id`,
          [Buffer.alloc(32), Buffer.alloc(64)],
        );
        await owner.query(`SELECT set_config('ringvakt.audit_retention', $1, true)`, [own.rows[0]!.id]);
        await owner.query('DELETE FROM audit_events WHERE leaf_index IS NOT NULL');
      }),
    ).rejects.toThrow(/append-only/);
    // The procedure refuses a cut that is not a signed checkpoint, or that covers events after the cut-off.
    const newest = (await db.superQuery<{ tree_size: string; root_hash: Buffer }>('SELECT tree_size, root_hash FROM ringvakt.audit_checkpoints WHERE tenant_id = $1 ORDER BY tree_size DESC LIMIT 1', [tenant.tenantId])).rows[0]!;
    const apply = (size: number, root: Buffer, cutoffAt: Date) =>
      db.handles.asOwner((owner) =>
        owner.query(`SELECT audit_apply_retention($1, $2, $3, $4, 'x', now(), 'ops', 'k', $5)`, [tenant.tenantId, size, root, cutoffAt, Buffer.alloc(64)]),
      );
    await expect(apply(Number(newest.tree_size) - 1, newest.root_hash, new Date())).rejects.toThrow(/must stop at a signed checkpoint/);
    await expect(apply(Number(newest.tree_size), newest.root_hash, cutoff)).rejects.toThrow(/occurred at or after the cut-off/);
    expect(await eventCount(tenant)).toBe(1);
  });

  it('with an outside witness, refuses a retention record signed by a key planted in the database', async () => {
    const tenant = await seedTenant(db.handles, 'retained-forged');
    const witnessFile = path.join(folder, 'witness-forged.jsonl');
    await append(tenant, 5, new Date(Date.now() - 86_400_000));
    await db.handles.forTenant(tenant.tenantId).transaction((trx) => sealTenantLedger(trx, key, { publishers: [fileWitness(witnessFile, createLogger('silent'))] }));
    // Someone with the owner's rights plants a signing key and prunes with it, outside the CLI.
    const forger = generateKeyPairSync('ed25519');
    const planted: SigningKey = { keyId: 'planted', publicKey: forger.publicKey, privateKey: forger.privateKey };
    await db.handles.systemDb.saveAuditSigningKey({
      keyId: 'planted',
      publicKey: forger.publicKey.export({ format: 'der', type: 'spki' }),
      rootKeyId: 'none',
      wrappedPrivateKey: Buffer.alloc(1),
    });
    expect(await pruneAuditLedger(db.handles, planted, { tenantId: tenant.tenantId, cutoff: new Date(), reason: 'cover-up', executedBy: 'intruder' })).toMatchObject({ removed: 7 });
    const keys = await publicKeys(db.handles.systemDb);
    const inSnapshot = (witness: WitnessedCheckpoint[]) => db.handles.forTenant(tenant.tenantId).snapshot((trx) => verifyTenantLedger(trx, keys, witness));
    // Verify alone trusts every key in the database (it has nothing else); the witness does not.
    expect(await inSnapshot([])).toMatchObject({ ok: true });
    expect(await inSnapshot(readWitness(witnessFile))).toEqual({
      ok: false,
      problem: 'the retention record up to leaf 7 is signed by a key the witness never saw: events may have been removed outside the retention procedure',
    });
  });
});
