import { Kysely, Transaction, type CompiledQuery } from './kysely.ts';
import type pg from 'pg';
import type { Logger } from '../logger.ts';
import type { Database, TenantTables } from './schema.ts';
import { deferOnConnection, TenantAwarePostgresDialect } from './tenant-driver.ts';

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

/**
 * What runs once a tenant transaction has committed, by transaction; `now` for the read handle,
 * whose every query commits on its own (what it read is committed).
 */
const commitActions = new WeakMap<object, (() => void)[] | 'now'>();

/** Brands a transaction in which app.tenant_id is set, and records which tenant that is. */
export function asTenantTransaction(trx: Transaction<Database>, tenantId: string, afterCommit: (() => void)[] | 'now'): TenantTransaction {
  commitActions.set(trx, afterCommit);
  return Object.defineProperty(trx, 'tenantId', { value: tenantId, enumerable: false }) as unknown as TenantTransaction;
}

/**
 * Runs `action` once `trx` has committed, and never if it rolls back: for in-process caches that
 * must not remember what the database did not keep (a key created in a transaction that failed).
 */
export function onCommit(trx: TenantTransaction, action: () => void): void {
  const actions = commitActions.get(trx);
  if (!actions) throw new Error('onCommit needs a transaction opened by a tenant handle');
  if (actions === 'now') action();
  else actions.push(action);
}

/**
 * Runs a write whose answer nobody needs (an audit event) in the same batch as the transaction's
 * next query, or as its COMMIT: a transaction that ends with it costs one round trip less. Its
 * failure fails that next query or the commit, with its own error, and the transaction rolls back.
 * Outside a write transaction (the read handle) it simply runs now.
 */
export async function deferWrite(trx: TenantTransaction, query: CompiledQuery): Promise<void> {
  const deferred = await trx.getExecutor().provideConnection(async (connection) => deferOnConnection(connection, query));
  if (!deferred) await trx.executeQuery(query);
}

/**
 * Awaits every one of `work` before failing with the first failure in order: no query of a
 * transaction may still be in flight, or start, once it rolls back.
 */
async function settledInOrder<T>(work: readonly Promise<T>[]): Promise<T[]> {
  const settled = await Promise.allSettled(work);
  const values: T[] = [];
  for (const outcome of settled) {
    if (outcome.status === 'rejected') throw outcome.reason;
    values.push(outcome.value);
  }
  return values;
}

/**
 * Sends `queries` one after another without waiting for an answer in between (the pool's pipeline
 * mode): one round trip for all of them, where Kysely runs the queries of a transaction strictly
 * one at a time. They run in the order given. Returns each one's rows once every one is answered;
 * one that fails fails the call with its own error. In a transaction, those after it then fail as
 * the aborted transaction's, and it rolls back; on the read handle (`TenantDb.read`) each query is
 * its own implicit transaction, with its own snapshot, and the others still run. Each answer has
 * its query's row type.
 */
export async function sendTogether<const Q extends readonly CompiledQuery<unknown>[]>(trx: TenantTransaction, queries: Q): Promise<{ -readonly [K in keyof Q]: Q[K] extends CompiledQuery<infer R> ? R[] : never }> {
  const results = await trx.getExecutor().provideConnection((connection) => settledInOrder(queries.map((query) => connection.executeQuery(query))));
  return results.map((result) => result.rows) as { -readonly [K in keyof Q]: Q[K] extends CompiledQuery<infer R> ? R[] : never };
}

/**
 * Builds the tenant handle over a Kysely instance whose driver is bound to that tenant (see
 * `tenantHandles`). Called in two places only: the authentication plugin (from the caller's
 * verified credential) and `systemDb.inTenant` (for jobs that loop over tenants).
 */
function createTenantDb(db: Kysely<Database>, reads: TenantTransaction, tenantId: string): TenantDb {
  const scoped = async <T>(mode: 'write' | 'snapshot', work: (trx: TenantTransaction) => Promise<T>) => {
    const builder = mode === 'write' ? db.transaction() : db.transaction().setAccessMode('read only').setIsolationLevel('repeatable read');
    // What the work asked to run once committed runs only when execute resolved, i.e. committed.
    const afterCommit: (() => void)[] = [];
    const result = await builder.execute((trx) => work(asTenantTransaction(trx, tenantId, afterCommit)));
    for (const action of afterCommit) action();
    return result;
  };
  return {
    tenantId,
    transaction: (work) => scoped('write', work),
    // A read needs no transaction of its own: each of its queries is one scoped, read-only batch
    // (tenant-driver.ts), so the same handle serves every read of this tenant.
    read: (work) => work(reads),
    snapshot: (work) => scoped('snapshot', work),
  };
}

/** Tenant handles kept per tenant; past this many the oldest are dropped (they are cheap to make). */
const MAX_HANDLES = 10_000;

/**
 * The factory of tenant handles over one pool. Each tenant gets its own Kysely instance whose
 * driver opens every transaction with that tenant's `app.tenant_id` (tenant-driver.ts): the
 * tenant travels with the handle itself, not in an ambient async context, so no request pays for
 * AsyncLocalStorage and no code path can run a query under a tenant it did not name.
 */
export function tenantHandles(pool: pg.Pool, logger: Logger): (tenantId: string) => TenantDb {
  const handles = new Map<string, TenantDb>();
  return (tenantId) => {
    const known = handles.get(tenantId);
    if (known) return known;
    if (!isUuid(tenantId)) throw new Error('tenant id must be a lower-case UUID');
    if (handles.size >= MAX_HANDLES) handles.delete(handles.keys().next().value as string);
    const db = new Kysely<Database>({ dialect: new TenantAwarePostgresDialect(pool, logger, tenantId) });
    const readDialect = new TenantAwarePostgresDialect(pool, logger, tenantId, true);
    const readDb = new Kysely<Database>({ dialect: readDialect });
    // A Transaction (what services take) over the read instance's executor: every query acquires a
    // connection, runs as one read-only batch in this tenant, and gives the connection back.
    const reads = new Transaction<Database>({ config: { dialect: readDialect }, dialect: readDialect, driver: readDialect.createDriver(), executor: readDb.getExecutor() });
    const handle = createTenantDb(db, asTenantTransaction(reads, tenantId, 'now'), tenantId);
    handles.set(tenantId, handle);
    return handle;
  };
}
