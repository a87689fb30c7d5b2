import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFieldCipher, FieldCipherError, type FieldCipher } from '../src/crypto/field-cipher.ts';
import { createKeyring, KeyringError, ROTATE_AFTER, SubjectErasedError } from '../src/crypto/keyring.ts';
import type { RootKeyProvider } from '../src/crypto/root-keys/root-key-provider.ts';
import type { TenantTransaction } from '../src/db/tenant-db.ts';
import { createTestDatabase, serverLabel, type TestDatabase } from './support/database.ts';

const subject = '6f0c7d2e-3b1a-4c55-9a6e-0d9f1b2c3d4e';
const where = { table: 'contacts', recordId: '11111111-2222-4333-8444-555555555555', field: 'phone' };

describe(`field encryption and the key hierarchy (${serverLabel()} server)`, () => {
  let db: TestDatabase;
  let a: { tenantId: string };
  let b: { tenantId: string };
  let root: RootKeyProvider;
  let cipher: FieldCipher;
  const folder = mkdtempSync(path.join(os.tmpdir(), 'rv-fields-'));

  beforeAll(async () => {
    db = await createTestDatabase();
    // Bare tenants, with no users yet: these tests watch keys come into being.
    a = { tenantId: await db.handles.systemDb.createTenant('fields-a', 'Fields A') };
    b = { tenantId: await db.handles.systemDb.createTenant('fields-b', 'Fields B') };
    root = (await db.handles.crypto()).root;
    cipher = createFieldCipher(createKeyring(root));
  });
  afterAll(async () => {
    await db?.drop();
    rmSync(folder, { recursive: true, force: true });
  });

  const inA = <T>(work: (trx: TenantTransaction) => Promise<T>) => db.handles.forTenant(a.tenantId).transaction(work);
  const inB = <T>(work: (trx: TenantTransaction) => Promise<T>) => db.handles.forTenant(b.tenantId).transaction(work);

  it('round-trips under the tenant key and under a subject key, and stores no plaintext or key', async () => {
    const [plain, personal] = await inA(async (trx) => [
      await cipher.encrypt(trx, where, '+4791234567'),
      await cipher.encrypt(trx, where, 'Kari Nordmann', subject),
    ]);
    expect(plain.subarray(0, 4)).toEqual(Buffer.from([0x52, 0x56, 0x01, 0x01]));
    expect(personal.subarray(0, 4)).toEqual(Buffer.from([0x52, 0x56, 0x01, 0x02]));
    expect(plain.includes(Buffer.from('+4791234567'))).toBe(false);
    const back = await inA(async (trx) => [await cipher.decrypt(trx, where, plain), await cipher.decrypt(trx, where, personal, subject)]);
    expect(back).toEqual(['+4791234567', 'Kari Nordmann']);
    const stored = await db.superQuery<{ wrapped_key: Buffer }>(`SELECT wrapped_key FROM ringvakt.tenant_keys UNION ALL SELECT wrapped_key FROM ringvakt.subject_keys`);
    expect(stored.rows.length).toBe(2);
    // Wrapped: nonce + 32 key bytes + tag, never a bare 32-byte key.
    expect(stored.rows.every((row) => row.wrapped_key.length === 12 + 32 + 16)).toBe(true);
  });

  it('any altered byte is an error, never a wrong plaintext (property-based)', async () => {
    const sealed = await inA((trx) => cipher.encrypt(trx, where, 'secret value'));
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: sealed.length - 1 }), fc.integer({ min: 1, max: 255 }), async (index, flip) => {
        const altered = Buffer.from(sealed);
        altered.writeUInt8(altered.readUInt8(index) ^ flip, index);
        // Whatever the byte (magic, format, key kind, key version, nonce, body, tag): one of our
        // named errors, never a plaintext and never a database error.
        const outcome = await inA((trx) => cipher.decrypt(trx, where, altered)).then(
          (plaintext) => ({ plaintext }),
          (error: Error) => ({ error }),
        );
        expect(outcome).not.toHaveProperty('plaintext');
        expect((outcome as { error: Error }).error).toSatisfy((error: Error) => error instanceof FieldCipherError || error instanceof KeyringError);
      }),
      { numRuns: 60 },
    );
  });

  it('a value moved to another record, another field or another tenant does not decrypt', async () => {
    const sealed = await inA((trx) => cipher.encrypt(trx, where, 'moved value'));
    await expect(inA((trx) => cipher.decrypt(trx, { ...where, recordId: '99999999-2222-4333-8444-555555555555' }, sealed))).rejects.toBeInstanceOf(FieldCipherError);
    await expect(inA((trx) => cipher.decrypt(trx, { ...where, field: 'email' }, sealed))).rejects.toBeInstanceOf(FieldCipherError);
    // Under another tenant: before it has keys of its own, and after.
    await expect(inB((trx) => cipher.decrypt(trx, where, sealed))).rejects.toThrow(/no data key version 1/);
    await inB((trx) => cipher.encrypt(trx, where, 'b has a key now'));
    await expect(inB((trx) => cipher.decrypt(trx, where, sealed))).rejects.toBeInstanceOf(FieldCipherError);
  });

  it('names truncated data, unknown formats and unknown key versions', async () => {
    const sealed = await inA((trx) => cipher.encrypt(trx, where, 'x'));
    await expect(inA((trx) => cipher.decrypt(trx, where, sealed.subarray(0, 12)))).rejects.toThrow(/does not decrypt/);
    await expect(inA((trx) => cipher.decrypt(trx, where, Buffer.from('plain text')))).rejects.toThrow(/Not a Ringvakt field ciphertext/);
    const future = Buffer.from(sealed);
    future.writeUInt8(2, 2);
    await expect(inA((trx) => cipher.decrypt(trx, where, future))).rejects.toThrow(/Unsupported field ciphertext format 2/);
    const unknownVersion = Buffer.from(sealed);
    unknownVersion.writeUInt32BE(99, 4);
    await expect(inA((trx) => cipher.decrypt(trx, where, unknownVersion))).rejects.toBeInstanceOf(KeyringError);
  });

  it('crypto-shredding: once the subject key is destroyed, every copy of their data is unreadable', async () => {
    const erased = '0a0b0c0d-1111-4222-8333-444455556666';
    const copies = await inA(async (trx) => [
      await cipher.encrypt(trx, where, 'Ola Nordmann', erased),
      await cipher.encrypt(trx, { ...where, field: 'email' }, 'ola@example.no', erased),
    ]);
    expect(await inA((trx) => cipher.decrypt(trx, where, copies[0]!, erased))).toBe('Ola Nordmann');
    expect(await inA((trx) => createKeyring(root).destroySubjectKey(trx, erased))).toBe(true);

    const raw = await db.superQuery('SELECT wrapped_key, tenant_key_version, destroyed_at FROM ringvakt.subject_keys WHERE subject_id = $1', [erased]);
    expect(raw.rows).toHaveLength(1);
    expect(raw.rows[0]!.wrapped_key).toBeNull();
    expect(raw.rows[0]!.destroyed_at).toBeInstanceOf(Date);
    for (const copy of copies) {
      await expect(inA((trx) => cipher.decrypt(trx, where, copy, erased))).rejects.toBeInstanceOf(SubjectErasedError);
    }
    await expect(inA((trx) => cipher.encrypt(trx, where, 'again', erased))).rejects.toBeInstanceOf(SubjectErasedError);
    await expect(db.superQuery(`UPDATE ringvakt.subject_keys SET destroyed_at = NULL, wrapped_key = '\\x00' WHERE subject_id = $1`, [erased])).rejects.toThrow(/cannot be restored/);
  });

  it('blind indexes match equal values within a tenant and index, and nowhere else', async () => {
    const [one, two, otherIndex] = await inA(async (trx) => [
      await cipher.blindIndex(trx, 'contacts.phone', '+4791234567', 8),
      await cipher.blindIndex(trx, 'contacts.phone', '+4791234567', 8),
      await cipher.blindIndex(trx, 'contacts.email', '+4791234567', 8),
    ]);
    const otherTenant = await inB((trx) => cipher.blindIndex(trx, 'contacts.phone', '+4791234567', 8));
    expect(one).toEqual(two);
    expect(one).not.toEqual(otherIndex);
    expect(one).not.toEqual(otherTenant);
    expect((await inA((trx) => cipher.blindIndex(trx, 'contacts.phone', '+4791234567'))).length).toBe(2);
  });

  it('counts encryptions per key and rotates to a new version before the nonce budget runs low', async () => {
    await inB((trx) => cipher.encrypt(trx, where, 'first'));
    const reserved = await db.superQuery(`SELECT version, encryptions_reserved::bigint AS n FROM ringvakt.tenant_keys WHERE tenant_id = $1 AND purpose = 'data'`, [b.tenantId]);
    expect(reserved.rows).toEqual([{ version: 1, n: '65536' }]); // one block, reserved by this process
    const old = await inB((trx) => cipher.encrypt(trx, where, 'written under version 1'));
    await db.superQuery(`UPDATE ringvakt.tenant_keys SET encryptions_reserved = $2 WHERE tenant_id = $1 AND purpose = 'data'`, [b.tenantId, ROTATE_AFTER]);
    const freshProcess = createFieldCipher(createKeyring(root)); // no reserved block left over
    const rotated = await inB((trx) => freshProcess.encrypt(trx, where, 'written under version 2'));
    expect(rotated.readUInt32BE(4)).toBe(2);
    const keys = await db.superQuery(`SELECT version, state FROM ringvakt.tenant_keys WHERE tenant_id = $1 AND purpose = 'data' ORDER BY version`, [b.tenantId]);
    expect(keys.rows).toEqual([{ version: 1, state: 'retired' }, { version: 2, state: 'active' }]);
    expect(await inB((trx) => freshProcess.decrypt(trx, where, old))).toBe('written under version 1');
  });

  it('reserves block after block inside one long transaction (a bulk write), counting each once', async () => {
    const bulk = { tenantId: await db.handles.systemDb.createTenant('fields-bulk', 'Fields bulk') };
    const fresh = createFieldCipher(createKeyring(root));
    const sealed = await db.handles.forTenant(bulk.tenantId).transaction(async (trx) => {
      let last: Buffer = Buffer.alloc(0);
      for (let index = 0; index < 70_000; index += 1) last = await fresh.encrypt(trx, where, `value ${index}`);
      return last;
    });
    const reserved = await db.superQuery(`SELECT version, encryptions_reserved::bigint AS n FROM ringvakt.tenant_keys WHERE tenant_id = $1 AND purpose = 'data'`, [bulk.tenantId]);
    expect(reserved.rows).toEqual([{ version: 1, n: String(2 * 65_536) }]);
    expect(await db.handles.forTenant(bulk.tenantId).read((trx) => fresh.decrypt(trx, where, sealed))).toBe('value 69999');
  });

  it('forgets keys and reserved budgets of a transaction that rolled back', async () => {
    const d = { tenantId: await db.handles.systemDb.createTenant('fields-d', 'Fields D') };
    const handle = db.handles.forTenant(d.tenantId);
    await expect(
      handle.transaction(async (trx) => {
        await cipher.encrypt(trx, where, 'lost with the transaction');
        await cipher.blindIndex(trx, 'contacts.phone', '+4791234567', 8);
        throw new Error('the change failed');
      }),
    ).rejects.toThrow('the change failed');
    const kept = await handle.transaction((trx) => cipher.encrypt(trx, where, 'kept'));
    const index = await handle.transaction((trx) => cipher.blindIndex(trx, 'contacts.phone', '+4791234567', 8));
    // A fresh process (no in-memory keys) reads it and computes the same index: the keys in use are the stored ones.
    const fresh = createFieldCipher(createKeyring(root));
    expect(await handle.read((trx) => fresh.decrypt(trx, where, kept))).toBe('kept');
    expect(await handle.read((trx) => fresh.blindIndex(trx, 'contacts.phone', '+4791234567', 8))).toEqual(index);
  });

  it('a long read in a fresh process unwraps each tenant key once, not once for every value it opens', async () => {
    const values = await inA(async (trx) => Promise.all(Array.from({ length: 50 }, (_, index) => cipher.encrypt(trx, { ...where, recordId: `11111111-2222-4333-8444-${String(index).padStart(12, '0')}` }, `value ${index}`))));
    let unwraps = 0;
    const counting = Object.create(root) as RootKeyProvider;
    counting.unwrap = (wrapped, context) => {
      unwraps += 1;
      return root.unwrap(wrapped, context);
    };
    const fresh = createFieldCipher(createKeyring(counting));
    const opened = await db.handles.forTenant(a.tenantId).snapshot(async (trx) => {
      const out: string[] = [];
      for (const [index, value] of values.entries()) out.push(await fresh.decrypt(trx, { ...where, recordId: `11111111-2222-4333-8444-${String(index).padStart(12, '0')}` }, value));
      return out;
    });
    expect(opened).toEqual(values.map((_, index) => `value ${index}`));
    expect(unwraps).toBe(1);
  });

  it('creates exactly one key when many transactions of a new tenant need it at once', async () => {
    const c = { tenantId: await db.handles.systemDb.createTenant('fields-c', 'Fields C') };
    const sealed = await Promise.all(
      Array.from({ length: 12 }, (_, index) => db.handles.forTenant(c.tenantId).transaction((trx) => cipher.encrypt(trx, where, `value ${index}`))),
    );
    const keys = await db.superQuery(`SELECT count(*)::int AS n FROM ringvakt.tenant_keys WHERE tenant_id = $1 AND purpose = 'data'`, [c.tenantId]);
    expect(keys.rows[0]!.n).toBe(1);
    const back = await db.handles.forTenant(c.tenantId).read((trx) => Promise.all(sealed.map((value) => cipher.decrypt(trx, where, value))));
    expect(back).toEqual(Array.from({ length: 12 }, (_, index) => `value ${index}`));
  });
});
