import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, serverLabel, type TestDatabase } from './support/database.ts';

/**
 * Phones and list memberships reference their contact and list, and contacts their tenant, through
 * statement-level checks (migrations 0022 and 0024), not per-row foreign keys: these are the
 * guarantees a foreign key gave, each exercised as the runtime role, the way the server writes
 * (and as the owner for tenants, which only it may delete).
 */
describe(`contact references (${serverLabel()} server)`, () => {
  let db: TestDatabase;
  let tenantA = '';
  let tenantB = '';
  const clients: pg.Client[] = [];

  /** A runtime-role connection inside a transaction of `tenant`. */
  async function begin(tenant: string, isolation = 'READ COMMITTED'): Promise<pg.Client> {
    const client = await db.runtimeClient();
    clients.push(client);
    await client.query(`BEGIN ISOLATION LEVEL ${isolation}`);
    await client.query(`SELECT set_config('app.tenant_id', $1, true)`, [tenant]);
    return client;
  }
  const sqlState = async (work: Promise<unknown>) => {
    try {
      await work;
      return 'ok';
    } catch (error) {
      return (error as { code?: string }).code ?? 'no code';
    }
  };
  /** A contact with one phone in one list, committed; returns their ids. */
  async function seedContact(tenant: string): Promise<{ contactId: string; listId: string }> {
    const client = await begin(tenant);
    const contactId = (await client.query<{ id: string }>(`INSERT INTO contacts (id) VALUES (gen_random_uuid()) RETURNING id`)).rows[0]!.id;
    const listId = (await client.query<{ id: string }>(`INSERT INTO contact_lists (name, default_region) VALUES ('References ' || gen_random_uuid(), 'NO') RETURNING id`)).rows[0]!.id;
    await client.query(`INSERT INTO contact_phones (contact_id, position, kind, number_ciphertext, number_index) VALUES ($1, 0, 'mobile', '\\x01', '\\x010203')`, [contactId]);
    await client.query(`INSERT INTO contact_list_members (list_id, contact_id) VALUES ($1, $2)`, [listId, contactId]);
    await client.query('COMMIT');
    return { contactId, listId };
  }

  /** A delete of this parent must wait on another transaction's key-share lock: 55P03 (lock_not_available) after 300 ms. */
  async function expectDeleteToWait(table: 'contacts' | 'contact_lists', id: string): Promise<void> {
    const deleter = await begin(tenantA);
    await deleter.query(`SET LOCAL lock_timeout = '300ms'`);
    expect(await sqlState(deleter.query(`DELETE FROM ${table} WHERE id = $1`, [id])), table).toBe('55P03');
    await deleter.query('ROLLBACK');
  }
  /** An insert naming a parent that another transaction has deleted and commits meanwhile: its SQLSTATE. */
  async function insertWhileDeleted(table: 'contacts' | 'contact_lists', id: string, insert: string, values: unknown[]): Promise<string> {
    const deleter = await begin(tenantA);
    await deleter.query(`DELETE FROM ${table} WHERE id = $1`, [id]);
    const writer = await begin(tenantA);
    const outcome = sqlState(writer.query(insert, values));
    await new Promise((resolve) => setTimeout(resolve, 100));
    await deleter.query('COMMIT');
    const state = await outcome;
    await writer.query('ROLLBACK');
    return state;
  }

  beforeAll(async () => {
    db = await createTestDatabase();
    tenantA = await db.handles.systemDb.createTenant('references-a', 'References A');
    tenantB = await db.handles.systemDb.createTenant('references-b', 'References B');
  });
  afterAll(async () => {
    for (const client of clients) await client.end().catch(() => undefined);
    await db?.drop();
  });

  it('refuses a phone or membership whose contact or list does not exist, or is another tenant’s, and writes none of the statement', async () => {
    const { contactId, listId } = await seedContact(tenantA);
    const other = await seedContact(tenantB);
    const attempts: [string, unknown[]][] = [
      [`INSERT INTO contact_phones (contact_id, position, kind, number_ciphertext, number_index) VALUES ($1, 1, 'home', '\\x01', '\\x010203'), (gen_random_uuid(), 0, 'home', '\\x01', '\\x010203')`, [contactId]],
      [`INSERT INTO contact_phones (contact_id, position, kind, number_ciphertext, number_index) VALUES ($1, 1, 'home', '\\x01', '\\x010203')`, [other.contactId]],
      [`INSERT INTO contact_list_members (list_id, contact_id) SELECT $1, unnest(ARRAY[$2::uuid, gen_random_uuid()])`, [listId, contactId]],
      [`INSERT INTO contact_list_members (list_id, contact_id) VALUES (gen_random_uuid(), $1)`, [contactId]],
      [`INSERT INTO contact_list_members (list_id, contact_id) VALUES ($1, $2)`, [other.listId, contactId]],
    ];
    for (const [text, values] of attempts) {
      const client = await begin(tenantA);
      await client.query(`DELETE FROM contact_list_members WHERE contact_id = $1`, [contactId]);
      expect(await sqlState(client.query(text, values))).toBe('23503');
      await client.query('ROLLBACK');
    }
    const left = await db.superQuery<{ phones: number; members: number }>(
      `SELECT (SELECT count(*) FROM ringvakt.contact_phones WHERE tenant_id = $1)::int AS phones, (SELECT count(*) FROM ringvakt.contact_list_members WHERE tenant_id = $1)::int AS members`,
      [tenantA],
    );
    expect(left.rows[0]).toEqual({ phones: 1, members: 1 });
    // One statement naming a contact this transaction created, an existing one, and a missing one.
    const mixed = await begin(tenantA);
    const fresh = (await mixed.query<{ id: string }>(`INSERT INTO contacts (id) VALUES (gen_random_uuid()) RETURNING id`)).rows[0]!.id;
    const insertMembers = (ids: string[]) => mixed.query(`INSERT INTO contact_list_members (list_id, contact_id) SELECT $1, unnest($2::uuid[])`, [listId, ids]);
    await mixed.query(`DELETE FROM contact_list_members WHERE contact_id = $1`, [contactId]);
    await mixed.query('SAVEPOINT before_missing');
    expect(await sqlState(insertMembers([fresh, contactId, randomUUID()]))).toBe('23503');
    await mixed.query('ROLLBACK TO SAVEPOINT before_missing');
    await insertMembers([fresh, contactId]);
    // Its own new contact is counted without a row lock (xmax stays 0); the existing one is locked.
    const locks = await mixed.query<{ id: string; locked: boolean }>(`SELECT id, xmax <> '0'::xid AS locked FROM contacts WHERE id = ANY($1::uuid[])`, [[fresh, contactId]]);
    expect(Object.fromEntries(locks.rows.map((row) => [row.id, row.locked]))).toEqual({ [fresh]: false, [contactId]: true });
    // A statement that inserts nothing (every row a conflict) checks nothing and passes.
    await mixed.query(`INSERT INTO contact_list_members (list_id, contact_id) SELECT $1, unnest($2::uuid[]) ON CONFLICT DO NOTHING`, [listId, [fresh, contactId]]);
    await mixed.query('COMMIT');
    // A statement whose every row names a parent goes through, duplicates of one parent included.
    const client = await begin(tenantA);
    const second = (await client.query<{ id: string }>(`INSERT INTO contact_lists (name, default_region) VALUES ('Second', 'NO') RETURNING id`)).rows[0]!.id;
    await client.query(`INSERT INTO contact_list_members (list_id, contact_id) VALUES ($1, $2)`, [second, contactId]);
    await client.query(`INSERT INTO contact_phones (contact_id, position, kind, number_ciphertext, number_index) VALUES ($1, 1, 'home', '\\x01', '\\x010203'), ($1, 2, 'work', '\\x02', '\\x010204')`, [contactId]);
    await client.query('COMMIT');
  });

  it('keeps a contact that a new phone names from being deleted until that phone commits', async () => {
    const { contactId } = await seedContact(tenantA);
    const writer = await begin(tenantA);
    await writer.query(`INSERT INTO contact_phones (contact_id, position, kind, number_ciphertext, number_index) VALUES ($1, 5, 'other', '\\x01', '\\x010203')`, [contactId]);
    await expectDeleteToWait('contacts', contactId);
    // A delete that waits for the writer goes on when it commits, and takes the new phone along.
    const waiting = await begin(tenantA);
    const deleting = waiting.query(`DELETE FROM contacts WHERE id = $1`, [contactId]);
    await new Promise((resolve) => setTimeout(resolve, 100));
    await writer.query('COMMIT');
    await deleting;
    await waiting.query('COMMIT');
    const left = await db.superQuery<{ phones: number; members: number }>(
      `SELECT (SELECT count(*) FROM ringvakt.contact_phones WHERE contact_id = $1)::int AS phones, (SELECT count(*) FROM ringvakt.contact_list_members WHERE contact_id = $1)::int AS members`,
      [contactId],
    );
    expect(left.rows[0]).toEqual({ phones: 0, members: 0 });
  });

  it('refuses a phone for a contact deleted by a transaction that committed first', async () => {
    const { contactId } = await seedContact(tenantA);
    const insert = `INSERT INTO contact_phones (contact_id, position, kind, number_ciphertext, number_index) VALUES ($1, 6, 'other', '\\x01', '\\x010203')`;
    expect(await insertWhileDeleted('contacts', contactId, insert, [contactId])).toBe('23503');
  });

  it('keeps a list that a new membership names from being deleted, and refuses a membership of a list deleted first', async () => {
    const { contactId, listId } = await seedContact(tenantA);
    const writer = await begin(tenantA);
    await writer.query(`DELETE FROM contact_list_members WHERE list_id = $1`, [listId]);
    await writer.query(`INSERT INTO contact_list_members (list_id, contact_id) VALUES ($1, $2)`, [listId, contactId]);
    await expectDeleteToWait('contact_lists', listId);
    await writer.query('COMMIT');
    const insert = `INSERT INTO contact_list_members (list_id, contact_id) VALUES ($1, $2)`;
    expect(await insertWhileDeleted('contact_lists', listId, insert, [listId, contactId])).toBe('23503');
  });

  it('deletes a list’s memberships with the list, keeps key columns fixed, and refuses a delete it could not cascade safely', async () => {
    const { contactId, listId } = await seedContact(tenantA);
    for (const [text, id] of [
      [`UPDATE contact_phones SET contact_id = gen_random_uuid() WHERE contact_id = $1`, contactId],
      [`UPDATE contacts SET id = gen_random_uuid() WHERE id = $1`, contactId],
      [`UPDATE contact_lists SET id = gen_random_uuid() WHERE id = $1`, listId],
      [`UPDATE contact_list_members SET list_id = gen_random_uuid() WHERE contact_id = $1`, contactId],
      [`UPDATE contact_list_members SET contact_id = gen_random_uuid() WHERE contact_id = $1`, contactId],
    ]) {
      const attempt = await begin(tenantA);
      expect(await sqlState(attempt.query(text!, [id])), text).toBe('23503');
      await attempt.query('ROLLBACK');
    }
    // In REPEATABLE READ or SERIALIZABLE a cascade could miss children committed after the
    // snapshot: a delete of contacts or lists is refused there (one that deletes nothing is not).
    for (const isolation of ['REPEATABLE READ', 'SERIALIZABLE']) {
      for (const [table, id] of [['contact_lists', listId], ['contacts', contactId]]) {
        const strict = await begin(tenantA, isolation);
        await strict.query(`DELETE FROM ${table} WHERE id = gen_random_uuid()`);
        expect(await sqlState(strict.query(`DELETE FROM ${table} WHERE id = $1`, [id])), `${table} in ${isolation}`).toBe('55000');
        await strict.query('ROLLBACK');
      }
    }
    const deleting = await begin(tenantA);
    await deleting.query(`DELETE FROM contact_lists WHERE id = $1`, [listId]);
    await deleting.query('COMMIT');
    const left = await db.superQuery<{ members: number; phones: number }>(
      `SELECT (SELECT count(*) FROM ringvakt.contact_list_members WHERE list_id = $1)::int AS members, (SELECT count(*) FROM ringvakt.contact_phones WHERE contact_id = $2)::int AS phones`,
      [listId, contactId],
    );
    expect(left.rows[0]).toEqual({ members: 0, phones: 1 });
  });
  it('reaches every child the caller can delete: the four tables share one tenant policy and no other', async () => {
    const policies = await db.superQuery<{ tablename: string; policies: string[] }>(
      `SELECT tablename, array_agg(policyname::text || ' ' || cmd || ' ' || roles::text || ' ' || coalesce(qual, '') ORDER BY policyname) AS policies
         FROM pg_policies WHERE schemaname = 'ringvakt' AND tablename IN ('contacts', 'contact_lists', 'contact_phones', 'contact_list_members')
        GROUP BY tablename ORDER BY tablename`,
    );
    expect(policies.rows.map((row) => row.tablename)).toEqual(['contact_list_members', 'contact_lists', 'contact_phones', 'contacts']);
    for (const row of policies.rows) {
      expect(row.policies, row.tablename).toHaveLength(1);
      expect(row.policies[0], row.tablename).toMatch(/^tenant_isolation ALL \{public\} \(tenant_id = \( SELECT (ringvakt\.)?current_tenant_id\(\) AS current_tenant_id\)\)$/);
    }
  });

  it('refuses a contact whose tenant does not exist, and keeps a tenant with contacts from being deleted or truncated', async () => {
    // The runtime role claiming a tenant that does not exist: its own policy lets the row through.
    const ghost = await begin(randomUUID());
    expect(await sqlState(ghost.query(`INSERT INTO contacts (id) VALUES (gen_random_uuid())`))).toBe('23503');
    await ghost.query('ROLLBACK');
    // The owner, as migrations and operators act (row-level security applies to it on contacts).
    const asOwner = (statements: string) => sqlState(db.superQuery(`BEGIN; SET LOCAL ROLE ${db.handles.roles.owner}; SET LOCAL search_path = ringvakt; ${statements}; COMMIT`));
    // Tenants with nothing but what this test gives them, so no other foreign key stands in the way.
    const empty = await db.handles.systemDb.createTenant('references-empty', 'References empty');
    const lonely = await db.handles.systemDb.createTenant('references-lonely', 'References lonely');
    const seeding = await begin(lonely);
    await seeding.query(`INSERT INTO contacts (id) VALUES (gen_random_uuid())`);
    await seeding.query('COMMIT');
    expect(await asOwner(`DELETE FROM tenants WHERE id = '${lonely}'`)).toBe('23503');
    expect(await asOwner(`DELETE FROM tenants WHERE id IN ('${empty}', '${lonely}')`)).toBe('23503');
    // TRUNCATE … CASCADE follows foreign keys only, so it no longer reaches contacts: refused.
    expect(await asOwner(`TRUNCATE tenants CASCADE`)).toBe('23503');
    expect(await asOwner(`UPDATE tenants SET id = gen_random_uuid() WHERE id = '${empty}'`)).toBe('23503');
    // A contact being inserted holds its tenant as a foreign key would: the delete waits.
    const writer = await begin(empty);
    await writer.query(`INSERT INTO contacts (id) VALUES (gen_random_uuid())`);
    expect(await asOwner(`SET LOCAL lock_timeout = '300ms'; DELETE FROM tenants WHERE id = '${empty}'`)).toBe('55P03');
    await writer.query('ROLLBACK');
    expect(await asOwner(`SET LOCAL TRANSACTION ISOLATION LEVEL REPEATABLE READ; DELETE FROM tenants WHERE id = '${empty}'`)).toBe('55000');
    expect(await asOwner(`DELETE FROM tenants WHERE id = '${empty}'`)).toBe('ok');
    const left = await db.superQuery<{ id: string }>(`SELECT id FROM ringvakt.tenants WHERE id IN ($1, $2)`, [lonely, empty]);
    expect(left.rows).toEqual([{ id: lonely }]);
  });

  it('empties phones and memberships when contacts or lists are truncated', async () => {
    await seedContact(tenantA);
    await seedContact(tenantB);
    const count = async () =>
      (await db.superQuery<{ phones: number; members: number }>(`SELECT (SELECT count(*) FROM ringvakt.contact_phones)::int AS phones, (SELECT count(*) FROM ringvakt.contact_list_members)::int AS members`)).rows[0];
    expect((await count())!.members).toBeGreaterThan(0);
    await db.superQuery(`TRUNCATE ringvakt.contact_lists CASCADE`);
    expect((await count())!.members).toBe(0);
    expect((await count())!.phones).toBeGreaterThan(0);
    await db.superQuery(`TRUNCATE ringvakt.contacts CASCADE`);
    expect(await count()).toEqual({ phones: 0, members: 0 });
  });
});
