import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, serverLabel, type TestDatabase } from './support/database.ts';

/**
 * A guard for tables not yet written: every table of the schema with a tenant_id column must lead
 * its primary key with tenant_id and carry row-level security that is enabled, forced, and
 * filtered on current_tenant_id() for reads and writes alike.
 */
/**
 * The one form of a tenant table's policy: the transaction's tenant, read once per statement (an
 * initplan; migration 0027), compared with every row's tenant_id.
 */
const ONCE_PER_STATEMENT = /^\(tenant_id = \( SELECT (ringvakt\.)?current_tenant_id\(\) AS current_tenant_id\)\)$/;

describe(`tenancy guard over every table (${serverLabel()} server)`, () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => db?.drop());

  it('every table with tenant_id has an enabled, forced policy on current_tenant_id()', async () => {
    const tables = await db.superQuery<{
      table_name: string;
      rls: boolean;
      forced: boolean;
      key_lead: string | null;
      policies: { cmd: string; roles: string[]; qual: string | null; check: string | null }[] | null;
    }>(`
      SELECT c.relname AS table_name, c.relrowsecurity AS rls, c.relforcerowsecurity AS forced,
             (SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
               WHERE i.indrelid = c.oid AND i.indisprimary) AS key_lead,
             (SELECT json_agg(json_build_object('cmd', p.cmd, 'roles', p.roles, 'qual', p.qual, 'check', p.with_check))
                FROM pg_policies p WHERE p.schemaname = 'ringvakt' AND p.tablename = c.relname) AS policies
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE n.nspname = 'ringvakt' AND c.relkind IN ('r', 'p')
         AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped)
       ORDER BY c.relname`);
    expect(tables.rows.length).toBeGreaterThanOrEqual(3);
    for (const table of tables.rows) {
      const name = table.table_name;
      expect(table.rls, `${name}: row-level security enabled`).toBe(true);
      expect(table.forced, `${name}: row-level security forced`).toBe(true);
      expect(table.key_lead, `${name}: primary key leads with tenant_id`).toBe('tenant_id');
      const guarding = (table.policies ?? []).filter(
        (policy) =>
          policy.cmd === 'ALL' &&
          policy.roles.includes('public') &&
          ONCE_PER_STATEMENT.test(policy.qual ?? '') &&
          ONCE_PER_STATEMENT.test(policy.check ?? ''),
      );
      expect(guarding.length, `${name}: a policy for all commands on current_tenant_id(), read once per statement`).toBe(1);
      // Any other policy may only serve the owner role (its SECURITY DEFINER functions): nothing
      // may widen what the runtime role, or PUBLIC, can see.
      const others = (table.policies ?? []).filter((policy) => policy !== guarding[0]);
      for (const policy of others) {
        expect(policy.roles, `${name}: an extra policy must be scoped to the owner role only`).toEqual([db.handles.roles.owner]);
      }
    }
  });

  it('the tenants table shows a tenant only its own row', async () => {
    const policies = await db.superQuery(`SELECT policyname, roles, qual FROM pg_policies WHERE schemaname = 'ringvakt' AND tablename = 'tenants' ORDER BY policyname`);
    expect(policies.rows).toEqual([
      { policyname: 'owner_maintenance', roles: `{${db.handles.roles.owner}}`, qual: 'true' },
      { policyname: 'tenant_self', roles: '{public}', qual: '(id = ringvakt.current_tenant_id())' },
    ]);
    const flags = await db.superQuery(`SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE oid = 'ringvakt.tenants'::regclass`);
    expect(flags.rows[0]!).toEqual({ relrowsecurity: true, relforcerowsecurity: true });
  });

  it('the runtime role owns nothing in the database', async () => {
    const owned = await db.superQuery(
      `SELECT count(*)::int AS n FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner WHERE r.rolname = $1`,
      [db.handles.roles.runtime],
    );
    expect(owned.rows[0]!.n).toBe(0);
  });
});
