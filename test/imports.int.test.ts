import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../src/server/types.ts';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadConfig } from '../src/config.ts';
import { claimImport } from '../src/modules/imports/claim-import.ts';
import { runImport } from '../src/modules/imports/import-worker.ts';
import { runImportInThread } from '../src/modules/imports/import-thread.ts';
import { rotateTenantDataKey } from '../src/crypto/reencrypt.ts';
import { createKeyring } from '../src/crypto/keyring.ts';
import { loadContacts } from '../src/modules/contacts/contacts.service.ts';
import { bearer, buildTestApp, PUBLIC_URL, uploadImportFile } from './support/app.ts';
import { createTestDatabase, serverLabel, type TestDatabase } from './support/database.ts';
import { seedTenant, type SeededTenant } from './support/seed.ts';
import { registerPersonalData } from './support/canary.ts';

registerPersonalData('Ola Importsen', 'ola.importsen@import.example', 'Åse Ødegård', '+4741000001');

describe(`contact import (${serverLabel()} server)`, () => {
  let db: TestDatabase;
  let app: App;
  let a: SeededTenant;
  let listId = '';

  const call = (method: string, url: string, payload?: unknown) =>
    app.inject({ method: method as 'GET', url, headers: { ...bearer(a.owner.token), origin: PUBLIC_URL }, ...(payload !== undefined ? { payload: payload as Record<string, unknown> } : {}) });
  const upload = (importId: string, body: string | Buffer) => uploadImportFile(app, a.owner.token, importId, body);
  const mapping = { Navn: 'name', Mobil: 'phone', 'E-post': 'email', Kundenr: 'externalId', Tlf2: 'phone:home' };
  const newImport = async (extra: Record<string, unknown> = {}) => {
    const created = await call('POST', '/api/v1/contact-imports', { listId, mapping, ...extra });
    expect(created.statusCode, created.body).toBe(201);
    return created.json().id as string;
  };
  const runToEnd = async (importId: string, batchRows = 3) => {
    const tenantDb = db.handles.forTenant(a.tenantId);
    const { cipher, keyring } = await db.handles.crypto();
    const claimed = await claimImport(tenantDb, 'test-worker', importId);
    expect(claimed).toBe(importId);
    return runImport(tenantDb, { cipher, keyring }, importId, 'test-worker', { batchRows });
  };

  beforeAll(async () => {
    db = await createTestDatabase();
    a = await seedTenant(db.handles, 'imports-a');
    app = await buildTestApp(db);
    listId = (await call('POST', '/api/v1/lists', { name: 'Import list', defaultRegion: 'NO' })).json().id;
  });
  afterAll(async () => {
    await app?.close();
    await db?.drop();
  });

  it('imports a semicolon CSV with a BOM and quoted fields; rejects bad rows with row numbers and reasons; dedupes; skips suppressed numbers', async () => {
    // An existing contact (matched by phone, linked) and a suppressed number.
    const existing = (await call('POST', '/api/v1/contacts', { name: 'Existing Person', phones: [{ kind: 'mobile', number: '+4741000009' }] })).json().id;
    await call('POST', '/api/v1/suppressions', { phone: '+4741000008', reason: 'request', source: 'test' });
    const csv =
      '\uFEFFKundenr;Navn;Mobil;E-post;Tlf2;Ekstra\r\n' +
      'K1;"Ola Importsen";41000001;OLA.IMPORTSEN@import.example;;ignored\r\n' +
      'K2;"Nordmann; Kari";+47 41 00 00 02;;22334455;x\r\n' +
      'K3;Bad Number;12;;;x\r\n' +
      'K4;"Åse Ødegård";0047 41000001;;;dup phone of row 2\r\n' +
      'K5;Existing Again;41000009;;;links\r\n' +
      'K6;Suppressed;41000008;;;skip\r\n' +
      'K7;=cmd|calc!A1;41000007;bad-email;;x\r\n' +
      'K8;Formula Name;41000006;;;"=HYPERLINK(""x"")"\r\n' +
      ';No Identifier;;;;x\r\n';
    const importId = await newImport();
    const uploaded = await upload(importId, csv);
    expect(uploaded.statusCode, uploaded.body).toBe(202);
    expect(uploaded.json()).toMatchObject({ state: 'queued', fileRows: 9 });
    expect(await runToEnd(importId)).toBe('done');

    const view = (await call('GET', `/api/v1/contact-imports/${importId}`)).json();
    expect(view).toMatchObject({ state: 'done', rowsDone: 9, created: 3, linked: 1, rejected: 5, suppressed: 1, etaSeconds: 0 });
    expect(view.rowsPerSecond).toBeGreaterThan(0);

    const rejects = await call('GET', `/api/v1/contact-imports/${importId}/rejects`);
    expect(rejects.headers['content-type']).toContain('text/csv');
    const lines = rejects.body.trim().split('\n');
    // Every cell quoted, so a spreadsheet that splits on ';' cannot cut a cell into a formula.
    expect(lines[0]).toBe('"row","column","reason","detail"');
    expect(lines.slice(1)).toEqual([
      '"4","Mobil","phone_invalid","phones[0]: not a valid number for its country"',
      '"5","","duplicate_in_file","the same contact as row 2"',
      '"7","","suppressed","a number is on a do-not-call list"',
      '"8","E-post","email_invalid","email: not an e-mail address"',
      '"10","","no_identifier","no phone number, e-mail or external id"',
    ]);
    expect(rejects.body).not.toContain('41000008');

    const members = await call('GET', `/api/v1/contacts?listId=${listId}&limit=100`);
    const items = members.json().items as { id: string; name: string; externalId: string; phones: { kind: string }[] }[];
    expect(items.map((item) => item.externalId).sort()).toEqual([null, 'K1', 'K2', 'K8'].sort());
    expect(items.map((item) => item.id)).toContain(existing);
    expect(items.find((item) => item.externalId === 'K2')).toMatchObject({ name: 'Nordmann; Kari', phones: [{ kind: 'mobile' }, { kind: 'home' }] });
    // Cursor pagination over the list: pages in id order, no contact twice, none left out.
    const pages: string[][] = [];
    let after: string | null = null;
    do {
      const page = (await call('GET', `/api/v1/contacts?listId=${listId}&limit=3${after ? `&after=${after}` : ''}`)).json() as { items: { id: string }[]; nextAfter: string | null };
      pages.push(page.items.map((item) => item.id));
      after = page.nextAfter;
    } while (after && pages.length < 10);
    expect(pages.map((page) => page.length)).toEqual([3, 1]);
    expect(pages.flat()).toEqual(items.map((item) => item.id).sort());
    const email = await call('POST', '/api/v1/contacts/search', { email: 'ola.importsen@import.example' });
    expect(email.json().items).toHaveLength(1);
    // The stored file is gone once the import is done; the matches with the suppression are kept.
    const chunks = await db.superQuery(`SELECT count(*)::int AS n FROM ringvakt.contact_import_chunks WHERE import_id = $1`, [importId]);
    expect(chunks.rows[0]!.n).toBe(0);
    const matches = await db.superQuery(`SELECT count(*)::int AS n FROM ringvakt.suppression_matches WHERE import_id = $1 AND context = 'import'`, [importId]);
    expect(matches.rows[0]!.n).toBe(1);
    const audit = await db.superQuery(`SELECT details FROM ringvakt.audit_events WHERE action = 'contact_import.finish' AND target_id = $1`, [importId]);
    expect(audit.rows[0]!.details).toMatchObject({ created: 3, linked: 1, rejected: 5, suppressed: 1 });
  });

  it('refuses files it cannot read whole, with one clear error, and keeps nothing of them', async () => {
    const cases: [string | Buffer, string, string?][] = [
      [Buffer.from('Kundenr,Navn\nK1,\xd8ystein\n', 'latin1'), 'csv_encoding'],
      // An .xlsx file is a ZIP archive: ASCII magic, then binary.
      [Buffer.from([0x50, 0x4b, 0x03, 0x04, 0x14, 0x00, 0x06, 0x00, 0x08, 0x00]), 'csv_invalid', 'binary'],
      ['Kundenr,Navn,Navn\nK1,a,b\n', 'csv_headers', 'appears more than once'],
      ['Kundenr,Name\nK1,a\n', 'csv_headers', 'not in the header row'],
      ['Kundenr,Navn,Mobil,E-post,Tlf2\nK1,"never closed,41000001,,\n', 'csv_invalid', 'never closed'],
      [`Kundenr,Navn,Mobil,E-post,Tlf2\nK1,${'x'.repeat(70_000)},41000001,,\n`, 'csv_invalid', 'longer than'],
      ['Kundenr,Navn,Mobil,E-post,Tlf2\n', 'csv_invalid', 'no rows'],
      ['', 'csv_invalid', 'empty'],
    ];
    for (const [body, code, detail] of cases) {
      const importId = await newImport();
      const response = await upload(importId, body);
      expect(response.statusCode, `${code}: ${response.body}`).toBe(400);
      expect(response.json().code).toBe(code);
      if (detail) expect(response.json().detail).toContain(detail);
      const state = await db.superQuery(`SELECT state, (SELECT count(*)::int FROM ringvakt.contact_import_chunks c WHERE c.import_id = i.id) AS chunks FROM ringvakt.contact_imports i WHERE id = $1`, [importId]);
      expect(state.rows[0]).toMatchObject({ state: 'awaiting_file', chunks: 0 });
    }
    // A file that fails after its first megabytes were stored as chunks: the chunks go with it.
    const longFile = `Kundenr,Navn,Mobil,E-post,Tlf2\n${Array.from({ length: 100_000 }, (_, index) => `L${index},Person ${index},,,`).join('\n')}\nL-end,"never closed,,,\n`;
    expect(Buffer.byteLength(longFile)).toBeGreaterThan(2 * 1024 * 1024);
    const late = await newImport();
    const refused = await upload(late, longFile);
    expect(refused.json()).toMatchObject({ code: 'csv_invalid' });
    const kept = await db.superQuery(`SELECT count(*)::int AS n FROM ringvakt.contact_import_chunks WHERE import_id = $1`, [late]);
    expect(kept.rows[0]!.n).toBe(0);
  });

  it('fails an import whose stored file no longer decrypts, keeps the rows before it, and deletes the file', async () => {
    const rows = Array.from({ length: 12 }, (_, index) => `F${index},Failing ${index},4130${String(index).padStart(4, '0')},,`);
    const importId = await newImport();
    expect((await upload(importId, `Kundenr,Navn,Mobil,E-post,Tlf2\n${rows.join('\n')}\n`)).statusCode).toBe(202);
    // Tamper with the stored chunk: it must fail authentication, not crash the process or hang.
    await db.superQuery(`UPDATE ringvakt.contact_import_chunks SET ciphertext = set_byte(ciphertext, 40, get_byte(ciphertext, 40) # 1) WHERE import_id = $1`, [importId]);
    expect(await runToEnd(importId)).toBe('failed');
    const view = (await call('GET', `/api/v1/contact-imports/${importId}`)).json();
    expect(view).toMatchObject({ state: 'failed', error: { code: 'internal_error' } });
    const chunks = await db.superQuery(`SELECT count(*)::int AS n FROM ringvakt.contact_import_chunks WHERE import_id = $1`, [importId]);
    expect(chunks.rows[0]!.n).toBe(0);
  });

  it('streams a reject file longer than one page, every row once and in order', async () => {
    const importId = await newImport();
    const rows = Array.from({ length: 5_050 }, (_, index) => `,Nobody ${index},,,`);
    expect((await upload(importId, `Kundenr,Navn,Mobil,E-post,Tlf2\n${rows.join('\n')}\n`)).statusCode).toBe(202);
    expect(await runToEnd(importId, 2_000)).toBe('done');
    const lines = (await call('GET', `/api/v1/contact-imports/${importId}/rejects`)).body.trim().split('\n');
    expect(lines).toHaveLength(5_051);
    const numbers = lines.slice(1).map((line) => Number(line.split(',')[0]?.replaceAll('"', '')));
    expect(numbers).toEqual(Array.from({ length: 5_050 }, (_, index) => index + 2));
  });

  it('ends a batch early on wide rows, so two batches stay small whatever the file', async () => {
    const importId = await newImport();
    // 150 rows of ~60 KB each (an unmapped column): 9 MB, which the 4 MiB text bound cuts into 3 batches.
    const pad = 'p'.repeat(60_000);
    const rows = Array.from({ length: 150 }, (_, index) => `W${index},Wide ${index},4160${String(index).padStart(4, '0')},,,${pad}`);
    expect((await upload(importId, `Kundenr,Navn,Mobil,E-post,Tlf2,Pad\n${rows.join('\n')}\n`)).statusCode).toBe(202);
    const tenantDb = db.handles.forTenant(a.tenantId);
    const { cipher, keyring } = await db.handles.crypto();
    expect(await claimImport(tenantDb, 'wide-worker', importId)).toBe(importId);
    let batches = 0;
    expect(await runImport(tenantDb, { cipher, keyring }, importId, 'wide-worker', { onBatch: () => void (batches += 1) })).toBe('done');
    expect(batches).toBe(3);
    expect((await call('GET', `/api/v1/contact-imports/${importId}`)).json()).toMatchObject({ state: 'done', created: 150 });
  });

  it('fails an import whose worker thread cannot do its work, and keeps nothing of its file', async () => {
    const importId = await newImport();
    expect((await upload(importId, 'Kundenr,Navn,Mobil,E-post,Tlf2\nT1,Threaded,41700001,,\n')).statusCode).toBe(202);
    const tenantDb = db.handles.forTenant(a.tenantId);
    expect(await claimImport(tenantDb, 'thread-worker', importId)).toBe(importId);
    const folder = mkdtempSync(path.join(os.tmpdir(), 'ringvakt-import-thread-'));
    try {
      // A role the server does not know: the thread's first query fails, the same way every time.
      const refused = new URL(db.url);
      refused.username = 'nobody';
      refused.password = 'none';
      const config = loadConfig({ RINGVAKT_DATA_DIR: folder });
      const outcome = await runImportInThread(tenantDb, { connectionString: refused.toString(), config, importId, owner: 'thread-worker' });
      expect(outcome).toBe('failed');
      // A file of several batches: the thread starts its sealing thread before anything else, and
      // still fails the import (and ends).
      const longer = await newImport();
      expect((await upload(longer, 'Kundenr,Navn,Mobil,E-post,Tlf2\nT2,Threaded,41700002,,\nT3,Threaded,41700003,,\nT4,Threaded,41700004,,\n')).statusCode).toBe(202);
      expect(await claimImport(tenantDb, 'thread-worker', longer)).toBe(longer);
      expect(await runImportInThread(tenantDb, { connectionString: refused.toString(), config, importId: longer, owner: 'thread-worker', batchRows: 1 })).toBe('failed');
      expect((await call('GET', `/api/v1/contact-imports/${longer}`)).json()).toMatchObject({ state: 'failed', created: 0 });
    } finally {
      rmSync(folder, { recursive: true, force: true });
    }
    expect((await call('GET', `/api/v1/contact-imports/${importId}`)).json()).toMatchObject({ state: 'failed', created: 0 });
    const chunks = await db.superQuery(`SELECT count(*)::int AS n FROM ringvakt.contact_import_chunks WHERE import_id = $1`, [importId]);
    expect(chunks.rows[0]!.n).toBe(0);
  });

  it('runs an import in a worker thread to its end, as the server and the CLI do', async () => {
    const importId = await newImport();
    const rows = Array.from({ length: 25 }, (_, index) => `H${index},Threaded ${index},4170${String(index + 100).padStart(4, '0')},,`);
    expect((await upload(importId, `Kundenr,Navn,Mobil,E-post,Tlf2\n${rows.join('\n')}\n`)).statusCode).toBe(202);
    const tenantDb = db.handles.forTenant(a.tenantId);
    expect(await claimImport(tenantDb, 'thread-worker', importId)).toBe(importId);
    let batches = 0;
    const outcome = await runImportInThread(
      tenantDb,
      { connectionString: String(db.handles.pool.options.connectionString), config: db.config, importId, owner: 'thread-worker', batchRows: 10 },
      { onBatch: () => (batches += 1) },
    );
    expect(outcome).toBe('done');
    expect(batches).toBe(3);
    expect((await call('GET', `/api/v1/contact-imports/${importId}`)).json()).toMatchObject({ state: 'done', created: 25 });
  });

  it('exports a list larger than one page, every contact once', async () => {
    const list = (await call('POST', '/api/v1/lists', { name: 'Export list', defaultRegion: 'NO' })).json().id as string;
    const created = await call('POST', '/api/v1/contact-imports', { listId: list, mapping });
    const importId = created.json().id as string;
    const rows = Array.from({ length: 1_200 }, (_, index) => `X${index},Exported ${index},4150${String(index).padStart(4, '0')},,`);
    await upload(importId, `Kundenr,Navn,Mobil,E-post,Tlf2\n${rows.join('\n')}\n`);
    expect(await runToEnd(importId, 2_000)).toBe('done');
    const exported = await call('GET', `/api/v1/lists/${list}/export`);
    expect(exported.statusCode).toBe(200);
    const lines = exported.body.trim().split('\n');
    expect(lines).toHaveLength(1_201);
    const externalIds = new Set(lines.slice(1).map((line) => line.split('","')[1]));
    expect(externalIds.size).toBe(1_200);
    const audited = await db.superQuery(`SELECT details FROM ringvakt.audit_events WHERE action = 'contact_list.export' AND target_id = $1`, [list]);
    expect(audited.rows.map((row) => row.details)).toEqual([{ contacts: 1_200 }]);
  });

  it('does not link an existing contact whose number is suppressed, when suppressed rows are skipped', async () => {
    const existing = (await call('POST', '/api/v1/contacts', { name: 'Suppressed Existing', phones: [{ kind: 'mobile', number: '+4741000077' }] })).json().id as string;
    await call('POST', '/api/v1/suppressions', { phone: '+4741000077', reason: 'request', source: 'test' });
    const other = (await call('POST', '/api/v1/lists', { name: 'Second list', defaultRegion: 'NO' })).json().id as string;
    const created = await call('POST', '/api/v1/contact-imports', { listId: other, mapping, onSuppressed: 'skip' });
    const importId = created.json().id as string;
    await upload(importId, 'Kundenr,Navn,Mobil,E-post,Tlf2\n,Again,41000077,,\n');
    expect(await runToEnd(importId)).toBe('done');
    expect((await call('GET', `/api/v1/contact-imports/${importId}`)).json()).toMatchObject({ linked: 0, rejected: 1, suppressed: 1 });
    const members = (await call('GET', `/api/v1/contacts?listId=${other}`)).json().items as { id: string }[];
    expect(members.map((member) => member.id)).not.toContain(existing);
  });

  it('records the lawful basis the file came with for each contact it creates, never over an existing contact’s own history', async () => {
    // The basis must say where it comes from.
    const unsourced = await call('POST', '/api/v1/contact-imports', { listId, mapping, lawfulBasis: { purpose: 'sales', basis: 'consent', source: ' ' } });
    expect(unsourced.statusCode).toBe(400);
    expect(unsourced.json()).toMatchObject({ code: 'validation_failed' });
    // An existing person who objected to sales calls.
    const objector = (await call('POST', '/api/v1/contacts', { name: 'Objecting Person', phones: [{ kind: 'mobile', number: '+4741000301' }] })).json().id as string;
    expect((await call('POST', `/api/v1/contacts/${objector}/consents`, { purpose: 'sales', action: 'object', source: 'phone call' })).statusCode).toBe(201);
    // (The objection also suppressed the number: `keep` imports and links such rows all the same.)
    const importId = await newImport({ onSuppressed: 'keep', lawfulBasis: { purpose: 'sales', basis: 'consent', source: 'web form, newsletter sign-up', evidenceRef: 'CRM export 2026-11' } });
    await upload(importId, 'Kundenr,Navn,Mobil,E-post,Tlf2\nL1,Basis One,41000302,,\nL2,Basis Two,41000303,,\nL3,Objecting Again,41000301,,\n');
    expect(await runToEnd(importId)).toBe('done');
    expect((await call('GET', `/api/v1/contact-imports/${importId}`)).json()).toMatchObject({ created: 2, linked: 1 });
    const grants = await db.superQuery<{ name_rows: number; purpose: string; action: string; basis: string; source: string; evidence_ref: string; recorded_by: string }>(
      `SELECT count(*)::int AS name_rows, purpose, action, basis, source, evidence_ref, recorded_by FROM ringvakt.consent_events
        WHERE recorded_by = $1 GROUP BY purpose, action, basis, source, evidence_ref, recorded_by`,
      [`import:${importId}`],
    );
    expect(grants.rows).toEqual([{ name_rows: 2, purpose: 'sales', action: 'grant', basis: 'consent', source: 'web form, newsletter sign-up', evidence_ref: 'CRM export 2026-11', recorded_by: `import:${importId}` }]);
    // What the contact's page shows: allowed for sales calls, on consent.
    const created = (await db.superQuery<{ id: string }>(`SELECT id FROM ringvakt.contacts WHERE import_id = $1 ORDER BY import_row`, [importId])).rows;
    const consent = (await call('GET', `/api/v1/contacts/${created[0]!.id}/consents`)).json() as { current: { purpose: string; allowed: boolean; basis: string | null }[] };
    expect(consent.current.find((entry) => entry.purpose === 'sales')).toMatchObject({ allowed: true, basis: 'consent' });
    // The person who objected still has objected: the import did not grant over it.
    const kept = (await call('GET', `/api/v1/contacts/${objector}/consents`)).json() as { current: { purpose: string; allowed: boolean }[] };
    expect(kept.current.find((entry) => entry.purpose === 'sales')?.allowed).toBe(false);
  });

  it('writes, of one batch, exactly the rows it keeps — with their own numbers, keys, memberships and lawful basis — and none it drops', async () => {
    const linked = (await call('POST', '/api/v1/contacts', { name: 'Mixed Existing', phones: [{ kind: 'mobile', number: '+4741000501' }] })).json().id as string;
    await call('POST', '/api/v1/suppressions', { phone: '+4741000502', reason: 'request', source: 'test' });
    const csv =
      'Kundenr,Navn,Mobil,E-post,Tlf2\n' +
      'M1,Mail Only,,m1@mixed.example,\n' + // created, no number
      'M2,One Number,41000511,,\n' + // created, one number
      'M3,Two Numbers,41000512,,22000513\n' + // created, two numbers
      'M4,Same As M2,41000511,,\n' + // the same person as row 3: dropped
      'M5,Known Already,41000501,,\n' + // an existing contact: linked, not created
      'M6,Suppressed Second,41000514,,41000502\n' + // its second number is suppressed: dropped
      'M7,After The Dropped,41000515,,22000516\n'; // created, two numbers, after rows dropped
    const importId = await newImport({ lawfulBasis: { purpose: 'sales', basis: 'consent', source: 'mixed batch test' } });
    expect((await upload(importId, csv)).statusCode).toBe(202);
    expect(await runToEnd(importId, 50)).toBe('done');
    expect((await call('GET', `/api/v1/contact-imports/${importId}`)).json()).toMatchObject({ state: 'done', rowsDone: 7, created: 4, linked: 1, rejected: 2, suppressed: 1 });
    const written = await db.superQuery<{ external_id: string; import_row: number; phones: number[]; keys: number; lists: number; consents: number }>(
      `SELECT c.external_id, c.import_row,
              coalesce((SELECT array_agg(p.position ORDER BY p.position) FROM ringvakt.contact_phones p WHERE p.tenant_id = c.tenant_id AND p.contact_id = c.id), '{}') AS phones,
              (SELECT count(*)::int FROM ringvakt.subject_keys k WHERE k.tenant_id = c.tenant_id AND k.subject_id = c.id) AS keys,
              (SELECT count(*)::int FROM ringvakt.contact_list_members m WHERE m.tenant_id = c.tenant_id AND m.contact_id = c.id AND m.list_id = $2::uuid) AS lists,
              (SELECT count(*)::int FROM ringvakt.consent_events e WHERE e.tenant_id = c.tenant_id AND e.contact_id = c.id AND e.recorded_by = 'import:' || $1::text) AS consents
         FROM ringvakt.contacts c WHERE c.import_id = $1::uuid ORDER BY c.import_row`,
      [importId, listId],
    );
    expect(written.rows).toEqual([
      { external_id: 'M1', import_row: 2, phones: [], keys: 1, lists: 1, consents: 1 },
      { external_id: 'M2', import_row: 3, phones: [0], keys: 1, lists: 1, consents: 1 },
      { external_id: 'M3', import_row: 4, phones: [0, 1], keys: 1, lists: 1, consents: 1 },
      { external_id: 'M7', import_row: 8, phones: [0, 1], keys: 1, lists: 1, consents: 1 },
    ]);
    // Each number sits with its own contact, under that contact's key.
    const tenantDb = db.handles.forTenant(a.tenantId);
    const crypto = await db.handles.crypto();
    const ids = (await db.superQuery<{ id: string }>(`SELECT id FROM ringvakt.contacts WHERE import_id = $1`, [importId])).rows.map((row) => row.id);
    const opened = [...(await tenantDb.read((trx) => loadContacts(trx, crypto, ids))).values()].map((contact) => [contact.data.externalId, contact.data.phones.map((phone) => phone.e164)]);
    expect(opened.sort()).toEqual([
      ['M1', []],
      ['M2', ['+4741000511']],
      ['M3', ['+4741000512', '+4722000513']],
      ['M7', ['+4741000515', '+4722000516']],
    ]);
    // The linked contact joined the list and got no lawful basis from the file; nothing else joined.
    const members = await db.superQuery<{ contact_id: string }>(`SELECT contact_id FROM ringvakt.contact_list_members WHERE list_id = $1 AND contact_id = $2`, [listId, linked]);
    expect(members.rows).toHaveLength(1);
    const foreign = await db.superQuery<{ n: number }>(`SELECT count(*)::int AS n FROM ringvakt.consent_events WHERE recorded_by = 'import:' || $1 AND contact_id <> ALL($2::uuid[])`, [importId, ids]);
    expect(foreign.rows[0]).toEqual({ n: 0 });
  });

  it('ends the run interrupted when a rotation retired the key of batches waiting to commit; the next run prepares them under the new key, and no row is lost', async () => {
    const rows = Array.from({ length: 12 }, (_, index) => `T${index},Person ${index},4130${String(index).padStart(4, '0')},,`);
    const importId = await newImport();
    expect((await upload(importId, `Kundenr,Navn,Mobil,E-post,Tlf2\n${rows.join('\n')}\n`)).statusCode).toBe(202);
    const tenantDb = db.handles.forTenant(a.tenantId);
    const crypto = await db.handles.crypto();
    const before = (await db.superQuery<{ version: number }>(`SELECT max(version)::int AS version FROM ringvakt.tenant_keys WHERE tenant_id = $1 AND purpose = 'data'`, [a.tenantId])).rows[0]!.version;
    expect(await claimImport(tenantDb, 'rotating-worker', importId)).toBe(importId);
    let batches = 0;
    // After the first batch commits, the next ones are prepared already, under the key a rotation
    // then retires — in another process (its own keyring), so the importing process still holds a
    // reserved block of the old version.
    const elsewhere = createKeyring(crypto.root);
    const outcome = await runImport(tenantDb, { cipher: crypto.cipher, keyring: crypto.keyring }, importId, 'rotating-worker', {
      batchRows: 3,
      onBatch: async () => {
        if (++batches === 1) await tenantDb.transaction((trx) => rotateTenantDataKey(trx, elsewhere, { type: 'operator' }));
      },
    });
    // The first batch committed under the old key; the next was refused, and nothing of it written.
    expect(outcome).toBe('interrupted');
    expect((await call('GET', `/api/v1/contact-imports/${importId}`)).json()).toMatchObject({ state: 'running', rowsDone: 3, created: 3 });
    expect(await claimImport(tenantDb, 'rotating-worker', importId)).toBe(importId);
    expect(await runImport(tenantDb, { cipher: crypto.cipher, keyring: crypto.keyring }, importId, 'rotating-worker', { batchRows: 3 })).toBe('done');
    expect((await call('GET', `/api/v1/contact-imports/${importId}`)).json()).toMatchObject({ state: 'done', rowsDone: 12, created: 12, rejected: 0 });
    const versions = await db.superQuery<{ version: number; contacts: number }>(
      `SELECT k.tenant_key_version AS version, count(*)::int AS contacts FROM ringvakt.contacts c JOIN ringvakt.subject_keys k ON k.tenant_id = c.tenant_id AND k.subject_id = c.id
        WHERE c.import_id = $1 GROUP BY 1 ORDER BY 1`,
      [importId],
    );
    expect(versions.rows).toEqual([
      { version: before, contacts: 3 },
      { version: before + 1, contacts: 9 },
    ]);
    const ids = (await db.superQuery<{ id: string }>(`SELECT id FROM ringvakt.contacts WHERE import_id = $1`, [importId])).rows.map((row) => row.id);
    const opened = await tenantDb.read((trx) => loadContacts(trx, crypto, ids));
    expect([...opened.values()].map((contact) => contact.data.externalId).sort()).toEqual(rows.map((row) => row.split(',')[0]).sort());
  });

  it('resumes an import stopped between batches without duplicates, and lets only the lease holder write', async () => {
    const rows = Array.from({ length: 25 }, (_, index) => `R${index},Person ${index},4120${String(index).padStart(4, '0')},,`);
    const importId = await newImport();
    expect((await upload(importId, `Kundenr,Navn,Mobil,E-post,Tlf2\n${rows.join('\n')}\n`)).statusCode).toBe(202);
    const tenantDb = db.handles.forTenant(a.tenantId);
    const { cipher, keyring } = await db.handles.crypto();
    expect(await claimImport(tenantDb, 'worker-1', importId)).toBe(importId);
    // Another worker cannot take it while the lease holds.
    expect(await claimImport(tenantDb, 'worker-2', importId)).toBeUndefined();
    let batches = 0;
    const first = await runImport(tenantDb, { cipher, keyring }, importId, 'worker-1', { batchRows: 10, stop: () => ++batches >= 2 });
    expect(first).toBe('stopped');
    expect((await call('GET', `/api/v1/contact-imports/${importId}`)).json()).toMatchObject({ state: 'running', rowsDone: 20, created: 20 });
    // worker-1 "crashed"; worker-2 resumes after the last committed row.
    expect(await claimImport(tenantDb, 'worker-2', importId)).toBe(importId);
    // The old worker's next batch is refused: it no longer holds the lease.
    expect(await runImport(tenantDb, { cipher, keyring }, importId, 'worker-1', { batchRows: 10 })).toBe('lease_lost');
    expect(await runImport(tenantDb, { cipher, keyring }, importId, 'worker-2', { batchRows: 10 })).toBe('done');
    const view = (await call('GET', `/api/v1/contact-imports/${importId}`)).json();
    expect(view).toMatchObject({ state: 'done', rowsDone: 25, created: 25, rejected: 0 });
    const counted = await db.superQuery(`SELECT count(*)::int AS n, count(DISTINCT external_id)::int AS d FROM ringvakt.contacts WHERE import_id = $1`, [importId]);
    expect(counted.rows[0]).toMatchObject({ n: 25, d: 25 });
    // Importing the same file again links every row to the existing contacts: nothing doubles.
    const again = await newImport();
    await upload(again, `Kundenr,Navn,Mobil,E-post,Tlf2\n${rows.join('\n')}\n`);
    expect(await runToEnd(again, 10)).toBe('done');
    expect((await call('GET', `/api/v1/contact-imports/${again}`)).json()).toMatchObject({ created: 0, linked: 25 });
  });

  it('creates each person once when two imports of the same people run at the same time', async () => {
    const rows = Array.from({ length: 60 }, (_, index) => `Twin-${index},Twin ${index},4190${String(index).padStart(4, '0')},,`);
    const file = `Kundenr,Navn,Mobil,E-post,Tlf2\n${rows.join('\n')}\n`;
    const [first, second] = [await newImport(), await newImport()];
    await upload(first, file);
    await upload(second, file);
    const tenantDb = db.handles.forTenant(a.tenantId);
    const { cipher, keyring } = await db.handles.crypto();
    expect(await claimImport(tenantDb, 'twin-1', first)).toBe(first);
    expect(await claimImport(tenantDb, 'twin-2', second)).toBe(second);
    // Batches of 5 from both at once: their commits interleave, one batch of the tenant at a time.
    const outcomes = await Promise.all([
      runImport(tenantDb, { cipher, keyring }, first, 'twin-1', { batchRows: 5 }),
      runImport(tenantDb, { cipher, keyring }, second, 'twin-2', { batchRows: 5 }),
    ]);
    expect(outcomes).toEqual(["done", "done"]);
    const counted = await db.superQuery<{ n: number; d: number }>(
      `SELECT count(*)::int AS n, count(DISTINCT external_id)::int AS d FROM ringvakt.contacts WHERE import_id = ANY($1::uuid[])`,
      [[first, second]],
    );
    expect(counted.rows[0]).toEqual({ n: 60, d: 60 });
    const views = await Promise.all([first, second].map(async (id) => (await call('GET', `/api/v1/contact-imports/${id}`)).json()));
    expect(views[0].created + views[1].created).toBe(60);
    expect(views[0].linked + views[1].linked).toBe(60);
  });
});
