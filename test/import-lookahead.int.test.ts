import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../src/server/types.ts';
import { claimImport } from '../src/modules/imports/claim-import.ts';
import { runImport } from '../src/modules/imports/import-worker.ts';
import { IndexFilter } from '../src/modules/imports/index-filter.ts';
import { replaceRegistry } from '../src/modules/suppression/suppression.service.ts';
import { lookUpAhead, noIdentities } from '../src/modules/imports/batch-lookups.ts';
import { commitBatch, LeaseLost, RunInterrupted } from '../src/modules/imports/commit-batch.ts';
import { loadJob, type Job } from '../src/modules/imports/load-import-job.ts';
import { prepareRows, type PreparedBatch } from '../src/modules/imports/prepare-batch.ts';
import { contactIndexKeys } from '../src/modules/contacts/contact-record.ts';
import { loadFieldDefinitions } from '../src/modules/contacts/contacts.service.ts';
import type { TenantDb } from '../src/db/tenant-db.ts';
import { bearer, buildTestApp, PUBLIC_URL, uploadImportFile } from './support/app.ts';
import { createTestDatabase, serverLabel, type TestDatabase } from './support/database.ts';
import { seedTenant, type SeededTenant } from './support/seed.ts';

/**
 * An import batch's lookups are made ahead, outside the tenant's import lock, while the batch
 * before it commits (batch-lookups.ts, migration 0026). These tests make the lookups, then let
 * what they cannot see commit, then commit the batch: what it could not see must still count.
 */
describe(`import lookups made ahead (${serverLabel()} server)`, () => {
  let db: TestDatabase;
  let app: App;
  let a: SeededTenant;
  let listId = '';
  let tenantDb: TenantDb;
  let crypto: Awaited<ReturnType<TestDatabase['handles']['crypto']>>;
  const HEADERS = ['Navn', 'Mobil'];

  const call = (method: string, url: string, payload?: unknown) =>
    app.inject({ method: method as 'GET', url, headers: { ...bearer(a.owner.token), origin: PUBLIC_URL }, ...(payload !== undefined ? { payload: payload as Record<string, unknown> } : {}) });

  /** An import of `rows` (name, number; or as `headers` say) claimed by `owner`, linking the people who exist. */
  const fileImport = async (owner: string, rows: string[][], headers = HEADERS): Promise<string> => {
    const mapping = Object.fromEntries(headers.map((header) => [header, { Kundenr: 'externalId', Navn: 'name', Mobil: 'phone' }[header]]));
    const created = await call('POST', '/api/v1/contact-imports', { listId, mapping, onExisting: 'link' });
    expect(created.statusCode, created.body).toBe(201);
    const importId = created.json().id as string;
    const uploaded = await uploadImportFile(app, a.owner.token, importId, `${headers.join(',')}\n${rows.map((row) => row.join(',')).join('\n')}\n`);
    expect(uploaded.statusCode).toBe(202);
    expect(await claimImport(tenantDb, owner, importId)).toBe(importId);
    return importId;
  };
  /** An import claimed by `owner`, its file never read: the test hands its batches in itself. */
  const claimedImport = async (owner: string, headers = HEADERS): Promise<Job> => {
    const importId = await fileImport(owner, [headers.map((header) => (header === 'Mobil' ? '41999999' : 'Unused'))], headers);
    return tenantDb.transaction((trx) => loadJob(trx, importId, headers));
  };
  const createContact = async (name: string, number: string, externalId?: string) => {
    const created = await call('POST', '/api/v1/contacts', { name, phones: [{ kind: 'mobile', number }], ...(externalId ? { externalId } : {}) });
    expect(created.statusCode, created.body).toBe(201);
    return created.json().id as string;
  };
  /** Contacts holding this number, by its blind index and opened (as a search by phone finds them). */
  const holding = async (number: string) => {
    const found = await call('POST', '/api/v1/contacts/search', { phone: number });
    expect(found.statusCode, found.body).toBe(200);
    return (found.json().items as unknown[]).length;
  };

  /** Rows (name, number; or as the job's headers say) as the batch of `job` starting at file row `first`. */
  const prepared = async (job: Job, first: number, rows: string[][]): Promise<PreparedBatch> => {
    const { cipher, keyring } = crypto;
    const definitions = await tenantDb.read((trx) => loadFieldDefinitions(trx));
    const keys = await tenantDb.transaction(async (trx) => ({ dataKey: await keyring.dataKeyForEncryptions(trx, rows.length), indexKeys: await contactIndexKeys(cipher, trx) }));
    const context = { tenantId: a.tenantId, plan: job.plan, defaultRegion: job.defaultRegion, definitions };
    return prepareRows(context, keys, rows.map((record, index) => ({ rowNumber: first + index, record })));
  };

  const counts = async (importId: string) => (await call('GET', `/api/v1/contact-imports/${importId}`)).json() as { created: number; linked: number; rejected: number };
  const importedBy = async (importId: string) => (await db.superQuery<{ n: number }>(`SELECT count(*)::int AS n FROM ringvakt.contacts WHERE import_id = $1`, [importId])).rows[0]?.n;
  const epoch = async () => Number((await db.superQuery<{ epoch: string }>(`SELECT epoch FROM ringvakt.contact_import_epochs WHERE tenant_id = $1`, [a.tenantId])).rows[0]?.epoch ?? 0);

  beforeAll(async () => {
    db = await createTestDatabase();
    a = await seedTenant(db.handles, 'lookahead-a');
    tenantDb = db.handles.forTenant(a.tenantId);
    crypto = await db.handles.crypto();
    app = await buildTestApp(db);
    listId = (await call('POST', '/api/v1/lists', { name: 'Lookahead list', defaultRegion: 'NO' })).json().id;
  });
  afterAll(async () => {
    await app?.close();
    await db?.drop();
  });

  it('counts the rows the batch just before created, which its lookups made ahead could not see', async () => {
    const job = await claimedImport('ahead-worker');
    const first = await prepared(job, 2, [
      ['Kari Først', '41777001'],
      ['Per Først', '41777002'],
    ]);
    const second = await prepared(job, 4, [
      ['Kari Igjen', '+47 417 77 001'], // the same number as row 2, written otherwise
      ['Ny Person', '41777003'],
    ]);
    // The second batch's lookups are made while the first has not committed yet.
    const firstLookups = await lookUpAhead(tenantDb, crypto, job, first);
    const secondLookups = await lookUpAhead(tenantDb, crypto, job, second);
    const createdByFirst = await commitBatch(tenantDb, crypto, job, first, 3, 'ahead-worker', { previous: noIdentities(), lookups: firstLookups });
    expect(createdByFirst.phone.get('+4741777001')).toBe(2);
    await commitBatch(tenantDb, crypto, job, second, 5, 'ahead-worker', { previous: createdByFirst, lookups: secondLookups });
    expect(await importedBy(job.id)).toBe(3);
    expect(await counts(job.id)).toMatchObject({ created: 3, linked: 0, rejected: 1 });
    const rejects = await db.superQuery(`SELECT row_number::int, reason, detail FROM ringvakt.contact_import_rejects WHERE import_id = $1`, [job.id]);
    expect(rejects.rows).toEqual([{ row_number: 4, reason: 'duplicate_in_file', detail: 'the same contact as row 2' }]);
  });

  it('does the lookups again under the import lock when another import committed since they were made', async () => {
    const late = await claimedImport('late-worker');
    const early = await claimedImport('early-worker');
    const lateBatch = await prepared(late, 2, [
      ['Siri Samtidig', '41888001'],
      ['Ola Alene', '41888002'],
    ]);
    const earlyBatch = await prepared(early, 2, [['Siri Samtidig', '41888001']]);
    const lateLookups = await lookUpAhead(tenantDb, crypto, late, lateBatch);
    expect([lateLookups.existing.external.size, lateLookups.existing.phone.size, lateLookups.existing.email.size]).toEqual([0, 0, 0]);
    const before = await epoch();
    expect(lateLookups.epoch).toBe(before);
    // Another import creates Siri after the late batch looked (and found no one).
    await commitBatch(tenantDb, crypto, early, earlyBatch, 2, 'early-worker', { previous: noIdentities(), lookups: await lookUpAhead(tenantDb, crypto, early, earlyBatch) });
    expect(await epoch()).toBe(before + 1);
    await commitBatch(tenantDb, crypto, late, lateBatch, 3, 'late-worker', { previous: noIdentities(), lookups: lateLookups });
    // Siri exists once: the late import linked her rather than creating her again.
    expect(await counts(late.id)).toMatchObject({ created: 1, linked: 1, rejected: 0 });
    expect(await importedBy(late.id)).toBe(1);
    expect(await importedBy(early.id)).toBe(1);
    const members = await db.superQuery<{ n: number }>(`SELECT count(*)::int AS n FROM ringvakt.contact_list_members WHERE list_id = $1 AND contact_id IN (SELECT id FROM ringvakt.contacts WHERE import_id = $2)`, [listId, early.id]);
    expect(members.rows[0]?.n).toBe(1);
    // The refused attempt wrote nothing and moved no epoch; the one done again moved it once.
    expect(await epoch()).toBe(before + 2);
  });

  it('commits with the lookups made ahead, in one round trip, when no other import committed since', async () => {
    const job = await claimedImport('trusting-worker');
    const batch = await prepared(job, 2, [['Eva Ekte', '41777101']]);
    const lookups = await lookUpAhead(tenantDb, crypto, job, batch);
    // What only these lookups say (no such row exists): the batch acts on it, so it did not look again.
    lookups.existing.phone.set('+4741777101', { id: randomUUID(), importId: job.id, importRow: 999 });
    await commitBatch(tenantDb, crypto, job, batch, 2, 'trusting-worker', { previous: noIdentities(), lookups });
    expect(await importedBy(job.id)).toBe(0);
    const rejects = await db.superQuery(`SELECT row_number::int, reason, detail FROM ringvakt.contact_import_rejects WHERE import_id = $1`, [job.id]);
    expect(rejects.rows).toEqual([{ row_number: 2, reason: 'duplicate_in_file', detail: 'the same contact as row 999' }]);
  });

  it('refuses the batch of a worker whose import another worker moved on since (its run\'s cursor is stale)', async () => {
    const job = await claimedImport('first-holder');
    const mine = await prepared(job, 2, [['Tor Tatt', '41777201']]);
    const myLookups = await lookUpAhead(tenantDb, crypto, job, mine);
    // The lease passes to another worker, which commits the same row (as a resumed run would), and
    // then comes back: the first worker's lookups, and the cursor its run left, are stale.
    await db.superQuery(`UPDATE ringvakt.contact_imports SET lease_owner = 'second-holder' WHERE id = $1`, [job.id]);
    const theirJob = await tenantDb.transaction((trx) => loadJob(trx, job.id, HEADERS));
    const theirs = await prepared(theirJob, 2, [['Tor Tatt', '41777201']]);
    await commitBatch(tenantDb, crypto, theirJob, theirs, 2, 'second-holder', { previous: noIdentities(), lookups: await lookUpAhead(tenantDb, crypto, theirJob, theirs) });
    await db.superQuery(`UPDATE ringvakt.contact_imports SET lease_owner = 'first-holder' WHERE id = $1`, [job.id]);
    await expect(commitBatch(tenantDb, crypto, job, mine, 2, 'first-holder', { previous: noIdentities(), lookups: myLookups })).rejects.toBeInstanceOf(RunInterrupted);
    expect(await importedBy(job.id)).toBe(1);
    expect((await counts(job.id)).rejected).toBe(0);
  });

  it('moves the epoch with every import batch, also one that never asks for it (a worker of an earlier version)', async () => {
    const job = await claimedImport('older-worker');
    const before = await epoch();
    // An earlier version's batch: the import lock, its writes, and the cursor — no begin_contact_import_batch.
    await tenantDb.transaction((trx) => trx.updateTable('contact_imports').set({ rows_done: 10 }).where('id', '=', job.id).execute());
    expect(await epoch()).toBe(before + 1);
    const last = await db.superQuery(`SELECT import_id, lease_owner FROM ringvakt.contact_import_epochs WHERE tenant_id = $1`, [a.tenantId]);
    expect(last.rows[0]).toEqual({ import_id: job.id, lease_owner: 'older-worker' });
  });

  it('refuses a batch of a worker that lost the lease, whether its lookups were made ahead or not', async () => {
    const job = await claimedImport('losing-worker');
    const batch = await prepared(job, 2, [['Tapt Lease', '41999101']]);
    const lookups = await lookUpAhead(tenantDb, crypto, job, batch);
    await db.superQuery(`UPDATE ringvakt.contact_imports SET lease_owner = 'other-worker' WHERE id = $1`, [job.id]);
    const before = await epoch();
    await expect(commitBatch(tenantDb, crypto, job, batch, 2, 'losing-worker', { previous: noIdentities(), lookups })).rejects.toBeInstanceOf(LeaseLost);
    await expect(commitBatch(tenantDb, crypto, job, batch, 2, 'losing-worker')).rejects.toBeInstanceOf(LeaseLost);
    expect(await importedBy(job.id)).toBe(0);
    expect(await epoch()).toBe(before);
  });

  it('looks up only what its index filter holds, and looks again under the lock when a contact was written since the filter was loaded', async () => {
    const known = await createContact('Kjent Person', '41666001');
    const job = await claimedImport('filtering-worker');
    const filter = new IndexFilter();
    expect(await filter.load(tenantDb, 1000)).toBe(true);
    const loadedAt = filter.epochs.contacts;
    expect(loadedAt).toBe(await epoch());
    // After the filter was loaded, an agent creates a person the file also holds.
    const late = await createContact('Sen Person', '41666002');
    const beforeBatch = await epoch();
    expect(beforeBatch).toBeGreaterThan(loadedAt as number);
    const batch = await prepared(job, 2, [
      ['Kjent Igjen', '41666001'],
      ['Sen Igjen', '41666002'],
      ['Helt Ny', '41666003'],
    ]);
    const lookups = await lookUpAhead(tenantDb, crypto, job, batch, filter);
    expect(lookups.filterEpochs?.contacts).toBe(loadedAt);
    // The filter held the first number, so it was looked up; the second was not (its bit was clear).
    expect(lookups.existing.phone.get('+4741666001')?.id).toBe(known);
    expect(lookups.existing.phone.has('+4741666002')).toBe(false);
    await commitBatch(tenantDb, crypto, job, batch, 4, 'filtering-worker', { previous: noIdentities(), lookups, filter });
    // Refused and done again under the lock: both people linked, not created again.
    expect(await counts(job.id)).toMatchObject({ created: 1, linked: 2 });
    expect(await holding('+4741666002')).toBe(1);
    const members = await db.superQuery<{ contact_id: string }>(`SELECT contact_id FROM ringvakt.contact_list_members WHERE list_id = $1 AND contact_id = ANY($2::uuid[])`, [listId, [known, late]]);
    expect(members.rows).toHaveLength(2);
    // Out of use until loaded again.
    expect(filter.inUse).toBe(false);
    // The batch moved the epoch once (its own writes do not move it again).
    expect(await epoch()).toBe(beforeBatch + 1);
  });

  it('looks up only the external ids its index filter may hold, and looks again under the lock when a contact was created with one since', async () => {
    const known = await createContact('Kjent Kunde', '41666701', 'CRM-701');
    const headers = ['Kundenr', 'Navn', 'Mobil'];
    const job = await claimedImport('external-filter', headers);
    const filter = new IndexFilter();
    expect(await filter.load(tenantDb, 1000)).toBe(true);
    // After the filter was loaded, an agent creates a customer the file also holds (under another number).
    const late = await createContact('Sen Kunde', '41666702', 'CRM-702');
    const batch = await prepared(job, 2, [
      ['CRM-701', 'Kjent Igjen', '41666711'],
      ['CRM-702', 'Sen Igjen', '41666712'],
      ['CRM-703', 'Helt Ny', '41666713'],
    ]);
    const lookups = await lookUpAhead(tenantDb, crypto, job, batch, filter);
    // The filter held the first external id, so it was looked up; the second was not.
    expect(lookups.existing.external.get('CRM-701')?.id).toBe(known);
    expect(lookups.existing.external.has('CRM-702')).toBe(false);
    await commitBatch(tenantDb, crypto, job, batch, 4, 'external-filter', { previous: noIdentities(), lookups, filter });
    // Refused and done again under the lock: both customers linked, not created again.
    expect(await counts(job.id)).toMatchObject({ created: 1, linked: 2 });
    const members = await db.superQuery(`SELECT contact_id FROM ringvakt.contact_list_members WHERE list_id = $1 AND contact_id = ANY($2::uuid[])`, [listId, [known, late]]);
    expect(members.rows).toHaveLength(2);
    // Loaded a page of one at a time, the filter holds every external id there is (any characters), and not others.
    await createContact('Rar Kunde', '41666721', '😀😀😀-03');
    await createContact('Rarere Kunde', '41666722', 'å"b,c\\d\'e');
    const paged = new IndexFilter();
    expect(await paged.load(tenantDb, 1000, 1)).toBe(true);
    const allIds = (await db.superQuery<{ external_id: string }>(`SELECT external_id FROM ringvakt.contacts WHERE tenant_id = $1 AND external_id IS NOT NULL`, [a.tenantId])).rows;
    expect(allIds.length).toBeGreaterThanOrEqual(5);
    for (const { external_id } of allIds) expect(paged.mayHoldExternalId(external_id, paged.epochs)).toBe(true);
    expect(['CRM-799', 'CRM-798', 'X-1'].filter((id) => paged.mayHoldExternalId(id, paged.epochs))).toEqual([]);
    const withIds = await db.superQuery<{ external_id: string; n: number }>(`SELECT external_id, count(*)::int AS n FROM ringvakt.contacts WHERE external_id LIKE 'CRM-70%' GROUP BY 1 ORDER BY 1`);
    expect(withIds.rows).toEqual(['CRM-701', 'CRM-702', 'CRM-703'].map((id) => ({ external_id: id, n: 1 })));
  });

  it('does a batch again under the lock when the external id\'s unique index refuses a contact its lookups missed', async () => {
    const known = await createContact('Unik Kunde', '41666801', 'CRM-801');
    const job = await claimedImport('unique-retry', ['Kundenr', 'Navn', 'Mobil']);
    const batch = await prepared(job, 2, [['CRM-801', 'Unik Igjen', '41666811'], ['CRM-802', 'Ny Kunde', '41666812']]);
    const lookups = await lookUpAhead(tenantDb, crypto, job, batch);
    expect(lookups.existing.external.get('CRM-801')?.id).toBe(known);
    // As if the lookups had missed the customer (a filter's false "absent"): the insert meets the unique index.
    lookups.existing.external.delete('CRM-801');
    await commitBatch(tenantDb, crypto, job, batch, 3, 'unique-retry', { previous: noIdentities(), lookups });
    expect(await counts(job.id)).toMatchObject({ created: 1, linked: 1, rejected: 0 });
    const holders = await db.superQuery<{ n: number }>(`SELECT count(*)::int AS n FROM ringvakt.contacts WHERE external_id = 'CRM-801'`);
    expect(holders.rows[0]?.n).toBe(1);
  });

  it('looks up only the do-not-call entries its filter holds, and looks again under the lock when one was added since', async () => {
    const blocked = await call('POST', '/api/v1/suppressions', { phone: '+4741666201', reason: 'request', source: 'test' });
    expect(blocked.statusCode, blocked.body).toBe(201);
    const job = await claimedImport('suppression-filter');
    const filter = new IndexFilter();
    expect(await filter.load(tenantDb, 1000)).toBe(true);
    const loadedAt = filter.epochs.suppressions;
    expect(loadedAt).not.toBeNull();
    // After the filter was loaded, a person objects to calls: their number goes on the list at once.
    const objected = await call('POST', '/api/v1/suppressions', { phone: '+4741666202', reason: 'objection', source: 'phone call' });
    expect(objected.statusCode, objected.body).toBe(201);
    const batch = await prepared(job, 2, [
      ['Sperret Før', '41666201'],
      ['Sperret Etter', '41666202'],
      ['Fri Person', '41666203'],
    ]);
    const lookups = await lookUpAhead(tenantDb, crypto, job, batch, filter);
    expect(lookups.filterEpochs?.suppressions).toBe(loadedAt);
    // The entry the filter was loaded with is found; the one added since is not (its bit was clear).
    expect([...lookups.suppressed.keys()]).toEqual(['+4741666201']);
    await commitBatch(tenantDb, crypto, job, batch, 4, 'suppression-filter', { previous: noIdentities(), lookups, filter });
    // Refused and done again under the lock: both suppressed numbers are kept out.
    expect(await counts(job.id)).toMatchObject({ created: 1, rejected: 2 });
    const rejects = await db.superQuery(`SELECT row_number::int, reason FROM ringvakt.contact_import_rejects WHERE import_id = $1 ORDER BY 1`, [job.id]);
    expect(rejects.rows).toEqual([
      { row_number: 2, reason: 'suppressed' },
      { row_number: 3, reason: 'suppressed' },
    ]);
    expect(filter.inUse).toBe(false);
  });

  it('moves the suppression epoch once for a registry replaced in many statements, and once per entry added otherwise', async () => {
    const suppressionEpoch = async () => Number((await db.superQuery<{ epoch: string }>(`SELECT epoch FROM ringvakt.suppression_epochs WHERE tenant_id = $1`, [a.tenantId])).rows[0]?.epoch ?? 0);
    const before = await suppressionEpoch();
    await tenantDb.transaction((trx) =>
      replaceRegistry(trx, crypto, { format: 'e164_list', name: 'Epoch registry', validUntil: null, createdBy: 'test' }, (async function* () {
        yield ['+4741666301', '+4741666302'];
        yield ['+4741666303'];
        yield ['+4741666304'];
      })()),
    );
    expect(await suppressionEpoch()).toBe(before + 1);
    expect((await call('POST', '/api/v1/suppressions', { phone: '+4741666305', reason: 'request', source: 'test' })).statusCode).toBe(201);
    expect(await suppressionEpoch()).toBe(before + 2);
  });

  it('refuses lookups that trusted a filter when another writer moved the epoch before a batch of the same import did', async () => {
    const job = await claimedImport('run-checked');
    // Two filters loaded at the same epoch: the first is put out of use by its refused batch, the second is not.
    const [first, second] = [new IndexFilter(), new IndexFilter()];
    expect(await first.load(tenantDb, 1000)).toBe(true);
    expect(await second.load(tenantDb, 1000)).toBe(true);
    const agents = await createContact('Midt Imellom', '41666401');
    const own = await prepared(job, 2, [['Egen Rad', '41666402']]);
    await commitBatch(tenantDb, crypto, job, own, 2, 'run-checked', { previous: noIdentities(), lookups: await lookUpAhead(tenantDb, crypto, job, own, first), filter: first });
    expect(first.inUse).toBe(false);
    // The last move is now this import's own, but the agent's came before it, after the second filter was loaded.
    const later = await prepared(job, 3, [['Midt Igjen', '41666401']]);
    const lookups = await lookUpAhead(tenantDb, crypto, job, later, second);
    expect(lookups.existing.phone.has('+4741666401')).toBe(false);
    await commitBatch(tenantDb, crypto, job, later, 3, 'run-checked', { previous: noIdentities(), lookups, filter: second });
    expect(await counts(job.id)).toMatchObject({ created: 1, linked: 1 });
    expect(await holding('+4741666401')).toBe(1);
    const linked = await db.superQuery(`SELECT 1 FROM ringvakt.contact_list_members WHERE list_id = $1 AND contact_id = $2`, [listId, agents]);
    expect(linked.rows).toHaveLength(1);
  });

  it('moves the import epoch when an edit adds a number or an e-mail, not when it changes a note or the name', async () => {
    const id = await createContact('Redigert Person', '41666501');
    const patch = async (body: Record<string, unknown>) => {
      const changed = await call('PATCH', `/api/v1/contacts/${id}`, body);
      expect(changed.statusCode, changed.body).toBe(200);
    };
    const before = await epoch();
    await patch({ notes: 'Ring etter klokka ti' });
    await patch({ name: 'Redigert Navn' });
    expect(await epoch()).toBe(before);
    await patch({ phones: [{ kind: 'mobile', number: '41666501' }, { kind: 'work', number: '41666502' }] });
    const afterPhone = await epoch();
    expect(afterPhone).toBeGreaterThan(before);
    await patch({ email: 'redigert@example.com' });
    expect(await epoch()).toBeGreaterThan(afterPhone);
  });

  it('trusts its index filter while only its own batches committed since it was loaded', async () => {
    const job = await claimedImport('trusted-filter');
    const filter = new IndexFilter();
    expect(await filter.load(tenantDb, 1000)).toBe(true);
    const first = await prepared(job, 2, [['Første Rad', '41666101']]);
    const second = await prepared(job, 3, [['Andre Rad', '41666102']]);
    const third = await prepared(job, 4, [['Første Igjen', '41666101']]);
    const created = await commitBatch(tenantDb, crypto, job, first, 2, 'trusted-filter', { previous: noIdentities(), lookups: await lookUpAhead(tenantDb, crypto, job, first, filter), filter });
    await commitBatch(tenantDb, crypto, job, second, 3, 'trusted-filter', { previous: created, lookups: await lookUpAhead(tenantDb, crypto, job, second, filter), filter });
    // Row 4 repeats row 2, two batches back: the filter holds it (added when row 2 was looked up), so the database is asked.
    const lookups = await lookUpAhead(tenantDb, crypto, job, third, filter);
    expect(lookups.existing.phone.get('+4741666101')).toMatchObject({ importId: job.id, importRow: 2 });
    await commitBatch(tenantDb, crypto, job, third, 4, 'trusted-filter', { previous: noIdentities(), lookups, filter });
    expect(filter.inUse).toBe(true);
    expect(await counts(job.id)).toMatchObject({ created: 2, linked: 0, rejected: 1 });
  });

  it('dedupes against a contact created through the API while the import runs', async () => {
    const people = Array.from({ length: 30 }, (_, index): [string, string] => [`Underveis ${index}`, `4156${String(index).padStart(4, '0')}`]);
    const importId = await fileImport('racing-agent', people);
    let batches = 0;
    // After the first batch, while the rest is to come, an agent creates the person of the last row.
    const onBatch = async () => {
      if (++batches === 1) await createContact('Agent Laget', '+4741560029');
    };
    expect(await runImport(tenantDb, crypto, importId, 'racing-agent', { batchRows: 4, onBatch })).toBe('done');
    expect(await counts(importId)).toMatchObject({ created: 29, linked: 1 });
    expect(await holding('+4741560029')).toBe(1);
  });

  it('creates each person once when two imports of the same numbers, without external ids, run at the same time', async () => {
    const people = Array.from({ length: 30 }, (_, index): [string, string] => [`Samtidig ${index}`, `4155${String(index).padStart(4, '0')}`]);
    const first = await fileImport('racing-1', people);
    const second = await fileImport('racing-2', people);
    const outcomes = await Promise.all([runImport(tenantDb, crypto, first, 'racing-1', { batchRows: 4 }), runImport(tenantDb, crypto, second, 'racing-2', { batchRows: 5 })]);
    expect(outcomes).toEqual(['done', 'done']);
    const views = await Promise.all([first, second].map((id) => counts(id)));
    expect((views[0]?.created ?? 0) + (views[1]?.created ?? 0)).toBe(30);
    expect((views[0]?.linked ?? 0) + (views[1]?.linked ?? 0)).toBe(30);
    for (const number of ['+4741550000', '+4741550017', '+4741550029']) expect(await holding(number)).toBe(1);
  });
});
