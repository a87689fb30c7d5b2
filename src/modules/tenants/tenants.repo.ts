import { sql } from 'kysely';
import type { TenantTransaction } from '../../db/tenant-db.ts';

/** Row-level security shows a tenant its own row only; the WHERE clause says so explicitly as well. */
export async function findCurrentTenant(trx: TenantTransaction) {
  const row = await trx
    .selectFrom('tenants')
    .select(['id', 'slug', 'name', 'status', 'created_at as createdAt'])
    .where('id', '=', sql<string>`current_tenant_id()`)
    .executeTakeFirst();
  return row;
}
