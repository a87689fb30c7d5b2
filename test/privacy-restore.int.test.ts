import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createContact, loadContacts } from '../src/modules/contacts/contacts.service.ts';
import { findContactIdsByPhone } from '../src/modules/contacts/contact-search.ts';
import { eraseSubject, fileLedgerMirror, readLedgerFile } from '../src/privacy/erasure.ts';
import { recordAuditEvent } from '../src/audit/audit-event.ts';
import { BackupError, restoreBackup, writeBackup } from '../src/backup/logical-backup.ts';
import { createTestDatabase, serverLabel, type TestDatabase } from './support/database.ts';
import { seedTenant, type SeededTenant } from './support/seed.ts';
import { registerPersonalData } from './support/canary.ts';

describe(`backup, erasure, restore: the subject stays gone (${serverLabel()} server)`, () => {
  const env = { RINGVAKT_KEY_PROVIDER: 'env', RINGVAKT_ROOT_KEY: randomBytes(32).toString('base64') };
  let source: TestDatabase;
  let tenant: SeededTenant;
  let folder: string;
  const extra: TestDatabase[] = [];

  beforeAll(async () => {
    source = await createTestDatabase({ env });
    tenant = await seedTenant(source.handles, 'restore-a');
    folder = mkdtempSync(path.join(os.tmpdir(), 'ringvakt-restore-'));
    registerPersonalData('Kari Slettet', 'Per Bevart', '4791111111', '4792222222', 'Kari sin samtale');
  });
  afterAll(async () => {
    for (const database of extra) await database.drop();
    await source?.drop();
    rmSync(folder, { recursive: true, force: true });
  });

  it('replays the erasure ledger on a restore from a backup taken before the erasure', async () => {
    const crypto = await source.handles.crypto();
    const tenantDb = source.handles.forTenant(tenant.tenantId);
    const { kari, per } = await tenantDb.transaction(async (trx) => {
      const kari = await createContact(trx, crypto, { name: 'Kari Slettet', phones: [{ kind: 'mobile', number: '+4791111111' }] }, { defaultRegion: 'NO' });
      const per = await createContact(trx, crypto, { name: 'Per Bevart', phones: [{ kind: 'mobile', number: '+4792222222' }] }, { defaultRegion: 'NO' });
      const campaign = await trx.insertInto('campaigns').values({ name: 'Restore' }).returning('id').executeTakeFirstOrThrow();
      const attemptId = randomUUID();
      const notes = await crypto.cipher.encrypt(trx, { table: 'dial_attempts', recordId: attemptId, field: 'notes' }, 'Kari sin samtale', kari.id);
      await trx.insertInto('dial_attempts').values({ id: attemptId, campaign_id: campaign.id, contact_id: kari.id, attempt: 1, dialer: 'test', state: 'ended', outcome: 'live', notes_ciphertext: notes }).execute();
      return { kari: kari.id, per: per.id };
    });

    // The backup, then the erasure (mirrored to the ledger file kept apart from the database).
    const backupFile = path.join(folder, 'before.rvbk');
    const ledgerFile = path.join(folder, 'erasure-ledger.jsonl');
    const written = await writeBackup(source.url, backupFile, crypto.root);
    expect(written.manifest.tables.find((table) => table.table === 'contacts')?.rows).toBe(2);
    // The file holds no readable personal data and no key.
    const raw = readFileSync(backupFile);
    for (const value of ['Kari', '4791111111', 'contacts']) expect(raw.includes(Buffer.from(value))).toBe(false);
    await tenantDb.transaction((trx) => eraseSubject(trx, crypto, kari, { reason: 'request', mirror: fileLedgerMirror(ledgerFile) }));

    // Restore into an empty database of the same schema, with the same root key.
    const target = await createTestDatabase({ env });
    extra.push(target);
    // Without the ledger the backup brings Kari back, readable: shown on a first target.
    const bare = await createTestDatabase({ env });
    extra.push(bare);
    await restoreBackup(bare.url, backupFile, crypto.root, []);
    const bareCrypto = await bare.handles.crypto();
    const resurrected = await bare.handles.forTenant(tenant.tenantId).read((trx) => loadContacts(trx, bareCrypto, [kari]));
    expect(resurrected.get(kari)?.data.name).toBe('Kari Slettet');

    // With the ledger, replayed inside the restore's transaction, she stays erased.
    const restored = await restoreBackup(target.url, backupFile, crypto.root, readLedgerFile(ledgerFile));
    expect(restored.manifest).toEqual(written.manifest);
    expect(restored.replay).toEqual({ entries: 1, reErased: 1, ledgerRestored: 1, otherTenants: 0 });
    const targetCrypto = await target.handles.crypto();
    const targetDb = target.handles.forTenant(tenant.tenantId);
    const after = await targetDb.read(async (trx) => ({
      contacts: await loadContacts(trx, targetCrypto, [kari, per]),
      byPhone: await findContactIdsByPhone(trx, targetCrypto, '+4791111111'),
      key: await trx.selectFrom('subject_keys').select(['wrapped_key']).where('subject_id', '=', kari).executeTakeFirstOrThrow(),
      notes: await trx.selectFrom('dial_attempts').select('notes_ciphertext').where('contact_id', '=', kari).executeTakeFirstOrThrow(),
      ledger: await trx.selectFrom('erasure_ledger').select('subject_id').execute(),
    }));
    expect(after.contacts.get(kari)?.row.status).toBe('erased');
    expect(after.contacts.get(kari)?.data.name).toBeNull();
    expect(after.byPhone).toEqual([]);
    expect(after.key.wrapped_key).toBeNull();
    expect(after.notes.notes_ciphertext).toBeNull();
    expect(after.ledger).toEqual([{ subject_id: kari }]);
    // Everyone else is back as they were, readable with the same root key.
    expect(after.contacts.get(per)?.data).toMatchObject({ name: 'Per Bevart', phones: [{ e164: '+4792222222' }] });
    // New rows after the restore get new identity values (sequences continue after the restored rows).
    const maxBefore = await target.superQuery<{ max: string }>('SELECT max(id) AS max FROM ringvakt.audit_events');
    await targetDb.transaction((trx) => recordAuditEvent(trx, { action: 'contact.erase', outcome: 'success', actor: { type: 'operator', id: 'restore-test' }, target: { type: 'contact', id: kari }, details: {} }));
    const maxAfter = await target.superQuery<{ max: string }>('SELECT max(id) AS max FROM ringvakt.audit_events');
    expect(BigInt(maxAfter.rows[0]?.max ?? 0)).toBe(BigInt(maxBefore.rows[0]?.max ?? 0) + 1n);
    // A restore into a database that holds data is refused.
    await expect(restoreBackup(target.url, backupFile, crypto.root, [])).rejects.toThrow(/empty database/);
  });

  it('refuses an altered or truncated backup, and leaves the target untouched', async () => {
    const crypto = await source.handles.crypto();
    const backupFile = path.join(folder, 'whole.rvbk');
    await writeBackup(source.url, backupFile, crypto.root);
    const bytes = readFileSync(backupFile);
    // A role that row-level security restricts would back up only some rows: refused.
    await expect(writeBackup(source.runtimeUrl, path.join(folder, 'partial.rvbk'), crypto.root)).rejects.toThrow(/sees every row/);
    const target = await createTestDatabase({ env });
    extra.push(target);
    const altered = Buffer.from(bytes);
    altered[altered.length - 40] = (altered[altered.length - 40] ?? 0) ^ 1;
    writeFileSync(path.join(folder, 'altered.rvbk'), altered);
    await expect(restoreBackup(target.url, path.join(folder, 'altered.rvbk'), crypto.root, [])).rejects.toThrow(BackupError);
    // The header is bound too: a changed creation time (same length) breaks the first frame.
    const header = Buffer.from(bytes);
    const at = header.indexOf(Buffer.from('"createdAt":"')) + '"createdAt":"'.length;
    header[at + 3] = header[at + 3] === 0x30 ? 0x31 : 0x30;
    writeFileSync(path.join(folder, 'header.rvbk'), header);
    await expect(restoreBackup(target.url, path.join(folder, 'header.rvbk'), crypto.root, [])).rejects.toThrow(/altered/);
    // Cut anywhere — inside a table's data, between frames, before the manifest: refused, nothing kept.
    for (const share of [0.3, 0.5, 0.9, 0.999]) {
      writeFileSync(path.join(folder, 'cut.rvbk'), bytes.subarray(0, Math.floor(bytes.length * share)));
      await expect(restoreBackup(target.url, path.join(folder, 'cut.rvbk'), crypto.root, [])).rejects.toThrow(/truncated|altered/);
    }
    const tenants = await target.superQuery<{ n: string }>('SELECT count(*) AS n FROM ringvakt.tenants');
    expect(Number(tenants.rows[0]?.n)).toBe(0);
    // The intact file still restores into the same, untouched database.
    // An entry of a tenant the backup does not hold is counted, not a failure.
    const stranger = { v: 1 as const, tenantId: randomUUID(), subjectId: randomUUID(), identifierHashes: [], method: 'crypto_shredding' as const, reason: 'request' as const, requestId: null, erasedAt: new Date().toISOString() };
    const whole = await restoreBackup(target.url, backupFile, crypto.root, [stranger]);
    expect(whole.rows).toBeGreaterThan(10);
    expect(whole.replay).toEqual({ entries: 1, reErased: 0, ledgerRestored: 0, otherTenants: 1 });
  });
});
