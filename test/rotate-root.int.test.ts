import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadSigningKey } from '../src/audit/signing-key.ts';
import { createFieldCipher } from '../src/crypto/field-cipher.ts';
import { createKeyring } from '../src/crypto/keyring.ts';
import { rotateRootKey } from '../src/crypto/rotate-root-key.ts';
import { verifyRootKey } from '../src/crypto/root-key-check.ts';
import { createLocalKeyProvider } from '../src/crypto/root-keys/local-key-provider.ts';
import { createLogger } from '../src/logger.ts';
import { createTestDatabase, serverLabel, type TestDatabase } from './support/database.ts';
import { seedTenant } from './support/seed.ts';

describe(`root key rotation (${serverLabel()} server)`, () => {
  let db: TestDatabase;
  const folder = mkdtempSync(path.join(os.tmpdir(), 'rv-rotate-'));
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => {
    await db?.drop();
    rmSync(folder, { recursive: true, force: true });
  });

  it('rewraps every tenant key under the new root key; data stays readable; a second run has nothing to do', async () => {
    // The deployment's own root key file: the one seeding and the app use (DatabaseHandles.crypto).
    const file = path.join(db.config.dataDir, 'secrets', 'root-keys.json');
    const before = createLocalKeyProvider(file);
    await verifyRootKey(db.handles.systemDb, before);
    const where = { table: 'contacts', recordId: '11111111-2222-4333-8444-555555555555', field: 'phone' };
    const sealed: { tenantId: string; value: Buffer }[] = [];
    for (const slug of ['rotate-a', 'rotate-b']) {
      const tenant = await seedTenant(db.handles, slug);
      const cipher = createFieldCipher(createKeyring(before));
      const value = await db.handles.forTenant(tenant.tenantId).transaction(async (trx) => {
        await cipher.blindIndex(trx, 'contacts.phone', '+4791234567');
        return cipher.encrypt(trx, where, `number of ${slug}`);
      });
      sealed.push({ tenantId: tenant.tenantId, value });
    }

    const oldSigningKey = await loadSigningKey(db.handles.systemDb, before);
    const provider = createLocalKeyProvider(file);
    const result = await rotateRootKey(db.handles.systemDb, provider, createLogger('silent'), { rotateProvider: true });
    expect(result).toEqual({ rootKeyId: 'local:v2', rewrapped: 4 });
    const ids = await db.superQuery('SELECT DISTINCT root_key_id FROM ringvakt.tenant_keys');
    expect(ids.rows).toEqual([{ root_key_id: 'local:v2' }]);

    // A fresh process (new keyring, the rotated key file) still reads everything.
    const reader = createFieldCipher(createKeyring(createLocalKeyProvider(file)));
    for (const [index, item] of sealed.entries()) {
      const plain = await db.handles.forTenant(item.tenantId).read((trx) => reader.decrypt(trx, where, item.value));
      expect(plain).toBe(`number of rotate-${index === 0 ? 'a' : 'b'}`);
    }
    await verifyRootKey(db.handles.systemDb, createLocalKeyProvider(file));
    const signing = await db.handles.systemDb.auditSigningKeys();
    expect(signing[0]!.rootKeyId).toBe('local:v2');
    expect(signing.map((key) => key.keyId)).toContain(oldSigningKey.keyId);
    expect(await rotateRootKey(db.handles.systemDb, createLocalKeyProvider(file), createLogger('silent'), { rotateProvider: false })).toEqual({ rootKeyId: 'local:v2', rewrapped: 0 });
    const audited = await db.superQuery(`SELECT count(*)::int AS n FROM ringvakt.audit_events WHERE action = 'keys.rotate_root'`);
    expect(audited.rows[0]!.n).toBe(2);
  });
});
