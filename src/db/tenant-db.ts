import type { Kysely, Transaction } from 'kysely';
import type { Database, TenantTables } from './schema.ts';
import { tenantScope } from './tenant-driver.ts';

declare const tenantBrand: unique symbol;

/**
 * A transaction in which `app.tenant_id` is set transaction-locally, so every row-level-security
 * policy sees exactly one tenant. Services that touch tenant tables accept only this type; the
 * brand means a bare Kysely handle cannot be passed where a tenant-scoped one is expected.
 */
export type TenantTransaction = Transaction<TenantTables> & { readonly [tenantBrand]: true; readonly tenantId: string };

/** The request-scoped handle: the only way request handlers and services reach tenant data. */
export type TenantDb = {
  readonly tenantId: string;
  /** Reads and writes in one transaction. */
  transaction<T>(work: (trx: TenantTransaction) => Promise<T>): Promise<T>;
  /** A READ ONLY transaction: any write fails; the answer need not wait for COMMIT. */
  read<T>(work: (trx: TenantTransaction) => Promise<T>): Promise<T>;
  /** A READ ONLY, REPEATABLE READ transaction: every query sees one snapshot (for verification). */
  snapshot<T>(work: (trx: TenantTransaction) => Promise<T>): Promise<T>;
};

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

function isUuid(value: string): boolean {
  return UUID.test(value);
}

/** Brands a transaction in which app.tenant_id is set, and records which tenant that is. */
export function asTenantTransaction(trx: Transaction<Database>, tenantId: string): TenantTransaction {
  return Object.defineProperty(trx, 'tenantId', { value: tenantId, enumerable: false }) as unknown as TenantTransaction;
}

/**
 * Builds the tenant handle. Called in two places only: the authentication plugin (from the
 * caller's verified credential) and `systemDb.inTenant` (for jobs that loop over tenants).
 */
export function createTenantDb(db: Kysely<Database>, tenantId: string): TenantDb {
  if (!isUuid(tenantId)) throw new Error('tenant id must be a lower-case UUID');
  // The driver (tenant-driver.ts) opens each transaction with BEGIN and
  // set_config('app.tenant_id', tenantId, true), reading the tenant from this scope.
  const scoped = <T>(mode: 'write' | 'read' | 'snapshot', work: (trx: TenantTransaction) => Promise<T>) =>
    tenantScope.run({ tenantId, afterCommit: [] }, () => {
      const builder =
        mode === 'write'
          ? db.transaction()
          : mode === 'read'
            ? db.transaction().setAccessMode('read only')
            : db.transaction().setAccessMode('read only').setIsolationLevel('repeatable read');
      return builder.execute((trx) => work(asTenantTransaction(trx, tenantId)));
    });
  return {
    tenantId,
    transaction: (work) => scoped('write', work),
    read: (work) => scoped('read', work),
    snapshot: (work) => scoped('snapshot', work),
  };
}
