import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFieldCipher } from '../src/crypto/field-cipher.ts';
import { createKeyring } from '../src/crypto/keyring.ts';
import { verifyRootKey } from '../src/crypto/root-key-check.ts';
import { createEnvKeyProvider } from '../src/crypto/root-keys/env-key-provider.ts';
import { createLocalKeyProvider } from '../src/crypto/root-keys/local-key-provider.ts';
import { createTestDatabase, serverLabel, type TestDatabase } from './support/database.ts';
import { seedTenant } from './support/seed.ts';

describe(`root key check at start (${serverLabel()} server)`, () => {
  let db: TestDatabase;
  const folder = mkdtempSync(path.join(os.tmpdir(), 'rv-rootcheck-'));
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => {
    await db?.drop();
    rmSync(folder, { recursive: true, force: true });
  });

  it('accepts the right root key and refuses a wrong one, naming the key version and nothing secret', async () => {
    const right = createLocalKeyProvider(path.join(db.config.dataDir, 'secrets', 'root-keys.json'));
    await verifyRootKey(db.handles.systemDb, right);
    const tenant = await seedTenant(db.handles, 'rootcheck');
    await db.handles.forTenant(tenant.tenantId).transaction((trx) =>
      createFieldCipher(createKeyring(right)).encrypt(trx, { table: 't', recordId: tenant.owner.id, field: 'f' }, 'x'),
    );
    await verifyRootKey(db.handles.systemDb, right); // again: still fine

    const wrongFile = createLocalKeyProvider(path.join(folder, 'wrong', 'root-keys.json'));
    await expect(verifyRootKey(db.handles.systemDb, wrongFile)).rejects.toThrow(/does not match root key local:v1.*did not start; nothing was changed/s);

    const otherKind = createEnvKeyProvider(randomBytes(32).toString('base64'), undefined);
    await expect(verifyRootKey(db.handles.systemDb, otherKind)).rejects.toThrow(/does not match root key local:v1/);
    const checks = await db.superQuery('SELECT key_id FROM ringvakt.root_key_checks');
    expect(checks.rows).toEqual([{ key_id: 'local:v1' }]);
  });
});
