import { sql, type Kysely } from 'kysely';
import type { Database } from './schema.ts';
import { createTenantDb, type TenantDb } from './tenant-db.ts';

/**
 * Cross-tenant work (CLI operators, background jobs). It connects as the same runtime role as
 * everything else — there is no bypass of row-level security — and reaches across tenants only
 * through the owner's narrow SECURITY DEFINER functions, or by entering one tenant at a time.
 */
export type SystemDb = {
  createTenant(slug: string, name: string): Promise<string>;
  tenantIdBySlug(slug: string): Promise<string | undefined>;
  listTenants(): Promise<{ id: string; slug: string }[]>;
  /** Enters one tenant, as a job acting on that tenant's behalf. */
  inTenant(tenantId: string): TenantDb;
  /** Liveness of the pool, for /readyz. */
  ping(): Promise<void>;
  appliedMigrationVersions(): Promise<number[]>;
};

export function createSystemDb(db: Kysely<Database>): SystemDb {
  return {
    async createTenant(slug, name) {
      const result = await sql<{ id: string }>`SELECT create_tenant(${slug}, ${name}) AS id`.execute(db);
      const id = result.rows[0]?.id;
      if (!id) throw new Error('create_tenant returned no id');
      return id;
    },
    async tenantIdBySlug(slug) {
      const result = await sql<{ id: string | null }>`SELECT tenant_id_by_slug(${slug}) AS id`.execute(db);
      return result.rows[0]?.id ?? undefined;
    },
    async listTenants() {
      const result = await sql<{ id: string; slug: string }>`SELECT id, slug FROM list_tenant_ids()`.execute(db);
      return result.rows;
    },
    inTenant(tenantId) {
      return createTenantDb(db, tenantId);
    },
    async ping() {
      await sql`SELECT 1`.execute(db);
    },
    async appliedMigrationVersions() {
      const rows = await db.selectFrom('schema_migrations').select('version').orderBy('version').execute();
      return rows.map((row) => row.version);
    },
  };
}
