import { sql, type Kysely, type Transaction } from 'kysely';
import type { Database, TenantTables } from './schema.ts';

declare const tenantScope: unique symbol;

/**
 * A transaction in which `app.tenant_id` is set transaction-locally, so every row-level-security
 * policy sees exactly one tenant. Services that touch tenant tables accept only this type; the
 * brand means a bare Kysely handle cannot be passed where a tenant-scoped one is expected.
 */
export type TenantTransaction = Transaction<TenantTables> & { readonly [tenantScope]: true };

/** The request-scoped handle: the only way request handlers and services reach tenant data. */
export type TenantDb = {
  readonly tenantId: string;
  transaction<T>(work: (trx: TenantTransaction) => Promise<T>): Promise<T>;
};

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export function isUuid(value: string): boolean {
  return UUID.test(value);
}

/**
 * Builds the tenant handle. Called in two places only: the authentication plugin (from the
 * caller's verified credential) and `systemDb.inTenant` (for jobs that loop over tenants).
 */
export function createTenantDb(db: Kysely<Database>, tenantId: string): TenantDb {
  if (!isUuid(tenantId)) throw new Error('tenant id must be a lower-case UUID');
  return {
    tenantId,
    transaction(work) {
      return db.transaction().execute(async (trx) => {
        // is_local = true: the setting dies with the transaction, so a pooled connection never
        // carries one tenant's context into the next request.
        await sql`SELECT set_config('app.tenant_id', ${tenantId}, true)`.execute(trx);
        return work(trx as unknown as TenantTransaction);
      });
    },
  };
}
