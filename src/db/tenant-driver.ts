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
} from './kysely.ts';
import type pg from 'pg';
import type { Logger } from '../logger.ts';
import { scopedQuery, statementName, type Statement } from './scoped-query.ts';

/**
 * Kysely's PostgreSQL driver, reduced to what Ringvakt uses, built around one fact of this
 * workload: a round trip and a socket write cost more than the small queries themselves. So the
 * statements that scope a transaction never travel alone; they ride in the same protocol batch
 * (one write, one Sync, one answer) as the first query of the work.
 *
 * - **Reads** (`read only`, default isolation) have no BEGIN and no COMMIT at all. Every query is
 *   sent as its own batch `set_config('app.tenant_id', $tenant, true),
 *   set_config('transaction_read_only', 'on', true); <query>; Sync`. PostgreSQL runs a batch up to
 *   its Sync as one implicit transaction, so the tenant and the read-only mode hold for exactly
 *   that query and end with it. Under READ COMMITTED every statement takes a fresh snapshot
 *   anyway, so a read of several queries sees what it would have seen inside BEGIN … COMMIT.
 *   If the setting fails, PostgreSQL skips the query: it never runs without its tenant.
 * - **Writes and snapshots** open with `BEGIN [ISOLATION …] [READ ONLY]` and the tenant setting,
 *   sent in the same batch as the first query; later queries and COMMIT follow as usual.
 * - **Prepared statements**: a query is named after its text and parsed once per connection
 *   (statementName in scoped-query.ts, which also writes the batches); the scoping statements
 *   are named too.
 * - **Deferred writes** (deferWrite in tenant-db.ts) ride in front of the next query or the COMMIT.
 *
 * The tenant is the driver's own: each tenant handle (tenant-db.ts) has a Kysely instance whose
 * driver is bound to its tenant; the system handle's driver has none.
 */
export class TransactionRolledBackError extends Error {
  constructor() {
    super('The transaction was rolled back by the database because one of its statements failed');
    this.name = 'TransactionRolledBackError';
  }
}

const READ_SCOPE = `SELECT set_config('app.tenant_id', $1, true), set_config('transaction_read_only', 'on', true)`;
const TENANT_SCOPE = `SELECT set_config('app.tenant_id', $1, true)`;

/** How the queries of the current checkout are scoped (see the comment at the top). */
type Mode =
  | { kind: 'plain' }
  | { kind: 'statements'; prefix: Statement[] }
  | {
      kind: 'transaction';
      /** BEGIN and the tenant setting, until the first batch of the transaction carries them. */
      opening: Statement[] | undefined;
      readOnly: boolean;
      /** Writes whose answer nobody awaits: they ride in front of the next query, or the COMMIT. */
      deferred: Statement[];
      /**
       * For a READ COMMITTED write transaction: the tenant setting alone. Should the transaction
       * send nothing but deferred writes, they go as one implicit transaction (no BEGIN, no COMMIT).
       */
      implicitOpening: Statement[] | undefined;
    };

/**
 * An error without an SQLSTATE (terminated, reset), a connection exception (class 08) or an
 * operator intervention (57P0x) is the connection's, not the statement's: that connection must
 * never go back to the pool.
 */
function isConnectionFailure(error: unknown): boolean {
  const code = (error as { code?: unknown }).code;
  return typeof code !== 'string' || !/^[0-9A-Z]{5}$/.test(code) || code.startsWith('08') || code.startsWith('57P');
}

class PipelinedConnection implements DatabaseConnection {
  mode: Mode = { kind: 'plain' };
  /** Set when the connection failed; it is then destroyed on release, never pooled again. */
  broken = false;

  /**
   * While a connection is checked out, pg-pool no longer listens for its `error` event; a backend
   * that dies mid-request (restart, failover, timeout) would then be an unhandled error that ends
   * the process. The failure still reaches the query in flight; this only keeps the process up.
   */
  readonly onError = (error: Error) => {
    this.broken = true;
    this.logger.warn({ err: error }, 'database connection failed during a request');
  };

  constructor(
    readonly client: pg.PoolClient,
    private readonly logger: Logger,
  ) {
    client.on('error', this.onError);
  }

  /** The statements the transaction's next batch must carry in front of its own: opening, then deferred. */
  takePending(mode: Extract<Mode, { kind: 'transaction' }>): Statement[] {
    const pending = [...(mode.opening ?? []), ...mode.deferred];
    mode.opening = undefined;
    mode.deferred = [];
    return pending;
  }

  /**
   * Queues a write whose answer the caller does not need, to be sent in front of the
   * transaction's next query or its COMMIT (one round trip instead of two). Only inside a write
   * transaction; returns false elsewhere, and the caller then runs the statement itself.
   */
  defer(compiledQuery: CompiledQuery): boolean {
    const mode = this.mode;
    if (mode.kind !== 'transaction' || mode.readOnly) return false;
    const name = statementName(compiledQuery.sql);
    mode.deferred.push({ text: compiledQuery.sql, values: [...compiledQuery.parameters], ...(name ? { name } : {}) });
    return true;
  }

  async executeQuery<R>(compiledQuery: CompiledQuery): Promise<QueryResult<R>> {
    const values = [...compiledQuery.parameters];
    let result: pg.QueryResult;
    const mode = this.mode;
    try {
      const name = statementName(compiledQuery.sql);
      if (mode.kind === 'statements') {
        result = await scopedQuery(this.client, mode.prefix, compiledQuery.sql, values, name);
      } else if (mode.kind === 'transaction' && (mode.opening || mode.deferred.length > 0)) {
        result = await scopedQuery(this.client, this.takePending(mode), compiledQuery.sql, values, name);
      } else {
        result = name ? await scopedQuery(this.client, [], compiledQuery.sql, values, name) : await this.client.query(compiledQuery.sql, values);
      }
    } catch (error) {
      if (isConnectionFailure(error)) this.broken = true;
      throw error;
    }
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
}

/** The statement in front of every query of a read: the tenant, and read-only, for that query alone. */
function readPrefix(tenantId: string | undefined): Statement[] {
  return [
    tenantId === undefined
      ? { text: `SELECT set_config('transaction_read_only', 'on', true)`, values: [] }
      : { text: READ_SCOPE, values: [tenantId], name: 'rv_read_scope' },
  ];
}

class TenantAwareDriver implements Driver {
  private readonly readMode: Mode;

  constructor(
    private readonly pool: pg.Pool,
    private readonly logger: Logger,
    private readonly tenantId: string | undefined,
    /** Every query is a read of its own (see TenantAwarePostgresDialect), never in a transaction. */
    private readonly readsOnly: boolean,
  ) {
    this.readMode = { kind: 'statements', prefix: readPrefix(tenantId) };
  }

  async init(): Promise<void> {}

  async acquireConnection(): Promise<DatabaseConnection> {
    const connection = new PipelinedConnection(await this.pool.connect(), this.logger);
    if (this.readsOnly) connection.mode = this.readMode;
    return connection;
  }

  async beginTransaction(connection: DatabaseConnection, settings: TransactionSettings): Promise<void> {
    if (this.readsOnly) throw new Error('A read handle opens no transactions');
    const pipelined = connection as PipelinedConnection;
    const tenantId = this.tenantId;
    const readOnly = settings.accessMode === 'read only';
    // is_local = true: a setting ends with its transaction, so a pooled connection never carries
    // one tenant's context into the next request.
    if (readOnly && settings.isolationLevel === undefined) {
      pipelined.mode = this.readMode;
      return;
    }
    const isolation = settings.isolationLevel ? ` ISOLATION LEVEL ${settings.isolationLevel.toUpperCase()}` : '';
    const scope: Statement[] = tenantId === undefined ? [] : [{ text: TENANT_SCOPE, values: [tenantId], name: 'rv_tenant_scope' }];
    const opening: Statement[] = [{ text: `BEGIN${isolation}${readOnly ? ' READ ONLY' : ''}`, values: [] }, ...scope];
    const implicitOpening = !readOnly && settings.isolationLevel === undefined ? scope : undefined;
    pipelined.mode = { kind: 'transaction', opening, readOnly, deferred: [], implicitOpening };
  }

  async commitTransaction(connection: DatabaseConnection): Promise<void> {
    const pipelined = connection as PipelinedConnection;
    const mode = pipelined.mode;
    pipelined.mode = { kind: 'plain' };
    if (mode.kind === 'transaction' && mode.deferred.length > 0) {
      if (mode.opening && mode.implicitOpening && mode.deferred.every((statement) => /^insert\s/i.test(statement.text))) {
        // Nothing was sent yet and nothing but deferred INSERTs is left: one implicit transaction,
        // `set_config(tenant); INSERT; …; Sync` (other statements, such as SET LOCAL, need BEGIN). PostgreSQL runs a batch up to its Sync atomically
        // (a failing statement rolls back the whole batch), so BEGIN and COMMIT add nothing.
        await this.commitImplicitly(pipelined, [...mode.implicitOpening, ...mode.deferred]);
        return;
      }
      await this.commitWithDeferred(pipelined, pipelined.takePending(mode));
      return;
    }
    // Reads ended with each query's Sync; a transaction that ran no query never began.
    if (mode.kind !== 'transaction' || mode.opening) return;
    // PostgreSQL answers COMMIT with ROLLBACK when a statement of the transaction failed (and the
    // caller carried on): that is a failed transaction, never a success.
    const commit = pipelined.client.query('COMMIT').then((result) => {
      if (result.command === 'ROLLBACK') throw new TransactionRolledBackError();
    });
    if (mode.readOnly) {
      // A read-only transaction has nothing to make durable: the answer may go out while COMMIT
      // is still on the wire. The next user of this connection queues behind it.
      commit.catch((error: unknown) => this.logger.warn({ err: error }, 'read-only transaction did not commit'));
      return;
    }
    await commit;
  }

  private async commitImplicitly(pipelined: PipelinedConnection, statements: Statement[]): Promise<void> {
    const last = statements.pop() as Statement;
    try {
      await scopedQuery(pipelined.client, statements, last.text, last.values, last.name);
    } catch (error) {
      if (isConnectionFailure(error)) pipelined.broken = true;
      throw error;
    }
  }

  /**
   * Deferred writes (and the opening, if nothing was sent yet) and COMMIT in one batch. A failing
   * statement makes PostgreSQL skip the rest, COMMIT included, and leaves the transaction block
   * aborted: it is rolled back here and the statement's own error is what the caller sees.
   */
  private async commitWithDeferred(pipelined: PipelinedConnection, pending: Statement[]): Promise<void> {
    let result: pg.QueryResult;
    try {
      result = await scopedQuery(pipelined.client, pending, 'COMMIT', [], undefined);
    } catch (error) {
      if (isConnectionFailure(error)) {
        pipelined.broken = true;
        throw error;
      }
      try {
        await pipelined.client.query('ROLLBACK');
      } catch (rollbackError) {
        pipelined.broken = true;
        this.logger.warn({ err: rollbackError }, 'ROLLBACK failed; discarding the connection');
      }
      // An earlier statement failed and the caller carried on: the transaction was already lost.
      if ((error as { code?: unknown }).code === '25P02') throw new TransactionRolledBackError();
      throw error;
    }
    if (result.command === 'ROLLBACK') throw new TransactionRolledBackError();
  }

  async rollbackTransaction(connection: DatabaseConnection): Promise<void> {
    const pipelined = connection as PipelinedConnection;
    const mode = pipelined.mode;
    pipelined.mode = { kind: 'plain' };
    if (mode.kind !== 'transaction' || mode.opening) return;
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
    // The pool is shared by every tenant's instances; only the system instance (no tenant) ends it.
    if (this.tenantId === undefined && !this.readsOnly) await this.pool.end();
  }
}

export class TenantAwarePostgresDialect implements Dialect {
  /**
   * `tenantId`: every transaction of this instance runs as that tenant; undefined for the system
   * handle. `readsOnly`: each query is sent as a scoped read batch on a connection of its own
   * checkout, with no transaction around it (the tenant handle's `read`).
   */
  constructor(
    private readonly pool: pg.Pool,
    private readonly logger: Logger,
    private readonly tenantId?: string,
    private readonly readsOnly = false,
  ) {}

  createDriver(): Driver {
    return new TenantAwareDriver(this.pool, this.logger, this.tenantId, this.readsOnly);
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

/**
 * Queues a write on the connection of a write transaction (see PipelinedConnection.defer);
 * false when the connection is not in one.
 */
export function deferOnConnection(connection: DatabaseConnection, compiledQuery: CompiledQuery): boolean {
  return connection instanceof PipelinedConnection && connection.defer(compiledQuery);
}
