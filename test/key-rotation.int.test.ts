import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFieldCipher } from '../src/crypto/field-cipher.ts';
import { createKeyring } from '../src/crypto/keyring.ts';
import { encryptedColumns, subjectKeyedColumns, listRotationJobs, rotateTenantDataKey, RotationInProgressError, runRotationBatch, startReencryptionWorker } from '../src/crypto/reencrypt.ts';
import type { CryptoHandles } from '../src/db/database.ts';
import { createLogger } from '../src/logger.ts';
import { createUser, findUserByEmail, listUsers } from '../src/modules/users/users.repo.ts';
import { createTestDatabase, serverLabel, type TestDatabase } from './support/database.ts';
import { seedTenant, type SeededTenant } from './support/seed.ts';

describe(`tenant data key rotation and re-encryption (${serverLabel()} server)`, () => {
  let db: TestDatabase;
  let crypto: CryptoHandles;
  let tenant: SeededTenant;

  beforeAll(async () => {
    db = await createTestDatabase();
    crypto = await db.handles.crypto();
    tenant = await seedTenant(db.handles, 'rotating');
  });
  afterAll(async () => db?.drop());

  const handle = () => db.handles.forTenant(tenant.tenantId);
  const versionsIn = async (column: string) => {
    const rows = await db.superQuery<{ version: number; n: number }>(
      `SELECT get_byte(${column}, 4) * 16777216 + get_byte(${column}, 5) * 65536 + get_byte(${column}, 6) * 256 + get_byte(${column}, 7) AS version, count(*)::int AS n
         FROM ringvakt.users WHERE tenant_id = $1 GROUP BY 1 ORDER BY 1`,
      [tenant.tenantId],
    );
    return rows.rows;
  };

  it('registers every encrypted column of the schema', async () => {
    const columns = await db.superQuery<{ name: string }>(
      `SELECT table_name || '.' || column_name AS name FROM information_schema.columns
        WHERE table_schema = 'ringvakt' AND column_name LIKE '%\\_ciphertext' ORDER BY 1`,
    );
    const registered = [...encryptedColumns, ...subjectKeyedColumns].map((spec) => `${spec.table}.${spec.column}`);
    expect(columns.rows.map((row) => row.name)).toEqual(registered.sort());
  });

  it('re-encrypts every value and rewraps every subject key under the new version, resumably, while others keep writing', async () => {
    // 450 more users (three batches) and some subject keys, all under data key version 1.
    for (let start = 0; start < 450; start += 50) {
      await handle().transaction(async (trx) => {
        for (let index = start; index < start + 50; index += 1) {
          await createUser(trx, crypto.cipher, { email: `person${index}@rotating.example`, displayName: `Person ${index}`, role: 'agent' });
        }
      });
    }
    const subjects = Array.from({ length: 5 }, (_, index) => `aaaaaaaa-0000-4000-8000-00000000000${index}`);
    const personal = await handle().transaction((trx) =>
      Promise.all(subjects.map((subject) => crypto.cipher.encrypt(trx, { table: 'contacts', recordId: subject, field: 'name' }, `Subject ${subject}`, subject))),
    );
    // Six evidence files (sealed as bytes, six batches of the file walk would be two), one of them withdrawn: re-sealed like any value.
    const files = Array.from({ length: 6 }, (_, index) => Buffer.concat([Buffer.from('%PDF-1.7\n'), Buffer.alloc(3000 + index, index)]));
    const documentIds = await handle().transaction(async (trx) => {
      const ids: string[] = [];
      for (const [index, file] of files.entries()) {
        const row = await trx.insertInto('compliance_documents').values({ kind: 'control_evidence', control_id: 'RV-ORG-01', title: `Evidence ${index}`, evidence_date: '2026-01-01', expires_on: '2027-01-01', added_by: 'test' }).returning('id').executeTakeFirstOrThrow();
        const sealed = await crypto.cipher.encryptBytes(trx, { table: 'compliance_documents', recordId: row.id, field: 'file' }, file);
        await trx.updateTable('compliance_documents').set({ file_ciphertext: sealed, file_sha256: Buffer.alloc(32, index), media_type: 'application/pdf', file_bytes: file.length }).where('id', '=', row.id).execute();
        ids.push(row.id);
      }
      await trx.updateTable('compliance_documents').set({ withdrawn_at: new Date(), withdrawn_by: 'test' }).where('id', '=', ids[0]!).execute();
      return ids;
    });
    // Another process that reserved a block under version 1 before the rotation, and keeps using it.
    const staleProcess = createFieldCipher(createKeyring(crypto.root));
    await handle().transaction((trx) => staleProcess.encrypt(trx, { table: 'x', recordId: 'warm-up', field: 'x' }, 'x'));
    const before = await handle().read((trx) => listUsers(trx, crypto.cipher, { limit: 1000 }));
    expect(before).toHaveLength(452);
    expect(await versionsIn('email_ciphertext')).toEqual([{ version: 1, n: 452 }]);

    const job = await handle().transaction((trx) => rotateTenantDataKey(trx, crypto.keyring, { type: 'operator' }));
    expect(job).toMatchObject({ targetVersion: 2, state: 'running', stepName: 'users.email_ciphertext' });
    await expect(handle().transaction((trx) => rotateTenantDataKey(trx, crypto.keyring, { type: 'operator' }))).rejects.toBeInstanceOf(RotationInProgressError);

    // Two batches, then the "process" stops; a fresh one (new keyring, nothing in memory) resumes.
    expect(await runRotationBatch(handle(), crypto, { settleMs: 0 })).toMatchObject({ reencrypted: 200, stepName: 'users.email_ciphertext' });
    expect(await runRotationBatch(handle(), crypto, { settleMs: 0 })).toMatchObject({ reencrypted: 400 });
    const keyring = createKeyring(crypto.root);
    const resumed = { keyring, cipher: createFieldCipher(keyring) };
    // Meanwhile: new users (under version 2), a changed name, and the stale process writing under version 1.
    const passed = [...before].sort((x, y) => (x.id < y.id ? -1 : 1))[0]!;
    const writes = handle().transaction(async (trx) => {
      for (let index = 0; index < 20; index += 1) await createUser(trx, resumed.cipher, { email: `late${index}@rotating.example`, displayName: `Late ${index}`, role: 'agent' });
      // …and the stale process rewrites a value the walk has passed already: only the sweep sees it.
      const rewritten = await staleProcess.encrypt(trx, { table: 'users', recordId: passed.id, field: 'email' }, passed.email);
      await trx.updateTable('users').set({ email_ciphertext: rewritten }).where('id', '=', passed.id).execute();
    });
    await writes;
    let current = await runRotationBatch(handle(), resumed, { settleMs: 0 });
    while (current?.state === 'running') current = await runRotationBatch(handle(), resumed, { settleMs: 0 });
    expect(current).toMatchObject({ state: 'done', stepName: 'done' });

    // Every value is under version 2 and reads as before.
    expect(await versionsIn('email_ciphertext')).toEqual([{ version: 2, n: 472 }]);
    expect(await versionsIn('display_name_ciphertext')).toEqual([{ version: 2, n: 472 }]);
    const after = await handle().read((trx) => listUsers(trx, resumed.cipher, { limit: 1000 }));
    const expected = new Map(before.map((user) => [user.id, { email: user.email, name: user.displayName }]));
    for (const user of after.filter((candidate) => expected.has(candidate.id))) {
      expect({ email: user.email, name: user.displayName }).toEqual(expected.get(user.id));
    }
    const subjectKeys = await db.superQuery('SELECT DISTINCT tenant_key_version FROM ringvakt.subject_keys WHERE tenant_id = $1', [tenant.tenantId]);
    expect(subjectKeys.rows).toEqual([{ tenant_key_version: 2 }]);
    const reread = await handle().read((trx) => Promise.all(personal.map((value, index) => resumed.cipher.decrypt(trx, { table: 'contacts', recordId: subjects[index]!, field: 'name' }, value, subjects[index]))));
    expect(reread).toEqual(subjects.map((subject) => `Subject ${subject}`));
    // The evidence files, withdrawn one too, are under version 2 and read back byte for byte.
    const sealedFiles = await db.superQuery<{ id: string; file_ciphertext: Buffer }>(`SELECT id, file_ciphertext FROM ringvakt.compliance_documents WHERE tenant_id = $1`, [tenant.tenantId]);
    expect(sealedFiles.rows.map((row) => row.file_ciphertext.readUInt32BE(4))).toEqual([2, 2, 2, 2, 2, 2]);
    const reopened = await handle().read((trx) => Promise.all(documentIds.map((id) => resumed.cipher.decryptBytes(trx, { table: 'compliance_documents', recordId: id, field: 'file' }, sealedFiles.rows.find((row) => row.id === id)!.file_ciphertext))));
    expect(reopened).toEqual(files);
    // Each value was re-encrypted once: 452 e-mails, 452 names, one stale write, 6 files, 5 subject keys.
    expect(current!.reencrypted).toBe(452 + 452 + 1 + 6 + 5);
    // The old version stays, retired, for backups taken before the rotation; the rotation is audited.
    const keys = await db.superQuery(`SELECT version, state FROM ringvakt.tenant_keys WHERE tenant_id = $1 AND purpose = 'data' ORDER BY version`, [tenant.tenantId]);
    expect(keys.rows).toEqual([{ version: 1, state: 'retired' }, { version: 2, state: 'active' }]);
    const audited = await db.superQuery(`SELECT count(*)::int AS n FROM ringvakt.audit_events WHERE tenant_id = $1 AND action = 'keys.rotate_tenant'`, [tenant.tenantId]);
    expect(audited.rows[0]!.n).toBe(1);
    expect((await handle().read((trx) => listRotationJobs(trx)))[0]).toMatchObject({ state: 'done', targetVersion: 2 });
  });

  it('waits before its final sweep until writers can no longer hold the old key', async () => {
    const other = await seedTenant(db.handles, 'rotating-slow');
    const otherDb = db.handles.forTenant(other.tenantId);
    await otherDb.transaction((trx) => rotateTenantDataKey(trx, crypto.keyring, { type: 'operator' }));
    let job = await runRotationBatch(otherDb, crypto);
    for (let round = 0; round < 2 * encryptedColumns.length + 4 && job?.stepName !== 'final sweep'; round += 1) job = await runRotationBatch(otherDb, crypto);
    expect(job).toMatchObject({ state: 'running', stepName: 'final sweep' });
    const waiting = await runRotationBatch(otherDb, crypto);
    expect(waiting).toMatchObject({ state: 'running', stepName: 'final sweep', sweepNotBefore: expect.any(Date) });
    expect(waiting!.sweepNotBefore!.getTime()).toBeGreaterThan(Date.now() + 50_000);
    // Once the window has passed, the sweep runs (a step per column and one for subject keys).
    const later = { now: () => Date.now() + 70_000 };
    let swept = await runRotationBatch(otherDb, crypto, later);
    for (let round = 0; round < encryptedColumns.length + 3 && swept?.state === 'running'; round += 1) swept = await runRotationBatch(otherDb, crypto, later);
    expect(swept).toMatchObject({ state: 'done' });
  });

  it('moves plaintext from before field encryption into ciphertext in the background', async () => {
    const legacy = await seedTenant(db.handles, 'legacy');
    await db.superQuery(
      `INSERT INTO ringvakt.users (tenant_id, id, email, display_name, role) VALUES ($1, 'bbbbbbbb-0000-4000-8000-000000000001', 'old.timer@legacy.example', 'Old Timer', 'agent')`,
      [legacy.tenantId],
    );
    const worker = startReencryptionWorker({ systemDb: db.handles.systemDb, crypto: db.handles.crypto, logger: createLogger('silent'), intervalMs: 60_000 });
    try {
      await worker.runOnce();
    } finally {
      await worker.stop();
    }
    const row = await db.superQuery<{ email: string | null; display_name: string | null; email_ciphertext: Buffer | null }>(
      `SELECT email, display_name, email_ciphertext FROM ringvakt.users WHERE id = 'bbbbbbbb-0000-4000-8000-000000000001'`,
    );
    expect(row.rows[0]).toMatchObject({ email: null, display_name: null, email_ciphertext: expect.any(Buffer) });
    const found = await db.handles.forTenant(legacy.tenantId).read((trx) => findUserByEmail(trx, crypto.cipher, 'Old.Timer@legacy.example'));
    expect(found).toMatchObject({ displayName: 'Old Timer', email: 'old.timer@legacy.example' });
  });

  it('skips and reports a value that no longer decrypts, and still finishes', async () => {
    const damaged = await seedTenant(db.handles, 'rotating-damaged');
    const damagedDb = db.handles.forTenant(damaged.tenantId);
    // A superuser flips a byte of the agent's encrypted name.
    await db.superQuery(
      `UPDATE ringvakt.users SET display_name_ciphertext = overlay(display_name_ciphertext placing '\\xff'::bytea from 20 for 1) WHERE id = $1`,
      [damaged.agent.id],
    );
    await damagedDb.transaction((trx) => rotateTenantDataKey(trx, crypto.keyring, { type: 'operator' }));
    const unreadable: string[] = [];
    let job = await runRotationBatch(damagedDb, crypto, { settleMs: 0, onUnreadable: (where) => unreadable.push(`${where.field} ${where.recordId}`) });
    for (let round = 0; round < 2 * encryptedColumns.length + 4 && job?.state === 'running'; round += 1) {
      job = await runRotationBatch(damagedDb, crypto, { settleMs: 0, onUnreadable: (where) => unreadable.push(`${where.field} ${where.recordId}`) });
    }
    expect(job).toMatchObject({ state: 'done', reencrypted: 3 }); // two e-mails and the owner's name
    // Reported in the walk and again in the sweep; never fatal.
    expect(new Set(unreadable)).toEqual(new Set([`display_name ${damaged.agent.id}`]));
  });
  it('stores a subject key wrapped before a rotation (a prepared import batch) under the new version', async () => {
    const other = await seedTenant(db.handles, 'prepared-keys');
    const tenantDb = db.handles.forTenant(other.tenantId);
    const subject = 'bbbbbbbb-0000-4000-8000-000000000001';
    const [prepared] = await tenantDb.transaction((trx) => crypto.keyring.wrapNewSubjectKeys(trx, [subject]));
    expect(prepared?.version).toBe(1);
    await tenantDb.transaction((trx) => rotateTenantDataKey(trx, crypto.keyring, { type: 'operator' }));
    await tenantDb.transaction((trx) => crypto.keyring.storeSubjectKeys(trx, prepared ? [prepared] : []));
    const stored = await db.superQuery<{ tenant_key_version: number }>(`SELECT tenant_key_version FROM ringvakt.subject_keys WHERE subject_id = $1`, [subject]);
    expect(stored.rows).toEqual([{ tenant_key_version: 2 }]);
    const opened = await tenantDb.read((trx) => crypto.keyring.subjectKeys(trx, [subject]));
    expect(prepared && opened.get(subject)?.equals(prepared.key)).toBe(true);
  });
});
