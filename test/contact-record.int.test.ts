import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../src/server/types.ts';
import type { TenantDb } from '../src/db/tenant-db.ts';
import { claimImport } from '../src/modules/imports/claim-import.ts';
import { runImport } from '../src/modules/imports/import-worker.ts';
import { emailIndex, newContactId, phoneIndex } from '../src/modules/contacts/contact-record.ts';
import { CHECKS_BY_ID } from '../src/compliance/checks.ts';
import { checkAtDialTime } from '../src/dialer/dial-checks.ts';
import { addSuppression, findMatches } from '../src/modules/suppression/suppression.service.ts';
import { bearer, buildTestApp, PUBLIC_URL, uploadImportFile } from './support/app.ts';
import { createTestDatabase, serverLabel, type TestDatabase } from './support/database.ts';
import { seedTenant, type SeededTenant } from './support/seed.ts';
import { registerPersonalData } from './support/canary.ts';

const NAME = 'Ola Legacy-Record';
const EMAIL = 'ola.legacy@record.example';
registerPersonalData(NAME, EMAIL, '+4791230077', '91230077', 'Ola Moved-Record');

/**
 * A contact's personal values are sealed as one record (migration 0028). Contacts written before
 * keep them in one ciphertext per value: every reader still opens those — reveal, search by number
 * and e-mail, an import's dedupe — and an edit moves such a contact to the record.
 */
describe(`contact records and contacts written before them (${serverLabel()} server)`, () => {
  let db: TestDatabase;
  let app: App;
  let a: SeededTenant;
  let tenantDb: TenantDb;
  let crypto: Awaited<ReturnType<TestDatabase['handles']['crypto']>>;
  let legacyId = '';

  const call = (method: string, url: string, payload?: unknown) =>
    app.inject({ method: method as 'GET', url, headers: { ...bearer(a.owner.token), origin: PUBLIC_URL }, ...(payload !== undefined ? { payload: payload as Record<string, unknown> } : {}) });
  /** The contact as its owner sees it (name, notes) with its numbers and e-mail revealed. */
  const reveal = async (id: string) => {
    const view = await call('GET', `/api/v1/contacts/${id}`);
    expect(view.statusCode, view.body).toBe(200);
    const revealed = await call('POST', `/api/v1/contacts/${id}/reveal`, { fields: ['phones', 'email'], reason: 'format check' });
    expect(revealed.statusCode, revealed.body).toBe(200);
    const { name, notes } = view.json() as { name: string; notes: string };
    return { name, notes, ...(revealed.json() as { phones: { kind: string; number: string }[]; email: string }) };
  };
  const stored = async (id: string) =>
    (
      await db.superQuery<{ record_ciphertext: Buffer | null; name_ciphertext: Buffer | null; email_ciphertext: Buffer | null; notes_ciphertext: Buffer | null; numbers: (Buffer | null)[] }>(
        `SELECT c.record_ciphertext, c.name_ciphertext, c.email_ciphertext, c.notes_ciphertext,
                (SELECT array_agg(p.number_ciphertext ORDER BY p.position) FROM ringvakt.contact_phones p WHERE p.contact_id = c.id) AS numbers
           FROM ringvakt.contacts c WHERE c.id = $1`,
        [id],
      )
    ).rows[0];

  beforeAll(async () => {
    db = await createTestDatabase();
    a = await seedTenant(db.handles, 'record-a');
    tenantDb = db.handles.forTenant(a.tenantId);
    crypto = await db.handles.crypto();
    app = await buildTestApp(db);
    // A contact as this version's predecessors wrote it: one ciphertext per value, the number in its phone row.
    legacyId = newContactId();
    await tenantDb.transaction(async (trx) => {
      const key = await crypto.keyring.subjectKey(trx, legacyId, { create: true });
      if (!key) throw new Error('no subject key');
      const seal = (field: string, value: string) => crypto.cipher.encryptForSubject(a.tenantId, { table: 'contacts', recordId: legacyId, field }, value, key);
      await trx
        .insertInto('contacts')
        .values({
          id: legacyId,
          external_id: 'legacy-1',
          name_ciphertext: seal('name', NAME),
          email_ciphertext: seal('email', EMAIL),
          email_index: await emailIndex(crypto.cipher, trx, EMAIL),
          notes_ciphertext: seal('notes', 'Prefers mornings'),
          fields: '{}',
          time_zones: ['Europe/Oslo'],
        })
        .execute();
      await trx
        .insertInto('contact_phones')
        .values({ contact_id: legacyId, position: 0, kind: 'mobile', number_ciphertext: seal('phone.0', '+4791230077'), number_index: await phoneIndex(crypto.cipher, trx, '+4791230077') })
        .execute();
    });
  });
  afterAll(async () => {
    await app?.close();
    await db?.drop();
  });

  it('writes a new contact as one sealed record, bound to the contact and the field', async () => {
    const created = await call('POST', '/api/v1/contacts', { name: 'Record Person', phones: [{ kind: 'mobile', number: '+4791230078' }, { kind: 'work', number: '+4722330078' }], email: 'record.person@record.example' });
    expect(created.statusCode, created.body).toBe(201);
    const id = created.json().id as string;
    const row = await stored(id);
    expect(row?.record_ciphertext).toBeInstanceOf(Buffer);
    expect([row?.name_ciphertext, row?.email_ciphertext, row?.notes_ciphertext]).toEqual([null, null, null]);
    expect(row?.numbers).toEqual([null, null]);
    expect(await reveal(id)).toMatchObject({ name: 'Record Person', phones: [{ kind: 'mobile', number: '+4791230078' }, { kind: 'work', number: '+4722330078' }], email: 'record.person@record.example' });

    // The record holds every number: a phone row gone hides none of them (only its kind is lost),
    // and the rows left are still found by their own number, whatever positions are missing.
    await db.superQuery(`DELETE FROM ringvakt.contact_phones WHERE contact_id = $1 AND position = 0`, [id]);
    expect((await reveal(id)).phones).toEqual([{ kind: 'other', number: '+4791230078' }, { kind: 'work', number: '+4722330078' }]);
    const byWork = await call('POST', '/api/v1/contacts/search', { phone: '+4722330078' });
    expect((byWork.json().items as { id: string }[]).map((contact) => contact.id)).toEqual([id]);

    // A well-formed record sealed for another field of the same contact, under its own key, does not
    // open as its record (the field is bound in); nor does one sealed for another contact.
    const forged = JSON.stringify({ v: 1, name: 'Forged Name' });
    const sealedFor = async (contactId: string, field: string, keyOf: string) =>
      tenantDb.transaction(async (trx) => {
        const key = await crypto.keyring.subjectKey(trx, keyOf, { create: false });
        if (!key) throw new Error('no subject key');
        return crypto.cipher.encryptForSubject(a.tenantId, { table: 'contacts', recordId: contactId, field }, forged, key);
      });
    for (const [target, ciphertext] of [
      [legacyId, await sealedFor(legacyId, 'name', legacyId)],
      [id, await sealedFor(legacyId, 'record', id)],
    ] as const) {
      const before = (await stored(target))?.record_ciphertext ?? null;
      await db.superQuery(`UPDATE ringvakt.contacts SET record_ciphertext = $2 WHERE id = $1`, [target, ciphertext]);
      const refused = await call('GET', `/api/v1/contacts/${target}`);
      expect(refused.statusCode).toBe(500);
      expect(refused.body).not.toContain('Forged');
      await db.superQuery(`UPDATE ringvakt.contacts SET record_ciphertext = $2 WHERE id = $1`, [target, before]);
    }
    // Sealed for the record field of its own contact, the same value opens: the refusals above are the binding's.
    const genuine = await sealedFor(id, 'record', id);
    const before = (await stored(id))?.record_ciphertext ?? null;
    await db.superQuery(`UPDATE ringvakt.contacts SET record_ciphertext = $2 WHERE id = $1`, [id, genuine]);
    expect((await call('GET', `/api/v1/contacts/${id}`)).json()).toMatchObject({ name: 'Forged Name' });
    await db.superQuery(`UPDATE ringvakt.contacts SET record_ciphertext = $2 WHERE id = $1`, [id, before]);
  });

  it('fails the encryption check for a phone row whose number is neither in the row nor in a record', async () => {
    const check = CHECKS_BY_ID.get('encryption.personal_data');
    if (!check) throw new Error('no such check');
    const run = () => tenantDb.read((trx) => check.run(trx, new Date(), { crypto }));
    const created = await call('POST', '/api/v1/contacts', { name: 'Numberless Record', phones: [{ kind: 'mobile', number: '+4791230080' }] });
    const id = created.json().id as string;
    expect((await run()).status).toBe('pass');
    const record = (await stored(id))?.record_ciphertext ?? null;
    await db.superQuery(`UPDATE ringvakt.contacts SET record_ciphertext = NULL WHERE id = $1`, [id]);
    expect(await run()).toMatchObject({ status: 'fail', sample: expect.arrayContaining([`contact_phones:${id}`]) });
    await db.superQuery(`UPDATE ringvakt.contacts SET record_ciphertext = $2 WHERE id = $1`, [id, record]);
    expect((await run()).status).toBe('pass');
  });

  it('reveals and finds a contact written before the record, by number and by e-mail', async () => {
    expect(await reveal(legacyId)).toMatchObject({ name: NAME, phones: [{ kind: 'mobile', number: '+4791230077' }], email: EMAIL, notes: 'Prefers mornings' });
    for (const query of [{ phone: '+47 912 30 077' }, { email: EMAIL.toUpperCase() }, { phone: '91230077', region: 'NO', email: EMAIL }]) {
      const found = await call('POST', '/api/v1/contacts/search', query);
      expect(found.statusCode, found.body).toBe(200);
      expect((found.json().items as { id: string }[]).map((contact) => contact.id)).toEqual([legacyId]);
    }
  });

  it("dedupes an import against a contact written before the record, by its number and by its e-mail", async () => {
    const list = (await call('POST', '/api/v1/lists', { name: 'Record list', defaultRegion: 'NO' })).json().id as string;
    const created = await call('POST', '/api/v1/contact-imports', { listId: list, mapping: { Navn: 'name', Mobil: 'phone', Epost: 'email' }, onExisting: 'link' });
    expect(created.statusCode, created.body).toBe(201);
    const importId = created.json().id as string;
    const uploaded = await uploadImportFile(app, a.owner.token, importId, `Navn,Mobil,Epost\nBy Number,91230077,\nBy Email,,${EMAIL}\nSomeone New,91230079,\n`);
    expect(uploaded.statusCode, uploaded.body).toBe(202);
    expect(await claimImport(tenantDb, 'record-worker', importId)).toBe(importId);
    await runImport(tenantDb, crypto, importId, 'record-worker', { batchRows: 2 });
    const view = (await call('GET', `/api/v1/contact-imports/${importId}`)).json() as { created: number; linked: number; rejected: number };
    // The first row finds the contact by its number, the second by its e-mail: both link it; only the third is new.
    expect(view, JSON.stringify(view)).toMatchObject({ created: 1, linked: 2, rejected: 0 });
    const members = await db.superQuery<{ contact_id: string }>(`SELECT contact_id FROM ringvakt.contact_list_members WHERE list_id = $1`, [list]);
    expect(members.rows.map((row) => row.contact_id)).toContain(legacyId);
  });

  it("dials a contact written before the record by its number, refuses it once that number is suppressed, suppresses its number and e-mail when it objects, and its number when an agent files do-not-call", async () => {
    const campaignId = await tenantDb.transaction(
      async (trx) => (await trx.insertInto('campaigns').values({ name: 'Record dialer', caller_id: '+4721000000', mode: 'progressive' }).returning('id').executeTakeFirstOrThrow()).id,
    );
    const context = { campaignId, purpose: 'sales' as const, maxAttempts: 3, windows: [], requiresLawfulBasis: false };
    const attempt = { id: '00000000-0000-7000-8000-000000000001', contactId: legacyId, attempt: 1, dials: 0 };
    const verdict = () => tenantDb.transaction(async (trx) => (await checkAtDialTime(trx, crypto, context, [attempt], new Date())).get(attempt.id));
    // The number comes from the phone row's own ciphertext (the contact has no record).
    expect(await verdict()).toEqual({ ok: true, number: '+4791230077', position: 0, checks: ['status', 'attempts', 'window', 'consent', 'number', 'suppression'] });

    // Suppressed tenant-wide: refused, and the match recorded against the contact.
    await tenantDb.transaction((trx) => addSuppression(trx, crypto, { channel: 'phone', value: '+4791230077', scope: 'tenant', reason: 'request', source: 'test', createdBy: 'test' }));
    expect(await verdict()).toEqual({ ok: false, reason: 'suppression', checks: ['status', 'attempts', 'window', 'consent', 'number'], retryAt: null });
    const matches = await db.superQuery<{ n: number }>(`SELECT count(*)::int AS n FROM ringvakt.suppression_matches WHERE contact_id = $1 AND context = 'dial' AND campaign_id = $2`, [legacyId, campaignId]);
    expect(matches.rows[0]!.n).toBe(1);
    await db.superQuery(`DELETE FROM ringvakt.suppressions WHERE source = 'test'`);
    expect((await verdict())?.ok).toBe(true);

    // An objection to sales calls suppresses the number and the e-mail address read from the old
    // form at once; the dialer then refuses the contact, and the compliance check finds the objector
    // suppressed — until its number's entry is gone.
    const objected = await call('POST', `/api/v1/contacts/${legacyId}/consents`, { purpose: 'sales', action: 'object', source: 'phone call' });
    expect(objected.statusCode, objected.body).toBe(201);
    const entries = await db.superQuery<{ channel: string }>(`SELECT channel FROM ringvakt.suppressions WHERE contact_id = $1 AND reason = 'objection' AND scope = 'tenant' ORDER BY channel`, [legacyId]);
    expect(entries.rows.map((row) => row.channel)).toEqual(['email', 'phone']);
    expect(await verdict()).toMatchObject({ ok: false, reason: 'consent' });
    const check = CHECKS_BY_ID.get('privacy.objections_suppressed');
    if (!check) throw new Error('no such check');
    // In a snapshot, as the evidence run gives every check (this one reads through a cursor).
    const run = () => tenantDb.snapshot((trx) => check.run(trx, new Date(), { crypto }));
    expect(await run()).toMatchObject({ status: 'pass' });
    await db.superQuery(`DELETE FROM ringvakt.suppressions WHERE contact_id = $1 AND channel = 'phone'`, [legacyId]);
    expect(await run()).toMatchObject({ status: 'fail', sample: expect.arrayContaining([legacyId]) });

    // An agent files "do not call" on a call to the contact: the number dialed, read from the old
    // form, goes on the do-not-call list at once — and the objector is suppressed again.
    const attemptId = randomUUID();
    await tenantDb.transaction(async (trx) => {
      await trx.insertInto('campaign_contacts').values({ campaign_id: campaignId, contact_id: legacyId, state: 'reserved', attempts: 1, dials: 1 }).execute();
      await trx
        .insertInto('dial_attempts')
        .values({ id: attemptId, campaign_id: campaignId, contact_id: legacyId, attempt: 1, dialer: 'test', state: 'ended', agent_id: a.agent.id, phone_position: 0, dialed_at: new Date(), outcome: 'live', ended_at: new Date() })
        .execute();
    });
    const filed = await app.inject({ method: 'POST', url: `/api/v1/agent/calls/${attemptId}/disposition`, headers: { ...bearer(a.agent.token), origin: PUBLIC_URL }, payload: { code: 'do_not_call' } });
    expect(filed.statusCode, filed.body).toBe(200);
    const listed = await tenantDb.read((trx) => findMatches(trx, crypto, 'phone', '+4791230077'));
    expect(listed.map((match) => [match.reason, match.scope])).toEqual([['request', 'tenant']]);
    const entry = await db.superQuery<{ contact_id: string }>(`SELECT contact_id FROM ringvakt.suppressions WHERE id = $1`, [listed[0]!.id]);
    expect(entry.rows[0]?.contact_id).toBe(legacyId);
    expect(await run()).toMatchObject({ status: 'pass' });
  });

  it('moves a contact written before the record to it when the contact is edited', async () => {
    const edited = await call('PATCH', `/api/v1/contacts/${legacyId}`, { name: 'Ola Moved-Record' });
    expect(edited.statusCode, edited.body).toBe(200);
    const row = await stored(legacyId);
    expect(row?.record_ciphertext).toBeInstanceOf(Buffer);
    expect([row?.name_ciphertext, row?.email_ciphertext, row?.notes_ciphertext]).toEqual([null, null, null]);
    expect(row?.numbers).toEqual([null]);
    expect(await reveal(legacyId)).toMatchObject({ name: 'Ola Moved-Record', phones: [{ kind: 'mobile', number: '+4791230077' }], email: EMAIL, notes: 'Prefers mornings' });
    const found = await call('POST', '/api/v1/contacts/search', { phone: '+4791230077' });
    expect((found.json().items as { id: string }[]).map((contact) => contact.id)).toEqual([legacyId]);
  });

  it('erases a contact held as a record: the record is cleared with its key', async () => {
    const erased = await call('DELETE', `/api/v1/contacts/${legacyId}`);
    expect(erased.statusCode, erased.body).toBe(204);
    const row = await stored(legacyId);
    expect(row?.record_ciphertext).toBeNull();
    expect(row?.numbers).toBeNull();
    // The database refuses an erased contact that keeps a record.
    await expect(db.superQuery(`UPDATE ringvakt.contacts SET record_ciphertext = '\\x5256' WHERE id = $1`, [legacyId])).rejects.toThrow(/contacts_erased_record/);
  });
});
