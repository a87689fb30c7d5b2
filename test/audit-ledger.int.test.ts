import { generateKeyPairSync, sign } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { recordAuditEvent } from '../src/audit/audit-event.ts';
import { canonicalEvent } from '../src/audit/canonical-event.ts';
import { checkWitnessSignatures, readWitness } from '../src/audit/witness.ts';
import { fileWitness } from '../src/audit/checkpoint-publishers.ts';
import { inclusionProof, leafHash, packedSource, packedSubtrees, rootFromInclusionProof, treeHash } from '../src/audit/merkle.ts';
import { databaseSource, sealTenantLedger, startAuditSealer, withPrefetchedSubtrees } from '../src/audit/seal-audit-log.ts';
import { createLogger } from '../src/logger.ts';
import { checkpointMessage, loadSigningKey, publicKeys, type SigningKey } from '../src/audit/signing-key.ts';
import { verifyTenantLedger } from '../src/audit/verify-audit-log.ts';
import { createLocalKeyProvider } from '../src/crypto/root-keys/local-key-provider.ts';
import type { TenantTransaction } from '../src/db/tenant-db.ts';
import { createTestDatabase, serverLabel, type TestDatabase } from './support/database.ts';
import { seedTenant, type SeededTenant } from './support/seed.ts';

describe(`the tamper-evident audit ledger (${serverLabel()} server)`, () => {
  let db: TestDatabase;
  let key: SigningKey;
  const folder = mkdtempSync(path.join(os.tmpdir(), 'rv-audit-'));

  beforeAll(async () => {
    db = await createTestDatabase();
    const root = createLocalKeyProvider(path.join(folder, 'secrets', 'root-keys.json'));
    const tenant = await seedTenant(db.handles, 'audit-keys');
    key = await loadSigningKey(db.handles.systemDb, root);
    expect(tenant.tenantId).toBeTruthy();
  });
  afterAll(async () => {
    await db?.drop();
    rmSync(folder, { recursive: true, force: true });
  });

  const inTenant = <T>(tenant: SeededTenant, work: (trx: TenantTransaction) => Promise<T>) => db.handles.forTenant(tenant.tenantId).transaction(work);
  const verify = (tenant: SeededTenant) =>
    inTenant(tenant, async (trx) => verifyTenantLedger(trx, await publicKeys(db.handles.systemDb)));

  const append = (tenant: SeededTenant, count: number, from = 0) =>
    inTenant(tenant, async (trx) => {
      for (let index = from; index < from + count; index += 1) {
        await recordAuditEvent(trx, {
          action: 'user.create',
          outcome: index % 7 === 0 ? 'denied' : 'success',
          actor: { type: 'api_token', id: tenant.owner.id },
          // What COPY's text format escapes (tab, newline, carriage return, backslash), quotes and
          // non-ASCII text: the worker threads read events that way.
          target: { type: 'user', id: index % 5 === 0 ? `target\t${index}\\x` : `target-${index}` },
          requestId: `req-${index}-abcdef`,
          sourceIp: index % 2 ? '203.0.113.7' : '2001:db8::1',
          details: { index, role: 'agent', flag: index % 2 === 0, note: index % 3 === 0 ? 'tab\there\nline\r\\ "quoted" Ærøy 😀' : null },
        });
      }
    });

  it('seals events into a signed tree; verify recomputes everything; proofs check out', async () => {
    const tenant = await seedTenant(db.handles, 'audit-happy');
    // Setting up the tenant recorded two events already (tenant.create, user.create).
    await append(tenant, 35);
    expect(await inTenant(tenant, (trx) => sealTenantLedger(trx, key))).toEqual({ sealed: 37, treeSize: 37 });
    await append(tenant, 26, 35);
    expect(await inTenant(tenant, (trx) => sealTenantLedger(trx, key))).toEqual({ sealed: 26, treeSize: 63 });
    expect(await verify(tenant)).toEqual({ ok: true, events: 63, sealed: 63, checkpoints: 2, pruned: 0 });

    const { root, proof, leaf } = await inTenant(tenant, async (trx) => {
      const checkpoint = await trx.selectFrom('audit_checkpoints').selectAll().orderBy('tree_size', 'desc').executeTakeFirstOrThrow();
      const event = await trx.selectFrom('audit_events').select('leaf_hash').where('leaf_index', '=', '40' as never).executeTakeFirstOrThrow();
      const direct = await inclusionProof(databaseSource(trx), 40, 63);
      const prefetched = await withPrefetchedSubtrees(trx, (source) => inclusionProof(source, 40, 63));
      expect(prefetched).toEqual(direct);
      return { root: checkpoint.root_hash, proof: prefetched, leaf: event.leaf_hash };
    });
    expect(rootFromInclusionProof(40, 63, leaf, proof).equals(root)).toBe(true);
    expect(rootFromInclusionProof(40, 63, leafHash(Buffer.from('forged')), proof).equals(root)).toBe(false);
  });

  it('an event rolls back with the change it records', async () => {
    const tenant = await seedTenant(db.handles, 'audit-rollback');
    const before = await db.superQuery('SELECT count(*)::int AS n FROM ringvakt.audit_events WHERE tenant_id = $1', [tenant.tenantId]);
    await expect(
      inTenant(tenant, async (trx) => {
        await append(tenant, 0);
        await recordAuditEvent(trx, { action: 'user.create', outcome: 'success', actor: { type: 'system' } });
        throw new Error('the change failed');
      }),
    ).rejects.toThrow('the change failed');
    const count = await db.superQuery('SELECT count(*)::int AS n FROM ringvakt.audit_events WHERE tenant_id = $1', [tenant.tenantId]);
    expect(count.rows[0]!.n).toBe(before.rows[0]!.n);
  });

  it('the runtime role may only insert and read; triggers refuse changes even to the owner', async () => {
    const tenant = await seedTenant(db.handles, 'audit-rights');
    await append(tenant, 3);
    await inTenant(tenant, (trx) => sealTenantLedger(trx, key));
    const runtime = await db.runtimeClient();
    try {
      await runtime.query('BEGIN');
      await runtime.query(`SELECT set_config('app.tenant_id', $1, true)`, [tenant.tenantId]);
      await runtime.query('SAVEPOINT attempt');
      await expect(
        runtime.query(`INSERT INTO audit_events (occurred_at, actor_type, action, outcome, leaf_hash, leaf_index) VALUES (now(), 'system', 'user.create', 'success', sha256('x'), 999999)`),
      ).rejects.toThrow(/inserted unsealed/);
      await runtime.query('ROLLBACK TO SAVEPOINT attempt');
      for (const statement of ['UPDATE audit_events SET outcome = $$failed$$', 'DELETE FROM audit_events', 'TRUNCATE audit_events', 'DELETE FROM audit_checkpoints', 'UPDATE audit_tree_nodes SET level = 1']) {
        await runtime.query('SAVEPOINT attempt');
        await expect(runtime.query(statement), statement).rejects.toThrow(/permission denied/);
        await runtime.query('ROLLBACK TO SAVEPOINT attempt');
      }
      await runtime.query('ROLLBACK');
    } finally {
      await runtime.end();
    }
    for (const statement of ['UPDATE ringvakt.audit_events SET outcome = $$failed$$', 'DELETE FROM ringvakt.audit_events', 'TRUNCATE ringvakt.audit_checkpoints']) {
      await expect(
        db.superQuery(`DO $x$ BEGIN SET LOCAL ROLE ${db.handles.roles.owner}; PERFORM set_config('app.tenant_id', '${tenant.tenantId}', true); EXECUTE '${statement.replaceAll("'", "''")}'; END $x$`),
        statement,
      ).rejects.toThrow(/append-only/);
    }
    // The owner may not insert an event that claims a place in the tree either.
    await expect(
      db.superQuery(`DO $x$ BEGIN SET LOCAL ROLE ${db.handles.roles.owner}; PERFORM set_config('app.tenant_id', '${tenant.tenantId}', true);
        INSERT INTO ringvakt.audit_events (occurred_at, actor_type, action, outcome, leaf_hash, leaf_index) VALUES (now(), 'system', 'user.create', 'success', sha256('x'), 999999); END $x$`),
    ).rejects.toThrow(/inserted unsealed/);
    // Two events can never hold one leaf, even for a superuser who switched the triggers off.
    await expect(
      db.superQuery(`BEGIN; SET LOCAL session_replication_role = replica;
        UPDATE ringvakt.audit_events SET leaf_index = 0 WHERE tenant_id = '${tenant.tenantId}' AND leaf_index = 1; COMMIT;`),
    ).rejects.toThrow(/duplicate key/);
    // Unsealed events (no leaf yet) are any number.
    await append(tenant, 3);
    const unsealed = await db.superQuery(`SELECT count(*)::int AS n FROM ringvakt.audit_events WHERE tenant_id = $1 AND leaf_index IS NULL`, [tenant.tenantId]);
    expect(unsealed.rows[0]!.n).toBe(3);
  });

  type Tamper = { name: string; sql: (tenantId: string, leaf: number) => string };
  const tampers: Tamper[] = [
    { name: 'alter details', sql: (t, leaf) => `UPDATE ringvakt.audit_events SET details = jsonb_set(details, '{role}', '"tampered"') WHERE tenant_id = '${t}' AND leaf_index = ${leaf}` },
    { name: 'shift a time by microseconds', sql: (t, leaf) => `UPDATE ringvakt.audit_events SET occurred_at = occurred_at + interval '7 microseconds' WHERE tenant_id = '${t}' AND leaf_index = ${leaf}` },
    { name: 'alter a value holding tabs, newlines and backslashes', sql: (t, leaf) => `UPDATE ringvakt.audit_events SET details = jsonb_set(details, '{note}', to_jsonb(E'a\\tb\\nc\\\\d'::text)) WHERE tenant_id = '${t}' AND leaf_index = ${leaf}` },
    { name: 'alter outcome and recompute nothing', sql: (t, leaf) => `UPDATE ringvakt.audit_events SET outcome = 'success' WHERE tenant_id = '${t}' AND leaf_index = ${leaf} AND outcome <> 'success'; UPDATE ringvakt.audit_events SET outcome = 'failed' WHERE tenant_id = '${t}' AND leaf_index = ${leaf} AND outcome = 'success'` },
    { name: 'delete an event', sql: (t, leaf) => `DELETE FROM ringvakt.audit_events WHERE tenant_id = '${t}' AND leaf_index = ${leaf}` },
    { name: 'swap two events', sql: (t, leaf) => `UPDATE ringvakt.audit_events SET leaf_index = 1000000 WHERE tenant_id = '${t}' AND leaf_index = ${leaf}; UPDATE ringvakt.audit_events SET leaf_index = ${leaf} WHERE tenant_id = '${t}' AND leaf_index = ${leaf === 0 ? 1 : leaf - 1}; UPDATE ringvakt.audit_events SET leaf_index = ${leaf === 0 ? 1 : leaf - 1} WHERE tenant_id = '${t}' AND leaf_index = 1000000` },
    { name: 'insert a forged event, hash and all', sql: (t, leaf) => `UPDATE ringvakt.audit_events SET leaf_index = leaf_index + 1000000 WHERE tenant_id = '${t}' AND leaf_index >= ${leaf}; UPDATE ringvakt.audit_events SET leaf_index = leaf_index - 999999 WHERE tenant_id = '${t}' AND leaf_index >= 1000000; INSERT INTO ringvakt.audit_events (tenant_id, leaf_index, occurred_at, actor_type, action, outcome, leaf_hash) SELECT '${t}', ${leaf}, occurred_at, actor_type, action, outcome, leaf_hash FROM ringvakt.audit_events WHERE tenant_id = '${t}' AND leaf_index = ${leaf + 1}` },
    { name: 'alter a stored tree node', sql: (t) => `UPDATE ringvakt.audit_tree_nodes SET hash = sha256(hash) WHERE tenant_id = '${t}' AND level = 1 AND index = 0` },
    { name: 'remove the newest checkpoint', sql: (t) => `DELETE FROM ringvakt.audit_checkpoints WHERE tenant_id = '${t}' AND tree_size = (SELECT max(tree_size) FROM ringvakt.audit_checkpoints WHERE tenant_id = '${t}')` },
    { name: 'alter a checkpoint root', sql: (t) => `UPDATE ringvakt.audit_checkpoints SET root_hash = sha256(root_hash) WHERE tenant_id = '${t}' AND tree_size = (SELECT min(tree_size) FROM ringvakt.audit_checkpoints WHERE tenant_id = '${t}')` },
  ];

  it('detects any change, deletion, insertion or reordering made directly in SQL by a superuser (property-based)', async () => {
    let run = 0;
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...tampers), fc.integer({ min: 0, max: 19 }), async (tamper, leaf) => {
        run += 1;
        const tenant = await seedTenant(db.handles, `audit-tamper-${run}`);
        await append(tenant, 12);
        await inTenant(tenant, (trx) => sealTenantLedger(trx, key));
        await append(tenant, 8, 12);
        await inTenant(tenant, (trx) => sealTenantLedger(trx, key));
        expect((await verify(tenant)).ok).toBe(true);
        // A superuser working around the triggers.
        await db.superQuery(`SET session_replication_role = replica; ${tamper.sql(tenant.tenantId, leaf)}; SET session_replication_role = origin;`);
        const verdict = await verify(tenant);
        expect(verdict.ok, `${tamper.name} at leaf ${leaf}`).toBe(false);
      }),
      { numRuns: 25 },
    );
  });

  // Slow, not timed: each worker thread loads the TypeScript sources itself (~27 s here alone).
  it('reaches the same verdicts when worker threads recompute the leaves (as for large ledgers)', async () => {
    const parallel = { connectionString: String(db.handles.pool.options.connectionString), workers: 3 };
    const inWorkers = (tenant: SeededTenant) =>
      db.handles.forTenant(tenant.tenantId).snapshot(async (trx) => verifyTenantLedger(trx, await publicKeys(db.handles.systemDb), [], { parallel }));
    const tenant = await seedTenant(db.handles, 'audit-workers');
    await append(tenant, 40);
    await inTenant(tenant, (trx) => sealTenantLedger(trx, key));
    await append(tenant, 3, 40); // three more, not yet sealed
    expect(await inWorkers(tenant)).toEqual({ ok: true, events: 45, sealed: 42, checkpoints: 1, pruned: 0 });
    expect(await inWorkers(tenant)).toEqual(await verify(tenant));
    for (const [index, tamper] of tampers.entries()) {
      const victim = await seedTenant(db.handles, `audit-workers-${index}`);
      await append(victim, 30);
      await inTenant(victim, (trx) => sealTenantLedger(trx, key));
      await db.superQuery(`SET session_replication_role = replica; ${tamper.sql(victim.tenantId, 17)}; SET session_replication_role = origin;`);
      const verdict = await inWorkers(victim);
      expect(verdict.ok, tamper.name).toBe(false);
      expect(verdict, tamper.name).toEqual(await verify(victim));
    }
  }, 120_000);

  it('detects a checkpoint re-signed with a key that is not the audit signing key', async () => {
    const tenant = await seedTenant(db.handles, 'audit-resign');
    await append(tenant, 3);
    await inTenant(tenant, (trx) => sealTenantLedger(trx, key));
    const forger = generateKeyPairSync('ed25519');
    const checkpoint = await db.superQuery<{ tree_size: string; root_hash: Buffer; signed_at: Date }>(
      'SELECT tree_size, root_hash, signed_at FROM ringvakt.audit_checkpoints WHERE tenant_id = $1',
      [tenant.tenantId],
    );
    const row = checkpoint.rows[0]!;
    const forged = sign(null, checkpointMessage({ tenantId: tenant.tenantId, treeSize: Number(row.tree_size), rootHash: row.root_hash, signedAt: row.signed_at }), forger.privateKey);
    await db.superQuery(`SET session_replication_role = replica; UPDATE ringvakt.audit_checkpoints SET signature = '\\x${forged.toString('hex')}' WHERE tenant_id = '${tenant.tenantId}'; SET session_replication_role = origin;`);
    expect(await verify(tenant)).toEqual({ ok: false, problem: 'checkpoint of size 5 has no valid signature by a known audit signing key' });
  });

  it('an outside witness catches a rewrite that replaced the signing key inside the database', async () => {
    const tenant = await seedTenant(db.handles, 'audit-witness');
    const witnessFile = path.join(folder, 'witness.jsonl');
    await append(tenant, 6);
    await inTenant(tenant, (trx) => sealTenantLedger(trx, key, { publishers: [fileWitness(witnessFile, createLogger('silent'))] }));
    const witness = readWitness(witnessFile).filter((entry) => entry.tenantId === tenant.tenantId);
    expect(witness).toHaveLength(1);
    expect(checkWitnessSignatures(witness)).toBeUndefined();

    // The attacker (a superuser) rewrites leaf 3, recomputes its hash, every node and the
    // checkpoint, and signs it with a key of their own, planted beside the real one.
    const rows = await db.superQuery(`SELECT * FROM ringvakt.audit_events WHERE tenant_id = $1 ORDER BY leaf_index`, [tenant.tenantId]);
    const events = rows.rows.map((row) => ({
      tenantId: tenant.tenantId, occurredAt: row.occurred_at, actorType: row.actor_type, actorId: row.actor_id, action: row.action,
      targetType: row.target_type, targetId: row.target_id, outcome: row.outcome, sourceIp: row.source_ip, requestId: row.request_id,
      details: row.id === rows.rows[3]!.id ? { ...row.details, role: 'owner' } : row.details,
    }));
    const hashes = events.map((event) => leafHash(canonicalEvent(event)));
    const levels = packedSubtrees(Buffer.concat(hashes), hashes.length);
    const root = await treeHash(packedSource(levels), hashes.length);
    const forger = generateKeyPairSync('ed25519');
    const spki = forger.publicKey.export({ format: 'der', type: 'spki' });
    const signedAt = new Date();
    const signature = sign(null, checkpointMessage({ tenantId: tenant.tenantId, treeSize: hashes.length, rootHash: root, signedAt }), forger.privateKey);
    const statements = [
      `SET session_replication_role = replica`,
      `UPDATE ringvakt.audit_events SET details = jsonb_set(details, '{role}', '"owner"'), leaf_hash = '\\x${hashes[3]!.toString('hex')}' WHERE tenant_id = '${tenant.tenantId}' AND leaf_index = 3`,
      `DELETE FROM ringvakt.audit_tree_nodes WHERE tenant_id = '${tenant.tenantId}'`,
      ...levels.slice(1).flatMap((level, at) => Array.from({ length: level.length / 32 }, (_, index) =>
        `INSERT INTO ringvakt.audit_tree_nodes (tenant_id, level, index, hash) VALUES ('${tenant.tenantId}', ${at + 1}, ${index}, '\\x${level.subarray(index * 32, index * 32 + 32).toString('hex')}')`)),
      `DELETE FROM ringvakt.audit_checkpoints WHERE tenant_id = '${tenant.tenantId}'`,
      `INSERT INTO ringvakt.audit_signing_keys (key_id, public_key, root_key_id, wrapped_private_key) VALUES ('ed25519:planted', '\\x${spki.toString('hex')}', 'none', '\\x00')`,
      `INSERT INTO ringvakt.audit_checkpoints (tenant_id, tree_size, root_hash, signed_at, signing_key_id, signature) VALUES ('${tenant.tenantId}', ${hashes.length}, '\\x${root.toString('hex')}', '${signedAt.toISOString()}', 'ed25519:planted', '\\x${signature.toString('hex')}')`,
      `SET session_replication_role = origin`,
    ];
    await db.superQuery(statements.join(';\n'));

    // Inside the database alone the forgery is consistent…
    expect((await verify(tenant)).ok).toBe(true);
    // …the witness, kept outside, is not fooled.
    const verdict = await inTenant(tenant, async (trx) => verifyTenantLedger(trx, await publicKeys(db.handles.systemDb), witness));
    expect(verdict).toEqual({ ok: false, problem: `the witness's checkpoint of size ${hashes.length} does not match the events: history was rewritten` });
  });

  it('the background sealer seals exactly the tenants that have new events', async () => {
    const busy = await seedTenant(db.handles, 'audit-sealer-busy');
    const quiet = await seedTenant(db.handles, 'audit-sealer-quiet');
    await inTenant(quiet, (trx) => sealTenantLedger(trx, key));
    await append(busy, 4);
    expect(await db.handles.systemDb.tenantsWithUnsealedAuditEvents()).toContain(busy.tenantId);
    expect(await db.handles.systemDb.tenantsWithUnsealedAuditEvents()).not.toContain(quiet.tenantId);
    const sealer = startAuditSealer({ systemDb: db.handles.systemDb, signingKey: key, logger: createLogger('silent'), intervalMs: 60_000 });
    try {
      await sealer.runOnce();
    } finally {
      await sealer.stop();
    }
    expect(await db.handles.systemDb.tenantsWithUnsealedAuditEvents()).not.toContain(busy.tenantId);
    expect(await verify(busy)).toEqual({ ok: true, events: 6, sealed: 6, checkpoints: 1, pruned: 0 });
    expect(await verify(quiet)).toEqual({ ok: true, events: 2, sealed: 2, checkpoints: 1, pruned: 0 });
  });
});
