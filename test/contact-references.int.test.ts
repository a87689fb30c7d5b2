import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, serverLabel, type TestDatabase } from './support/database.ts';

/**
 * Phones and list memberships reference their contact and list through statement-level checks
 * (migration 0022), not per-row foreign keys: these are the guarantees a foreign key gave, each
 * exercised as the runtime role, the way the server writes.
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
    const deleter = await begin(tenantA);
    await deleter.query(`SET LOCAL lock_timeout = '300ms'`);
    // 55P03: lock_not_available — the delete waits on the writer's key-share lock.
    expect(await sqlState(deleter.query(`DELETE FROM contacts WHERE id = $1`, [contactId]))).toBe('55P03');
    await deleter.query('ROLLBACK');
    await writer.query('COMMIT');
    // Committed, the phone goes with its contact: a later delete takes every child along.
    const again = await begin(tenantA);
    await again.query(`DELETE FROM contacts WHERE id = $1`, [contactId]);
    await again.query('COMMIT');
    const left = await db.superQuery<{ phones: number; members: number }>(
      `SELECT (SELECT count(*) FROM ringvakt.contact_phones WHERE contact_id = $1)::int AS phones, (SELECT count(*) FROM ringvakt.contact_list_members WHERE contact_id = $1)::int AS members`,
      [contactId],
    );
    expect(left.rows[0]).toEqual({ phones: 0, members: 0 });
  });

  it('refuses a phone for a contact deleted by a transaction that committed first', async () => {
    const { contactId } = await seedContact(tenantA);
    const deleter = await begin(tenantA);
    await deleter.query(`DELETE FROM contacts WHERE id = $1`, [contactId]);
    const writer = await begin(tenantA);
    const insert = sqlState(writer.query(`INSERT INTO contact_phones (contact_id, position, kind, number_ciphertext, number_index) VALUES ($1, 6, 'other', '\\x01', '\\x010203')`, [contactId]));
    await new Promise((resolve) => setTimeout(resolve, 100));
    await deleter.query('COMMIT');
    expect(await insert).toBe('23503');
    await writer.query('ROLLBACK');
  });

  it('deletes a list’s memberships with the list, keeps key columns fixed, and refuses a delete it could not cascade safely', async () => {
    const { contactId, listId } = await seedContact(tenantA);
    const client = await begin(tenantA);
    expect(await sqlState(client.query(`UPDATE contact_phones SET contact_id = gen_random_uuid() WHERE contact_id = $1`, [contactId]))).toBe('23503');
    await client.query('ROLLBACK');
    for (const text of [`UPDATE contacts SET id = gen_random_uuid() WHERE id = $1`, `UPDATE contact_list_members SET list_id = gen_random_uuid() WHERE contact_id = $1`]) {
      const attempt = await begin(tenantA);
      expect(await sqlState(attempt.query(text, [contactId]))).toBe('23503');
      await attempt.query('ROLLBACK');
    }
    // In REPEATABLE READ a cascade could miss children committed after the snapshot: refused.
    const repeatable = await begin(tenantA, 'REPEATABLE READ');
    expect(await sqlState(repeatable.query(`DELETE FROM contact_lists WHERE id = $1`, [listId]))).toBe('55000');
    await repeatable.query('ROLLBACK');
    const deleting = await begin(tenantA);
    await deleting.query(`DELETE FROM contact_lists WHERE id = $1`, [listId]);
    await deleting.query('COMMIT');
    const left = await db.superQuery<{ members: number; phones: number }>(
      `SELECT (SELECT count(*) FROM ringvakt.contact_list_members WHERE list_id = $1)::int AS members, (SELECT count(*) FROM ringvakt.contact_phones WHERE contact_id = $2)::int AS phones`,
      [listId, contactId],
    );
    expect(left.rows[0]).toEqual({ members: 0, phones: 1 });
  });
});
