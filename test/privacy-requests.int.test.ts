import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { strFromU8, unzipSync } from 'fflate';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../src/server/types.ts';
import { permissions } from '../src/modules/access/permissions.ts';
import { issueApiToken } from '../src/modules/api-tokens/api-tokens.service.ts';
import { createUser } from '../src/modules/users/users.repo.ts';
import { createContact } from '../src/modules/contacts/contacts.service.ts';
import { recordingSaved, recordingStarted } from '../src/dialer/call-recording.ts';
import { fileLedgerMirror, readLedgerFile } from '../src/privacy/erasure.ts';
import { addMonths } from '../src/privacy/requests.ts';
import { bearer, buildTestApp, PUBLIC_URL } from './support/app.ts';
import { createTestDatabase, serverLabel, type TestDatabase } from './support/database.ts';
import { seedTenant, type SeededTenant } from './support/seed.ts';
import { registerPersonalData } from './support/canary.ts';

describe(`data-subject requests (${serverLabel()} server)`, () => {
  let db: TestDatabase;
  let app: App;
  let tenant: SeededTenant;
  let officer: { id: string; token: string };
  let folder: string;
  let ledgerFile: string;
  let contactId: string;
  let campaignId: string;
  const audio = Buffer.concat([Buffer.from('RIFF'), Buffer.alloc(400, 7)]);

  beforeAll(async () => {
    db = await createTestDatabase();
    tenant = await seedTenant(db.handles, 'privacy-a');
    folder = mkdtempSync(path.join(os.tmpdir(), 'ringvakt-privacy-'));
    ledgerFile = path.join(folder, 'erasure-ledger.jsonl');
    app = await buildTestApp(db, { erasureMirror: fileLedgerMirror(ledgerFile) });
    const crypto = await db.handles.crypto();
    const tenantDb = db.handles.forTenant(tenant.tenantId);
    registerPersonalData('Replied from the address on file', 'admin@privacy-a.example', 'dpo@privacy-a.example', 'Kari Nordmann', 'kari@example.no', 'Storgata 1', 'Ringte om forsikring', 'Ola Requester');
    officer = await tenantDb.transaction(async (trx) => {
      const user = await createUser(trx, crypto.cipher, { email: 'dpo@privacy-a.example', displayName: 'The DPO', role: 'privacy_officer' });
      await trx.updateTable('users').set({ status: 'active' }).where('id', '=', user.id).execute();
      const { token } = await issueApiToken(trx, tenant.tenantId, { userId: user.id, name: 'dpo', expiresAt: new Date(Date.now() + 3_600_000), scopes: permissions });
      return { id: user.id, token };
    });
    // The subject: a contact with a call, the agent's notes and a recording.
    ({ contactId, campaignId } = await tenantDb.transaction(async (trx) => {
      const contact = await createContact(trx, crypto, { name: 'Kari Nordmann', email: 'kari@example.no', phones: [{ kind: 'mobile', number: '+4791234567' }], notes: 'Storgata 1' }, { defaultRegion: 'NO' });
      const campaign = await trx.insertInto('campaigns').values({ name: 'Forsikring' }).returning('id').executeTakeFirstOrThrow();
      const attemptId = randomUUID();
      const notes = await crypto.cipher.encrypt(trx, { table: 'dial_attempts', recordId: attemptId, field: 'notes' }, 'Ringte om forsikring', contact.id);
      await trx.insertInto('dial_attempts').values({ id: attemptId, campaign_id: campaign.id, contact_id: contact.id, attempt: 1, dialer: 'test', state: 'ended', outcome: 'live', dialed_at: new Date(), ended_at: new Date(), talk_ms: 30_000, disposition: 'sale', notes_ciphertext: notes }).execute();
      await recordingStarted(trx, { attemptId, campaignId: campaign.id, contactId: contact.id, at: new Date() });
      await recordingSaved(trx, crypto, { attemptId, contactId: contact.id, audio, at: new Date(), durationMs: 30_000 });
      return { contactId: contact.id, campaignId: campaign.id };
    }));
  });
  afterAll(async () => {
    await app?.close();
    await db?.drop();
    rmSync(folder, { recursive: true, force: true });
  });

  const as = (token: string) => (method: string, url: string, payload?: unknown) =>
    app.inject({ method: method as 'GET', url, headers: { ...bearer(token), origin: PUBLIC_URL }, ...(payload !== undefined ? { payload: payload as Record<string, unknown> } : {}) });

  const intake = (kind: string, identifiers: Record<string, string>) => ({ kind, channel: 'email', requester: { name: 'Ola Requester', email: 'kari@example.no' }, identifiers });

  it('answers intake alike whether or not the subject exists, refuses duplicates, and keeps agents and administrators out', async () => {
    const dpo = as(officer.token);
    const known = await dpo('POST', '/api/v1/privacy/requests', intake('access', { phone: '91 23 45 67' }));
    const unknown = await dpo('POST', '/api/v1/privacy/requests', intake('access', { phone: '+4799999999' }));
    expect(known.statusCode).toBe(201);
    expect(unknown.statusCode).toBe(201);
    const shape = (body: Record<string, unknown>) => ({ ...body, id: 'x', reference: 'x', receivedAt: 'x', dueAt: 'x' });
    expect(shape(known.json())).toEqual(shape(unknown.json()));
    expect(known.json()).toMatchObject({ status: 'received', subjectsFound: null, overdue: false, extensionMonths: 0 });
    // Due one calendar month after receipt.
    const body = known.json() as { receivedAt: string; dueAt: string; reference: string };
    expect(body.dueAt).toBe(addMonths(new Date(body.receivedAt), 1).toISOString());
    expect(body.reference).toMatch(/^DSR-\d{4}-\d{4}$/);
    // The same request again, in another written form of the number: a duplicate.
    const again = await dpo('POST', '/api/v1/privacy/requests', intake('access', { phone: '+47 912 34 567' }));
    expect(again.statusCode).toBe(409);
    expect(again.json()).toMatchObject({ code: 'request_duplicate' });
    expect(again.body).not.toContain('91234567');
    // Bad identifiers: clear errors, nothing recorded.
    expect((await dpo('POST', '/api/v1/privacy/requests', intake('access', {}))).json()).toMatchObject({ code: 'validation_failed' });
    expect((await dpo('POST', '/api/v1/privacy/requests', intake('access', { phone: '12' }))).json()).toMatchObject({ code: 'phone_invalid' });
    // Agents and the tenant's administrators (the owner aside) cannot act on requests.
    expect((await as(tenant.agent.token)('POST', '/api/v1/privacy/requests', intake('erasure', { phone: '+4791234567' }))).statusCode).toBe(403);
    expect((await as(tenant.agent.token)('GET', '/api/v1/privacy/requests')).statusCode).toBe(403);
    const list = await dpo('GET', '/api/v1/privacy/requests');
    expect((list.json() as { items: unknown[] }).items).toHaveLength(2);
    // 31 January + 1 month is the last day of February.
    expect(addMonths(new Date('2027-01-31T10:00:00Z'), 1).toISOString()).toBe('2027-02-28T10:00:00.000Z');
    expect(addMonths(new Date('2028-01-31T10:00:00Z'), 3).toISOString()).toBe('2028-04-30T10:00:00.000Z');
  });

  it('exports everything about a verified subject in an encrypted bundle that downloads once', async () => {
    const dpo = as(officer.token);
    const created = (await dpo('POST', '/api/v1/privacy/requests', intake('portability', { email: 'KARI@example.no' }))).json() as { id: string };
    expect((await dpo('POST', `/api/v1/privacy/requests/${created.id}/export`)).json()).toMatchObject({ code: 'request_not_verified' });
    const verified = await dpo('POST', `/api/v1/privacy/requests/${created.id}/verify`, { method: 'known_channel', note: 'Replied from the address on file' });
    expect(verified.json()).toMatchObject({ status: 'verified', subjectsFound: 1, verificationMethod: 'known_channel' });
    const exported = await dpo('POST', `/api/v1/privacy/requests/${created.id}/export`);
    expect(exported.statusCode).toBe(201);
    const { token, exportId, files } = exported.json() as { token: string; exportId: string; files: number };
    expect(files).toBe(6); // README, request, profile, calls, consents, one recording
    // The stored bundle is sealed with the token's key: the database holds no readable copy.
    const stored = await db.handles.forTenant(tenant.tenantId).read((trx) => trx.selectFrom('privacy_exports').select(['bundle_sealed', 'token_sha256']).where('id', '=', exportId).executeTakeFirstOrThrow());
    expect(stored.bundle_sealed?.includes(Buffer.from('Kari'))).toBe(false);
    expect(stored.token_sha256.toString('base64url')).not.toBe(token);

    const download = await app.inject({ method: 'POST', url: '/api/v1/privacy/downloads', headers: { origin: PUBLIC_URL }, payload: { token } });
    expect(download.statusCode).toBe(200);
    expect(download.headers['content-type']).toBe('application/zip');
    const zip = unzipSync(new Uint8Array(download.rawPayload));
    const profile = JSON.parse(strFromU8(zip[`subjects/${contactId}/profile.json`]!)) as { schema: string; contact: { name: string; email: string; phones: { e164: string }[]; notes: string }; calls: { notes: string; recording: boolean; campaign: string }[] };
    expect(profile.schema).toBe('ringvakt-subject-export/v1');
    expect(profile.contact).toMatchObject({ name: 'Kari Nordmann', email: 'kari@example.no', phones: [{ e164: '+4791234567', kind: 'mobile' }], notes: 'Storgata 1' });
    expect(profile.calls).toEqual([expect.objectContaining({ campaign: 'Forsikring', notes: 'Ringte om forsikring', recording: true })]);
    expect(strFromU8(zip[`subjects/${contactId}/calls.csv`]!)).toContain('"Ringte om forsikring"');
    const wav = Object.keys(zip).find((name) => name.endsWith('.wav'));
    expect(wav && Buffer.from(zip[wav]!).equals(audio)).toBe(true);
    expect(strFromU8(zip['README.txt']!)).toContain('ringvakt-subject-export/v1');

    // Single use: the second try gets the same answer as a made-up token; the ciphertext is gone.
    const second = await app.inject({ method: 'POST', url: '/api/v1/privacy/downloads', headers: { origin: PUBLIC_URL }, payload: { token } });
    expect(second.statusCode).toBe(410);
    expect(second.json()).toMatchObject({ code: 'download_link_invalid' });
    const madeUp = await app.inject({ method: 'POST', url: '/api/v1/privacy/downloads', headers: { origin: PUBLIC_URL }, payload: { token: 'A'.repeat(43) } });
    expect(madeUp.json()).toEqual({ ...(second.json() as object), requestId: madeUp.json().requestId });
    const after = await db.handles.forTenant(tenant.tenantId).read((trx) => trx.selectFrom('privacy_exports').select(['bundle_sealed', 'downloaded_at']).where('id', '=', exportId).executeTakeFirstOrThrow());
    expect(after.bundle_sealed).toBeNull();
    expect(after.downloaded_at).not.toBeNull();
    // An expired link is refused too.
    const next = (await dpo('POST', `/api/v1/privacy/requests/${created.id}/export`)).json() as { token: string; exportId: string };
    await db.handles.forTenant(tenant.tenantId).transaction((trx) => trx.updateTable('privacy_exports').set({ expires_at: new Date(Date.now() - 1000) }).where('id', '=', next.exportId).execute());
    expect((await app.inject({ method: 'POST', url: '/api/v1/privacy/downloads', headers: { origin: PUBLIC_URL }, payload: { token: next.token } })).statusCode).toBe(410);
    // The timeline and the ledger tell the story, with ids and counts only.
    const detail = (await dpo('GET', `/api/v1/privacy/requests/${created.id}`)).json() as { timeline: { step: string }[]; verificationNote: string };
    // The officer's note of how the identity was proved: kept (sealed), shown on the case.
    expect(detail.verificationNote).toBe('Replied from the address on file');
    const sealedNote = await db.handles.forTenant(tenant.tenantId).read((trx) => trx.selectFrom('privacy_requests').select('verification_note_ciphertext').where('id', '=', created.id).executeTakeFirstOrThrow());
    expect(sealedNote.verification_note_ciphertext?.includes(Buffer.from('address on file'))).toBe(false);
    expect(detail.timeline.map((entry) => entry.step)).toEqual(['received', 'verified', 'exported', 'downloaded', 'exported']);
    const audit = await db.handles.forTenant(tenant.tenantId).read((trx) => trx.selectFrom('audit_events').select(['action', 'outcome']).where('action', 'like', 'privacy.export%').orderBy('id').execute());
    expect(audit.map((event) => `${event.action}:${event.outcome}`)).toEqual(['privacy.export.created:success', 'privacy.export.downloaded:success', 'privacy.export.downloaded:denied', 'privacy.export.created:success', 'privacy.export.downloaded:denied']);
  });

  it('extends a deadline by at most two further months, with a reason', async () => {
    const dpo = as(officer.token);
    const created = (await dpo('POST', '/api/v1/privacy/requests', intake('rectification', { externalId: 'CRM-1' }))).json() as { id: string; receivedAt: string };
    const once = await dpo('POST', `/api/v1/privacy/requests/${created.id}/extend`, { months: 1, reason: 'Records in three systems to search' });
    expect(once.json()).toMatchObject({ extensionMonths: 1, dueAt: addMonths(new Date(created.receivedAt), 2).toISOString() });
    expect((await dpo('POST', `/api/v1/privacy/requests/${created.id}/extend`, { months: 2, reason: 'Still more systems to search' })).json()).toMatchObject({ code: 'invalid_transition' });
    expect((await dpo('POST', `/api/v1/privacy/requests/${created.id}/extend`, { months: 1, reason: 'short' })).statusCode).toBe(400);
    expect((await dpo('POST', `/api/v1/privacy/requests/${created.id}/close`, { status: 'completed', outcome: 'Corrected' })).json()).toMatchObject({ code: 'request_not_verified' });
    expect((await dpo('POST', `/api/v1/privacy/requests/${created.id}/assign`, { officerId: tenant.agent.id })).statusCode).toBe(400);
    expect((await dpo('POST', `/api/v1/privacy/requests/${created.id}/assign`, { officerId: officer.id })).json()).toMatchObject({ officerId: officer.id });
    expect((await dpo('POST', `/api/v1/privacy/requests/${created.id}/close`, { status: 'rejected', outcome: 'Could not verify identity' })).json()).toMatchObject({ status: 'rejected' });
  });

  it('restricts and honours objections at once', async () => {
    const dpo = as(officer.token);
    const restriction = (await dpo('POST', '/api/v1/privacy/requests', intake('restriction', { phone: '+4791234567' }))).json() as { id: string };
    await dpo('POST', `/api/v1/privacy/requests/${restriction.id}/verify`, { method: 'callback' });
    expect((await dpo('POST', `/api/v1/privacy/requests/${restriction.id}/restrict`)).json()).toEqual({ restricted: 1 });
    const contact = await as(tenant.owner.token)('GET', `/api/v1/contacts/${contactId}`);
    expect(contact.json()).toMatchObject({ status: 'restricted' });
    // Kept, not used: an administrator can no longer reveal its values; the privacy officer still can.
    const admin = await db.handles.forTenant(tenant.tenantId).transaction(async (trx) => {
      const user = await createUser(trx, (await db.handles.crypto()).cipher, { email: 'admin@privacy-a.example', displayName: 'Admin', role: 'admin' });
      await trx.updateTable('users').set({ status: 'active' }).where('id', '=', user.id).execute();
      return (await issueApiToken(trx, tenant.tenantId, { userId: user.id, name: 'admin', expiresAt: new Date(Date.now() + 3_600_000), scopes: permissions })).token;
    });
    const refused = await as(admin)('POST', `/api/v1/contacts/${contactId}/reveal`, { fields: ['phones'], reason: 'checking a restricted contact' });
    expect(refused.statusCode).toBe(409);
    expect(refused.json()).toMatchObject({ code: 'contact_restricted' });
    expect((await dpo('POST', `/api/v1/contacts/${contactId}/reveal`, { fields: ['phones'], reason: 'answering the request' })).statusCode).toBe(200);
    // Nor can the administrator lift the restriction, or act on requests at all.
    expect((await as(admin)('PUT', `/api/v1/contacts/${contactId}/status`, { status: 'active' })).statusCode).toBe(403);
    expect((await as(admin)('GET', '/api/v1/privacy/requests')).statusCode).toBe(403);
    expect((await dpo('POST', `/api/v1/privacy/requests/${restriction.id}/erase`)).json()).toMatchObject({ code: 'invalid_transition' });
    const objection = (await dpo('POST', '/api/v1/privacy/requests', intake('objection', { phone: '+4791234567' }))).json() as { id: string };
    await dpo('POST', `/api/v1/privacy/requests/${objection.id}/verify`, { method: 'callback' });
    expect((await dpo('POST', `/api/v1/privacy/requests/${objection.id}/object`)).json()).toEqual({ suppressed: 2 });
    const check = await as(tenant.owner.token)('POST', '/api/v1/suppressions/check', { phone: '+4791234567' });
    expect(check.json()).toMatchObject({ suppressed: true, matches: [expect.objectContaining({ reason: 'objection', scope: 'tenant' })] });
  });

  it('erases a subject by crypto-shredding, unless a legal hold or a call in progress stops it, and ledgers it without personal data', async () => {
    const dpo = as(officer.token);
    const tenantDb = db.handles.forTenant(tenant.tenantId);
    const created = (await dpo('POST', '/api/v1/privacy/requests', intake('erasure', { phone: '+4791234567' }))).json() as { id: string };
    await dpo('POST', `/api/v1/privacy/requests/${created.id}/verify`, { method: 'document' });
    // A legal hold over the campaign the subject was called for: refused, nothing changed.
    const hold = await tenantDb.transaction((trx) => trx.insertInto('legal_holds').values({ scope: 'campaign', campaign_id: campaignId, reason: 'Complaint under review', created_by: 'test' }).returning('id').executeTakeFirstOrThrow());
    const held = await dpo('POST', `/api/v1/privacy/requests/${created.id}/erase`);
    expect(held.statusCode).toBe(409);
    expect(held.json()).toMatchObject({ code: 'legal_hold' });
    expect((await tenantDb.read((trx) => trx.selectFrom('contacts').select('status').where('id', '=', contactId).executeTakeFirstOrThrow())).status).toBe('restricted');
    await tenantDb.transaction((trx) => trx.updateTable('legal_holds').set({ released_at: new Date(), released_by: 'test' }).where('id', '=', hold.id).execute());
    // A call in progress: refused until it ends.
    const live = randomUUID();
    await tenantDb.transaction((trx) => trx.insertInto('dial_attempts').values({ id: live, campaign_id: campaignId, contact_id: contactId, attempt: 2, dialer: 'test', state: 'connected' }).execute());
    expect((await dpo('POST', `/api/v1/privacy/requests/${created.id}/erase`)).json()).toMatchObject({ code: 'subject_in_call' });
    await tenantDb.transaction((trx) => trx.updateTable('dial_attempts').set({ state: 'ended', outcome: 'live' }).where('id', '=', live).execute());

    const erased = await dpo('POST', `/api/v1/privacy/requests/${created.id}/erase`);
    expect(erased.json()).toEqual({ erased: 1, recordingsDeleted: 1 });
    const after = await as(tenant.owner.token)('GET', `/api/v1/contacts/${contactId}`);
    expect(after.json()).toMatchObject({ status: 'erased', name: null });
    const left = await tenantDb.read(async (trx) => ({
      key: await trx.selectFrom('subject_keys').select(['wrapped_key', 'destroyed_at']).where('subject_id', '=', contactId).executeTakeFirstOrThrow(),
      phones: await trx.selectFrom('contact_phones').select('contact_id').where('contact_id', '=', contactId).execute(),
      recordings: await trx.selectFrom('recordings').select('attempt_id').where('contact_id', '=', contactId).execute(),
      notes: await trx.selectFrom('dial_attempts').select('notes_ciphertext').where('contact_id', '=', contactId).where('notes_ciphertext', 'is not', null).execute(),
      ledger: await trx.selectFrom('erasure_ledger').selectAll().where('subject_id', '=', contactId).execute(),
    }));
    expect(left.key.wrapped_key).toBeNull();
    expect(left.key.destroyed_at).not.toBeNull();
    expect(left.phones).toEqual([]);
    expect(left.recordings).toEqual([]);
    expect(left.notes).toEqual([]);
    // The ledger: the subject id and keyed hashes of its phone and e-mail — no personal data.
    expect(left.ledger).toHaveLength(1);
    expect(left.ledger[0]).toMatchObject({ reason: 'request', request_id: created.id, method: 'crypto_shredding' });
    expect(left.ledger[0]?.identifier_hashes).toHaveLength(2);
    const mirrored = readLedgerFile(ledgerFile);
    expect(mirrored).toEqual([expect.objectContaining({ tenantId: tenant.tenantId, subjectId: contactId, reason: 'request', identifierHashes: left.ledger[0]?.identifier_hashes.map((hash) => hash.toString('hex')) })]);
    const text = readFileSync(ledgerFile, 'utf8');
    for (const value of ['Kari', '4791234567', 'kari@example.no']) expect(text).not.toContain(value);
    // Erasing again changes nothing and adds no entry.
    expect((await dpo('POST', `/api/v1/privacy/requests/${created.id}/erase`)).json()).toEqual({ erased: 0, recordingsDeleted: 0 });
    expect(readLedgerFile(ledgerFile)).toHaveLength(1);
    // The suppression from the objection outlives the person's data.
    const check = await as(tenant.owner.token)('POST', '/api/v1/suppressions/check', { phone: '+4791234567' });
    expect(check.json()).toMatchObject({ suppressed: true });
  });
});
