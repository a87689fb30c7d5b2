import { sql, type CompiledQuery } from '../../db/kysely.ts';
import type { TenantTransaction } from '../../db/tenant-db.ts';

type CurrentTenant = { id: string; slug: string; name: string; status: 'active' | 'suspended'; createdAt: Date };

/** Compiled once: the text has no tenant in it (row-level security and current_tenant_id() bind it). */
let currentTenantQuery: CompiledQuery<CurrentTenant> | undefined;

/** Row-level security shows a tenant its own row only; the WHERE clause says so explicitly as well. */
export async function findCurrentTenant(trx: TenantTransaction): Promise<CurrentTenant | undefined> {
  currentTenantQuery ??= trx
    .selectFrom('tenants')
    .select(['id', 'slug', 'name', 'status', 'created_at as createdAt'])
    .where('id', '=', sql<string>`current_tenant_id()`)
    .compile();
  const result = await trx.executeQuery(currentTenantQuery);
  return result.rows[0];
}
