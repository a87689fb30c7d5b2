import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from '../src/db/kysely.ts';
import type { TenantDb } from '../src/db/tenant-db.ts';
import { claimImport } from '../src/modules/imports/claim-import.ts';
import { runImport } from '../src/modules/imports/import-worker.ts';
import type { App } from '../src/server/types.ts';
import { bearer, buildTestApp, PUBLIC_URL, uploadImportFile } from './support/app.ts';
import { registerPersonalData } from './support/canary.ts';
import { createTestDatabase, serverLabel, type TestDatabase } from './support/database.ts';
import { seedTenant, type SeededTenant } from './support/seed.ts';
import { until } from './support/until.ts';

registerPersonalData('Kari Kjent', '+4791230500', '91230500', 'Nina Ny', '+4791230501', '91230501');

/**
 * An import batch locks the tenant's import epoch first, then — linking an existing contact into
 * its list — that contact (as a foreign key would). A writer that locks the contact first and then
 * moves the epoch meets it the other way round: PostgreSQL ends one of the two with a deadlock
 * (40P01). When the batch is the one ended, it wrote nothing, and it is done again under the lock.
 */
describe(`an import batch in a deadlock with a contact writer (${serverLabel()} server)`, () => {
  let db: TestDatabase;
  let app: App;
  let tenant: SeededTenant;
  let tenantDb: TenantDb;

  const call = (method: string, url: string, payload?: unknown) =>
    app.inject({ method: method as 'GET', url, headers: { ...bearer(tenant.owner.token), origin: PUBLIC_URL }, ...(payload !== undefined ? { payload: payload as Record<string, unknown> } : {}) });
  const deadlocks = async () => Number((await db.superQuery<{ n: string }>(`SELECT deadlocks AS n FROM pg_stat_database WHERE datname = current_database()`)).rows[0]?.n ?? 0);

  beforeAll(async () => {
    // Each waiter's one deadlock check comes 5 s into its wait: the batch, which waits first, is
    // checked first — by then the writer waits too, whatever the machine's load — and is the one ended.
    db = await createTestDatabase({ settings: { deadlock_timeout: '5s' } });
    tenant = await seedTenant(db.handles, 'deadlock');
    tenantDb = db.handles.forTenant(tenant.tenantId);
    app = await buildTestApp(db);
  });
  afterAll(async () => {
    await app?.close();
    await db?.drop();
  });

  it('does the batch again once the deadlock ended it: the writer\'s change and every row of the file are kept, once', async () => {
    const known = await call('POST', '/api/v1/contacts', { name: 'Kari Kjent', phones: [{ kind: 'mobile', number: '+4791230500' }] });
    expect(known.statusCode, known.body).toBe(201);
    const knownId = known.json().id as string;
    const listId = (await call('POST', '/api/v1/lists', { name: 'Deadlock list', defaultRegion: 'NO' })).json().id as string;
    const created = await call('POST', '/api/v1/contact-imports', { listId, mapping: { Navn: 'name', Mobil: 'phone' }, onExisting: 'link' });
    expect(created.statusCode, created.body).toBe(201);
    const importId = created.json().id as string;
    const uploaded = await uploadImportFile(app, tenant.owner.token, importId, 'Navn,Mobil\nKari Kjent,91230500\nNina Ny,91230501\n');
    expect(uploaded.statusCode, uploaded.body).toBe(202);
    const before = await deadlocks();

    // The writer locks the known contact, and moves the epoch (a new external id) only when told.
    let locked!: (pid: number) => void;
    const isLocked = new Promise<number>((resolve) => (locked = resolve));
    let go!: () => void;
    const mayGo = new Promise<void>((resolve) => (go = resolve));
    const writer = tenantDb.transaction(async (trx) => {
      const { rows } = await sql<{ pid: number }>`SELECT pg_backend_pid() AS pid FROM contacts WHERE id = ${knownId} FOR UPDATE`.execute(trx);
      locked(rows[0]!.pid);
      await mayGo;
      await trx.updateTable('contacts').set({ external_id: 'crm-4711' }).where('id', '=', knownId).execute();
    });
    let run: Promise<string> | undefined;
    try {
      const writerPid = await Promise.race([isLocked, writer.then(() => Promise.reject(new Error('the writer ended before it locked')))]);
      expect(await claimImport(tenantDb, 'deadlock-worker', importId)).toBe(importId);
      run = runImport(tenantDb, await db.handles.crypto(), importId, 'deadlock-worker', { batchRows: 10 });
      // The batch holds the epoch and waits for the writer's lock on the contact it links.
      await until(async () => (await db.superQuery(`SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND $1 = ANY (pg_blocking_pids(pid))`, [writerPid])).rowCount! > 0, 15_000);
    } finally {
      go();
    }
    // The batch waited first, so its deadlock check runs first and ends it: the writer goes through.
    const [wrote, ran] = await Promise.allSettled([writer, run]);
    expect(wrote.status).toBe('fulfilled');
    expect(ran).toEqual({ status: 'fulfilled', value: 'done' });
    await until(async () => (await deadlocks()) > before, 20_000);

    const view = (await call('GET', `/api/v1/contact-imports/${importId}`)).json() as { state: string; created: number; linked: number; rejected: number };
    expect(view).toMatchObject({ state: 'done', created: 1, linked: 1, rejected: 0 });
    const members = await db.superQuery<{ contact_id: string }>(`SELECT contact_id FROM ringvakt.contact_list_members WHERE list_id = $1`, [listId]);
    expect(members.rows).toHaveLength(2);
    expect(members.rows.map((row) => row.contact_id)).toContain(knownId);
    const contacts = await db.superQuery<{ n: number; external: string | null }>(`SELECT count(*)::int AS n, max(external_id) AS external FROM ringvakt.contacts WHERE tenant_id = $1`, [tenant.tenantId]);
    expect(contacts.rows[0]).toEqual({ n: 2, external: 'crm-4711' });
  });
});
