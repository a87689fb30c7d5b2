import { AsyncLocalStorage } from 'node:async_hooks';
import {
  PostgresAdapter,
  PostgresIntrospector,
  PostgresQueryCompiler,
  type CompiledQuery,
  type DatabaseConnection,
  type DatabaseIntrospector,
  type Dialect,
  type DialectAdapter,
  type Driver,
  type Kysely,
  type QueryCompiler,
  type QueryResult,
  type TransactionSettings,
} from 'kysely';
import type { Writable } from 'node:stream';
import type pg from 'pg';
import type { Logger } from '../logger.ts';

/**
 * Kysely's PostgreSQL driver, reduced to what Ringvakt uses, with one change that matters for
 * speed: a transaction's opening statements — BEGIN and the transaction-local tenant setting —
 * are sent without waiting for their answers. With pg's pipeline mode they leave in the same write
 * as the transaction's first query, so a tenant-scoped read costs one round trip instead of three.
 *
 * Order is still guaranteed: pg sends a connection's queries in the order they were queued, and
 * both opening statements are queued before the work's first query exists. If either fails, the
 * transaction is aborted, the work's queries fail, and commit reports the first failure.
 *
 * The tenant comes from `tenantScope`, which only the tenant handle (tenant-db.ts) enters.
 */
export type TenantScope = { tenantId: string; afterCommit: (() => void)[] };
export const tenantScope = new AsyncLocalStorage<TenantScope>();

/**
 * Runs `action` once the current tenant transaction has committed, and never if it rolls back:
 * for in-process caches that must not remember what the database did not keep (a key created in
 * a transaction that failed). Returns false, and does nothing, outside a tenant transaction.
 */
export function onCommit(action: () => void): boolean {
  const scope = tenantScope.getStore();
  if (!scope) return false;
  scope.afterCommit.push(action);
  return true;
}

export class TransactionRolledBackError extends Error {
  constructor() {
    super('The transaction was rolled back by the database because one of its statements failed');
    this.name = 'TransactionRolledBackError';
  }
}

class PipelinedConnection implements DatabaseConnection {
  opening: Promise<unknown>[] = [];
  readOnly = false;
  afterCommit: (() => void)[] = [];
  /** Set when the connection failed; it is then destroyed on release, never pooled again. */
  broken = false;

  /**
   * While a connection is checked out, pg-pool no longer listens for its `error` event; a backend
   * that dies mid-request (restart, failover, timeout) would then be an unhandled error that ends
   * the process. The failure still reaches the query in flight; this only keeps the process up.
   */
  readonly onError = (error: Error) => this.logger.warn({ err: error }, 'database connection failed during a request');

  constructor(
    readonly client: pg.PoolClient,
    private readonly logger: Logger,
  ) {
    client.on('error', this.onError);
  }

  async executeQuery<R>(compiledQuery: CompiledQuery): Promise<QueryResult<R>> {
    const result = await this.client.query(compiledQuery.sql, [...compiledQuery.parameters]);
    const { command, rowCount } = result;
    return {
      rows: (result.rows ?? []) as R[],
      ...(command === 'INSERT' || command === 'UPDATE' || command === 'DELETE' || command === 'MERGE'
        ? { numAffectedRows: BigInt(rowCount ?? 0) }
        : {}),
    };
  }

  // eslint-disable-next-line require-yield
  async *streamQuery<R>(): AsyncIterableIterator<QueryResult<R>> {
    throw new Error('Streaming queries are not supported on the pipelined pool');
  }

  /** Waits for BEGIN and the tenant setting; throws the first failure. */
  async openingSettled(): Promise<void> {
    const outcomes = await Promise.allSettled(this.opening);
    this.opening = [];
    const failed = outcomes.find((outcome) => outcome.status === 'rejected');
    if (failed) throw (failed as PromiseRejectedResult).reason;
  }
}

class TenantAwareDriver implements Driver {
  constructor(
    private readonly pool: pg.Pool,
    private readonly logger: Logger,
  ) {}

  async init(): Promise<void> {}

  async acquireConnection(): Promise<DatabaseConnection> {
    return new PipelinedConnection(await this.pool.connect(), this.logger);
  }

  async beginTransaction(connection: DatabaseConnection, settings: TransactionSettings): Promise<void> {
    const pipelined = connection as PipelinedConnection;
    // Hold the socket's writes until the work's first query is queued too, so the three leave in
    // one system call: on a loaded host, writes to the database socket cost more than the queries.
    const socket = (pipelined.client as unknown as { connection?: { stream?: Writable } }).connection?.stream;
    if (socket && typeof socket.cork === 'function') {
      socket.cork();
      setImmediate(() => socket.uncork());
    }
    const scope = tenantScope.getStore();
    const tenantId = scope?.tenantId;
    pipelined.afterCommit = scope?.afterCommit ?? [];
    pipelined.readOnly = settings.accessMode === 'read only';
    const isolation = settings.isolationLevel ? ` ISOLATION LEVEL ${settings.isolationLevel.toUpperCase()}` : '';
    const opening = [pipelined.client.query(`BEGIN${isolation}${pipelined.readOnly ? ' READ ONLY' : ''}`)];
    if (tenantId !== undefined) {
      // is_local = true: the setting ends with the transaction, so a pooled connection never
      // carries one tenant's context into the next request.
      opening.push(pipelined.client.query(`SELECT set_config('app.tenant_id', $1, true)`, [tenantId]));
    }
    // Failures surface through the work's own queries and again at commit; never as unhandled.
    for (const statement of opening) statement.catch(() => undefined);
    pipelined.opening = opening;
  }

  async commitTransaction(connection: DatabaseConnection): Promise<void> {
    const pipelined = connection as PipelinedConnection;
    await pipelined.openingSettled();
    // PostgreSQL answers COMMIT with ROLLBACK when a statement of the transaction failed (and the
    // caller carried on): that is a failed transaction, never a success.
    const afterCommit = pipelined.afterCommit;
    pipelined.afterCommit = [];
    const commit = pipelined.client.query('COMMIT').then((result) => {
      if (result.command === 'ROLLBACK') throw new TransactionRolledBackError();
      for (const action of afterCommit) action();
    });
    if (pipelined.readOnly) {
      // A read-only transaction has nothing to make durable: the answer may go out while COMMIT
      // is still on the wire. The next user of this connection queues behind it.
      commit.catch((error: unknown) => this.logger.warn({ err: error }, 'read-only transaction did not commit'));
      return;
    }
    await commit;
  }

  async rollbackTransaction(connection: DatabaseConnection): Promise<void> {
    const pipelined = connection as PipelinedConnection;
    pipelined.afterCommit = [];
    await pipelined.openingSettled().catch(() => undefined);
    try {
      await pipelined.client.query('ROLLBACK');
    } catch (error) {
      // The connection is gone (the server ended it, or it failed): nothing is left to roll back.
      // Keep the caller's original error, and make sure this connection is never reused.
      pipelined.broken = true;
      this.logger.warn({ err: error }, 'ROLLBACK failed; discarding the connection');
    }
  }

  async releaseConnection(connection: DatabaseConnection): Promise<void> {
    const pipelined = connection as PipelinedConnection;
    pipelined.client.off('error', pipelined.onError);
    pipelined.client.release(pipelined.broken ? true : undefined);
  }

  async destroy(): Promise<void> {
    await this.pool.end();
  }
}

export class TenantAwarePostgresDialect implements Dialect {
  constructor(
    private readonly pool: pg.Pool,
    private readonly logger: Logger,
  ) {}

  createDriver(): Driver {
    return new TenantAwareDriver(this.pool, this.logger);
  }
  createQueryCompiler(): QueryCompiler {
    return new PostgresQueryCompiler();
  }
  createAdapter(): DialectAdapter {
    return new PostgresAdapter();
  }
  createIntrospector(db: Kysely<unknown>): DatabaseIntrospector {
    return new PostgresIntrospector(db);
  }
}
