import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../src/server/types.ts';
import { createContact } from '../src/modules/contacts/contacts.service.ts';
import { recordingSaved, recordingStarted } from '../src/dialer/call-recording.ts';
import { beginSweep, runSweep } from '../src/privacy/retention.ts';
import { pruneAuditLedger } from '../src/audit/retention.ts';
import { loadSigningKey } from '../src/audit/signing-key.ts';
import { sealTenantLedger } from '../src/audit/seal-audit-log.ts';
import { bearer, buildTestApp, capturingLogger, PUBLIC_URL } from './support/app.ts';
import { createTestDatabase, serverLabel, type TestDatabase } from './support/database.ts';
import { seedTenant, type SeededTenant } from './support/seed.ts';

const DAY = 86_400_000;

describe(`retention policies, legal holds and sweeps (${serverLabel()} server)`, () => {
  let db: TestDatabase;
  let app: App;
  let tenant: SeededTenant;
  let logLines: string[] = [];

  beforeAll(async () => {
    db = await createTestDatabase();
    tenant = await seedTenant(db.handles, 'retention-a');
    const captured = capturingLogger('error'); logLines = captured.lines;
    app = await buildTestApp(db, { logger: captured.logger });
  });
  afterAll(async () => {
    await app?.close();
    await db?.drop();
  });

  const call = (method: string, url: string, payload?: unknown) =>
    app.inject({ method: method as 'GET', url, headers: { ...bearer(tenant.owner.token), origin: PUBLIC_URL }, ...(payload !== undefined ? { payload: payload as Record<string, unknown> } : {}) });

  it('refuses a policy that would drop the audit ledger faster than the law allows, or anonymise what has no anonymous rest', async () => {
    const short = await call('PUT', '/api/v1/privacy/retention-policies/audit_events', { retainDays: 90, action: 'delete' });
    expect(short.statusCode).toBe(400);
    expect(short.json()).toMatchObject({ code: 'retention_below_minimum', errors: [{ path: 'body/retainDays' }] });
    expect((await call('PUT', '/api/v1/privacy/retention-policies/recordings', { retainDays: 30, action: 'anonymise' })).json()).toMatchObject({ code: 'validation_failed' });
    expect((await call('PUT', '/api/v1/privacy/retention-policies/nonsense', { retainDays: 30, action: 'delete' })).statusCode).toBe(400);
    expect((await call('PUT', '/api/v1/privacy/retention-policies/recordings', { retainDays: 0, action: 'delete' })).statusCode).toBe(400);
    // Contacts are erased, never deleted (their calls and consent records stay as anonymous evidence).
    expect((await call('PUT', '/api/v1/privacy/retention-policies/contacts_inactive', { retainDays: 365, action: 'delete' })).json()).toMatchObject({ code: 'validation_failed', errors: [{ path: 'body/action' }] });
    expect((await call('GET', '/api/v1/privacy/retention-policies')).json()).toEqual({ items: [] });
    expect((await call('PUT', '/api/v1/privacy/retention-policies/audit_events', { retainDays: 400, action: 'delete' })).statusCode).toBe(200);
    expect((await call('DELETE', '/api/v1/privacy/retention-policies/audit_events')).statusCode).toBe(204);
    expect((await call('DELETE', '/api/v1/privacy/retention-policies/audit_events')).statusCode).toBe(404);
    // Agents cannot see or set any of it.
    expect((await app.inject({ method: 'GET', url: '/api/v1/privacy/retention-policies', headers: bearer(tenant.agent.token) })).statusCode).toBe(403);
  });

  it('sweeps what is due, skips what a legal hold keeps, previews first, and runs one sweep at a time', async () => {
    const tenantDb = db.handles.forTenant(tenant.tenantId);
    const crypto = await db.handles.crypto();
    const now = Date.now();
    // C1 inactive; C2 active (a call late in the future window); C3 on hold itself; C4 called for a held campaign.
    const ids = await tenantDb.transaction(async (trx) => {
      const contact = async (index: number) => (await createContact(trx, crypto, { name: `Retained ${index}`, phones: [{ kind: 'mobile', number: `+479000010${index}` }] }, { defaultRegion: 'NO' })).id;
      const c1 = await contact(1);
      const c2 = await contact(2);
      const c3 = await contact(3);
      const c4 = await contact(4);
      const c5 = await contact(5);
      const open = (await trx.insertInto('campaigns').values({ name: 'Open' }).returning('id').executeTakeFirstOrThrow()).id;
      const heldCampaign = (await trx.insertInto('campaigns').values({ name: 'Held' }).returning('id').executeTakeFirstOrThrow()).id;
      const attempt = async (contactId: string, campaignId: string, at: number, notes?: string) => {
        const id = randomUUID();
        const sealed = notes ? await crypto.cipher.encrypt(trx, { table: 'dial_attempts', recordId: id, field: 'notes' }, notes, contactId) : null;
        await trx.insertInto('dial_attempts').values({ id, campaign_id: campaignId, contact_id: contactId, attempt: 1, dialer: 'test', state: 'ended', outcome: 'live', reserved_at: new Date(at), dialed_at: new Date(at), ended_at: new Date(at), disposition: 'sale', notes_ciphertext: sealed, disposed_at: new Date(at) }).execute();
        return id;
      };
      const a1 = await attempt(c1, open, now, 'Notes one');
      const a2 = await attempt(c2, open, now + 100 * DAY);
      const a3 = await attempt(c4, heldCampaign, now, 'Notes held');
      // C5 is on the held campaign's list (never called for it): its call for the open campaign is held too.
      const heldList = (await trx.insertInto('contact_lists').values({ name: 'Held list', default_region: 'NO', campaign_id: heldCampaign }).returning('id').executeTakeFirstOrThrow()).id;
      await trx.insertInto('contact_list_members').values({ list_id: heldList, contact_id: c5 }).execute();
      const a5 = await attempt(c5, open, now);
      await recordingStarted(trx, { attemptId: a1, campaignId: open, contactId: c1, at: new Date(now) });
      await recordingSaved(trx, crypto, { attemptId: a1, contactId: c1, audio: Buffer.alloc(100, 1), at: new Date(now), durationMs: 1000 });
      const queue = (await trx.insertInto('queues').values({ name: 'Q', number: '+4722000031' }).returning('id').executeTakeFirstOrThrow()).id;
      await trx.insertInto('inbound_calls').values({ id: randomUUID(), queue_id: queue, first_queue_id: queue, caller_index: Buffer.from([1, 2, 3]), state: 'ended', outcome: 'answered', offered_at: new Date(now), ended_at: new Date(now) }).execute();
      return { c1, c2, c3, c4, c5, open, heldCampaign, a1, a2, a3, a5 };
    });
    // Holds through the API: C3 itself, and the campaign C4 was called for.
    expect((await call('POST', '/api/v1/privacy/legal-holds', { contactId: ids.c3, reason: 'Dispute' })).statusCode).toBe(201);
    expect((await call('POST', '/api/v1/privacy/legal-holds', { campaignId: ids.heldCampaign, reason: 'Regulator inquiry' })).statusCode).toBe(201);
    expect((await call('POST', '/api/v1/privacy/legal-holds', { contactId: ids.c1, campaignId: ids.open, reason: 'Both' })).statusCode).toBe(400);
    expect((await call('POST', '/api/v1/privacy/legal-holds', { contactId: randomUUID(), reason: 'Nobody' })).statusCode).toBe(404);
    const spare = (await call('POST', '/api/v1/privacy/legal-holds', { contactId: ids.c1, reason: 'Lifted soon' })).json() as { id: string };
    expect((await call('POST', `/api/v1/privacy/legal-holds/${spare.id}/release`)).json()).toMatchObject({ releasedAt: expect.any(String) });
    expect((await call('POST', `/api/v1/privacy/legal-holds/${spare.id}/release`)).json()).toMatchObject({ code: 'invalid_transition' });

    for (const [category, retainDays, action] of [
      ['contacts_inactive', 365, 'anonymise'],
      ['interactions', 30, 'anonymise'],
      ['notes', 30, 'delete'],
      ['recordings', 30, 'delete'],
      ['audit_events', 365, 'delete'],
    ] as const) {
      expect((await call('PUT', `/api/v1/privacy/retention-policies/${category}`, { retainDays, action })).statusCode).toBe(200);
    }
    // The sweep as it will run 400 days from now: C2's call then lies 300 days back.
    const later = new Date(now + 400 * DAY);
    const options = { dryRun: true, requestedBy: 'test', node: 'test-node', now: later };
    const dryId = await beginSweep(tenantDb, options);
    expect(dryId).toBeDefined();
    // One sweep at a time per tenant.
    expect(await beginSweep(tenantDb, options)).toBeUndefined();
    const preview = await runSweep(tenantDb, crypto, dryId ?? '', options);
    expect(preview).toMatchObject({
      contacts_inactive: { due: 4, held: 3, done: 0 },
      interactions: { due: 5, held: 2, done: 0 },
      notes: { due: 2, held: 1, done: 0 },
      recordings: { due: 1, held: 0, done: 0 },
    });
    expect(preview.audit_events?.due).toBeGreaterThan(0);
    const untouched = await tenantDb.read((trx) => trx.selectFrom('dial_attempts').select('contact_id').where('id', '=', ids.a1).executeTakeFirstOrThrow());
    expect(untouched.contact_id).toBe(ids.c1);

    const realOptions = { ...options, dryRun: false };
    const realId = await beginSweep(tenantDb, realOptions);
    const report = await runSweep(tenantDb, crypto, realId ?? '', realOptions);
    expect(report).toMatchObject({ contacts_inactive: { done: 1 }, interactions: { done: 3 }, recordings: { done: 0 } });
    const state = await tenantDb.read(async (trx) => ({
      contacts: Object.fromEntries((await trx.selectFrom('contacts').select(['id', 'status']).execute()).map((row) => [row.id, row.status])),
      attempts: Object.fromEntries((await trx.selectFrom('dial_attempts').select(['id', 'contact_id', 'notes_ciphertext', 'anonymised_at', 'outcome']).execute()).map((row) => [row.id, row])),
      recordings: await trx.selectFrom('recordings').select('attempt_id').execute(),
      inbound: await trx.selectFrom('inbound_calls').select(['caller_index', 'anonymised_at']).execute(),
      ledger: await trx.selectFrom('erasure_ledger').select(['subject_id', 'reason']).execute(),
      sweep: await trx.selectFrom('retention_sweeps').selectAll().where('id', '=', realId ?? '').executeTakeFirstOrThrow(),
      audit: await trx.selectFrom('audit_events').select(['details', 'outcome']).where('action', '=', 'privacy.retention_sweep').orderBy('id').execute(),
    }));
    // C1 erased through the erasure ledger; C2 active; C3 and C4 kept by their holds.
    expect(state.contacts).toMatchObject({ [ids.c1]: 'erased', [ids.c2]: 'active', [ids.c3]: 'active', [ids.c4]: 'active', [ids.c5]: 'active' });
    expect(state.ledger).toEqual([{ subject_id: ids.c1, reason: 'retention' }]);
    // Interactions kept as statistics without the person; the held campaign's untouched.
    expect(state.attempts[ids.a1]).toMatchObject({ contact_id: null, notes_ciphertext: null, outcome: 'live' });
    expect(state.attempts[ids.a1]?.anonymised_at).not.toBeNull();
    expect(state.attempts[ids.a2]).toMatchObject({ contact_id: null });
    expect(state.attempts[ids.a3]).toMatchObject({ contact_id: ids.c4, anonymised_at: null });
    expect(state.attempts[ids.a3]?.notes_ciphertext).not.toBeNull();
    expect(state.attempts[ids.a5]).toMatchObject({ contact_id: ids.c5, anonymised_at: null });
    expect(state.recordings).toEqual([]);
    expect(state.inbound).toEqual([expect.objectContaining({ caller_index: null })]);
    expect(state.sweep).toMatchObject({ state: 'done', dry_run: false });
    expect(state.audit).toHaveLength(2);
    expect(state.audit[1]?.details).toMatchObject({ dryRun: false, contacts_inactiveDone: 1, contacts_inactiveHeld: 3, interactionsDone: 3 });

    // A second sweep: C2's call is anonymised now, but it still counts as C2's activity.
    const againId = await beginSweep(tenantDb, realOptions);
    const again = await runSweep(tenantDb, crypto, againId ?? '', realOptions);
    expect(again).toMatchObject({ contacts_inactive: { due: 3, held: 3, done: 0 }, interactions: { due: 2, held: 2, done: 0 } });
    const c2 = await tenantDb.read((trx) => trx.selectFrom('contacts').select('status').where('id', '=', ids.c2).executeTakeFirstOrThrow());
    expect(c2.status).toBe('active');

    // A sweep whose node died (stale heartbeat) is ended by the next one, which then runs.
    const stuck = await beginSweep(tenantDb, options);
    await tenantDb.transaction((trx) => trx.updateTable('retention_sweeps').set({ heartbeat_at: new Date(Date.now() - 10 * 60_000) }).where('id', '=', stuck ?? '').execute());
    const next = await beginSweep(tenantDb, options);
    expect(next).toBeDefined();
    const stuckRow = await tenantDb.read((trx) => trx.selectFrom('retention_sweeps').select(['state', 'error_code']).where('id', '=', stuck ?? '').executeTakeFirstOrThrow());
    expect(stuckRow).toEqual({ state: 'abandoned', error_code: 'node_lost' });
    await runSweep(tenantDb, crypto, next ?? '', options);

    // Through the API: a dry run in the background, then its report.
    const started = await call('POST', '/api/v1/privacy/retention-sweeps', { dryRun: true });
    expect(started.statusCode, logLines.join('\n')).toBe(202);
    const sweepId = (started.json() as { id: string }).id;
    let sweep: { state: string; report: Record<string, { due: number }> } = { state: 'running', report: {} };
    for (let tries = 0; tries < 100 && sweep.state === 'running'; tries += 1) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      sweep = (await call('GET', `/api/v1/privacy/retention-sweeps/${sweepId}`)).json() as typeof sweep;
    }
    expect(sweep.state).toBe('done');
    expect(Object.keys(sweep.report).sort()).toEqual(['audit_events', 'contacts_inactive', 'interactions', 'notes', 'recordings']);
  });

  it('anonymises and deletes expired calls in single statements when no hold is in force', async () => {
    const other = await seedTenant(db.handles, 'retention-b');
    const tenantDb = db.handles.forTenant(other.tenantId);
    const crypto = await db.handles.crypto();
    const now = Date.now();
    const ids = await tenantDb.transaction(async (trx) => {
      const contact = (await createContact(trx, crypto, { name: 'Plain', phones: [{ kind: 'mobile', number: '+4790000201' }] }, { defaultRegion: 'NO' })).id;
      const campaign = (await trx.insertInto('campaigns').values({ name: 'Plain' }).returning('id').executeTakeFirstOrThrow()).id;
      const attempts: string[] = [];
      for (let attempt = 1; attempt <= 3; attempt += 1) {
        const id = randomUUID();
        const at = new Date(now - (attempt === 3 ? 1 : 100) * DAY);
        await trx.insertInto('dial_attempts').values({ id, campaign_id: campaign, contact_id: contact, attempt, dialer: 'test', state: 'ended', outcome: 'live', reserved_at: at, ended_at: at }).execute();
        attempts.push(id);
      }
      await recordingStarted(trx, { attemptId: attempts[0] ?? '', campaignId: campaign, contactId: contact, at: new Date(now - 100 * DAY) });
      await recordingSaved(trx, crypto, { attemptId: attempts[0] ?? '', contactId: contact, audio: Buffer.alloc(10, 1), at: new Date(now - 100 * DAY), durationMs: 10 });
      await trx.insertInto('retention_policies').values({ category: 'interactions', retain_days: 30, action: 'anonymise', updated_by: 'test' }).execute();
      return { contact, attempts };
    });
    const options = { dryRun: false, requestedBy: 'test', node: 'test-node' };
    const report = await runSweep(tenantDb, crypto, (await beginSweep(tenantDb, options)) ?? '', options);
    expect(report.interactions).toMatchObject({ due: 2, held: 0, done: 2 });
    const rows = await tenantDb.read(async (trx) => ({
      attempts: await trx.selectFrom('dial_attempts').select(['id', 'contact_id']).orderBy('attempt').execute(),
      recordings: await trx.selectFrom('recordings').select('attempt_id').execute(),
      activity: await trx.selectFrom('contact_activity').select('contact_id').execute(),
    }));
    expect(rows.attempts.map((row) => row.contact_id)).toEqual([null, null, ids.contact]);
    expect(rows.recordings).toEqual([]);
    expect(rows.activity).toEqual([]); // no contacts policy: no call date needs keeping
    // Then a one-day policy that deletes: the day-old call goes; the anonymised ones are no one's and stay.
    await tenantDb.transaction((trx) => trx.updateTable('retention_policies').set({ action: 'delete', retain_days: 1 }).execute());
    const deleted = await runSweep(tenantDb, crypto, (await beginSweep(tenantDb, options)) ?? '', options);
    expect(deleted.interactions).toMatchObject({ due: 1, done: 1 });
    const left = await tenantDb.read((trx) => trx.selectFrom('dial_attempts').select('id').execute());
    expect(left.map((row) => row.id).sort()).toEqual([ids.attempts[0], ids.attempts[1]].sort());
  });

  it('prunes the audit ledger by its policy only through the owner-signed procedure', async () => {
    const owned = await createTestDatabase({ ownerAccess: true });
    try {
      const audited = await seedTenant(owned.handles, 'retention-audit');
      const tenantDb = owned.handles.forTenant(audited.tenantId);
      const crypto = await owned.handles.crypto();
      const signingKey = await loadSigningKey(owned.handles.systemDb, crypto.root);
      await tenantDb.transaction((trx) => sealTenantLedger(trx, signingKey));
      await tenantDb.transaction((trx) => trx.insertInto('retention_policies').values({ category: 'audit_events', retain_days: 365, action: 'delete', updated_by: 'test' }).execute());
      const sealed = Number((await owned.superQuery<{ n: string }>('SELECT count(*) AS n FROM ringvakt.audit_events WHERE tenant_id = $1', [audited.tenantId])).rows[0]?.n);
      expect(sealed).toBeGreaterThan(0);
      // 800 days on, every sealed event is past the 365-day policy.
      const later = new Date(Date.now() + 800 * DAY);
      // The server's sweep (no owner rights) only reports them due.
      const serverOptions = { dryRun: false, requestedBy: 'test', node: 'server', now: later };
      const reported = await runSweep(tenantDb, crypto, (await beginSweep(tenantDb, serverOptions)) ?? '', serverOptions);
      expect(reported.audit_events).toMatchObject({ due: sealed, done: 0, note: expect.stringContaining('ringvakt privacy sweep') });
      // The operator's sweep prunes them under a signed retention record, as `ringvakt privacy sweep` does.
      const operatorOptions = { ...serverOptions, node: 'operator', pruneAudit: async (cutoff: Date) => (await pruneAuditLedger(owned.handles, signingKey, { tenantId: audited.tenantId, cutoff, reason: 'retention policy for audit events', executedBy: 'test' })).removed };
      const pruned = await runSweep(tenantDb, crypto, (await beginSweep(tenantDb, operatorOptions)) ?? '', operatorOptions);
      expect(pruned.audit_events?.done).toBeGreaterThanOrEqual(sealed);
      const records = await owned.superQuery<{ n: string }>('SELECT count(*) AS n FROM ringvakt.audit_retention_records WHERE tenant_id = $1', [audited.tenantId]);
      expect(Number(records.rows[0]?.n)).toBe(1);
    } finally {
      await owned.drop();
    }
  });
});
