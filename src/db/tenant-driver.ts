import { createHash } from 'node:crypto';
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
import { createRequire } from 'node:module';
import type { Writable } from 'node:stream';
import pg from 'pg';
import type { Logger } from '../logger.ts';

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
 *   (see statementName); the scoping statements are named too.
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

type Statement = { text: string; values: unknown[]; name?: string };

/**
 * pg's own conversion of a parameter to its wire text (dates, buffers, arrays, JSON), which its
 * Query applies to the query's values; the statements written in front of it need the same.
 */
const { prepareValue } = createRequire(import.meta.url)('pg/lib/utils.js') as { prepareValue: (value: unknown) => unknown };

/** The parts of pg's protocol connection that a batch writes to (pg-protocol's message writers). */
type ProtocolConnection = {
  stream: Writable;
  /** pg's per-connection record of named statements already parsed (its Query.prepare reads it). */
  parsedStatements: Record<string, string>;
  parse(message: { text: string; name: string; types: number[] }): void;
  bind(message: { portal: string; statement: string; values: unknown[]; valueMapper?: (value: unknown) => unknown }): void;
  describe(message: { type: 'P'; name: string }): void;
  execute(message: { portal: string; rows: number }): void;
  close(message: { type: 'S'; name: string }): void;
};

type QueryInternals = { prepare(connection: ProtocolConnection): void };

/**
 * What this connection's server session holds, by statement name: `pending` (Parse sent, answer
 * not yet in — a pipelined batch behind it may use it), `parsed`, or `uncertain` (a batch that
 * used it failed; it may or may not exist, so the next use closes and parses it again — closing a
 * statement that does not exist is no error). Kept here, not in pg's own record, because pg
 * credits every ParseComplete of a batch to its last statement.
 */
type StatementState = 'pending' | 'parsed' | 'uncertain';
const sessions = new WeakMap<object, Map<string, StatementState>>();

function sessionOf(connection: object): Map<string, StatementState> {
  let session = sessions.get(connection);
  if (!session) {
    session = new Map();
    sessions.set(connection, session);
  }
  return session;
}

/** pg's Query, with the two callbacks from its client that this subclass hooks into. */
const BaseQuery = pg.Query as unknown as new (config: pg.QueryConfig) => pg.Query & {
  handleReadyForQuery(connection: unknown): void;
  handleError(error: Error, connection: unknown): void;
};

/**
 * One query, optionally preceded by scoping statements, in one extended-protocol batch closed by
 * a single Sync. pg's own Query writes the query and the Sync and parses every answer (each
 * statement's result arrives in order; the query's is the last); this writes the prefix in front
 * and decides which named statements need parsing. An error in any statement makes PostgreSQL
 * skip the rest of the batch.
 */
class ScopedQuery extends BaseQuery {
  private session: Map<string, StatementState> | undefined;
  private readonly used: string[] = [];

  constructor(
    private readonly prefix: Statement[],
    private readonly statementText: string,
    values: unknown[],
    private readonly statementName: string | undefined,
    callback: (error: Error | undefined, result: unknown) => void,
  ) {
    // Text, values and callback as arguments, not as a config object: pg copies a config object
    // property by property (descriptors and all), a measurable cost on every query.
    super(statementText as unknown as pg.QueryConfig);
    const query = this as unknown as { values: unknown[]; callback: typeof callback; queryMode: string; name: string | undefined };
    query.values = values;
    query.callback = callback;
    query.queryMode = 'extended';
    if (statementName) query.name = statementName;
  }

  /** Writes Close (if uncertain) and Parse for a named statement this session does not hold yet. */
  private prepareNamed(protocol: ProtocolConnection, name: string, text: string): void {
    const session = this.session as Map<string, StatementState>;
    const state = session.get(name);
    this.used.push(name);
    if (state === 'pending' || state === 'parsed') return;
    if (state === 'uncertain') protocol.close({ type: 'S', name });
    session.set(name, 'pending');
    protocol.parse({ text, name, types: [] });
  }

  override submit = (connection: unknown): Error | null => {
    const protocol = connection as ProtocolConnection;
    this.session = sessionOf(protocol);
    protocol.stream.cork();
    try {
      for (const statement of this.prefix) {
        const name = statement.name ?? '';
        if (name) this.prepareNamed(protocol, name, statement.text);
        else protocol.parse({ text: statement.text, name: '', types: [] });
        protocol.bind({ portal: '', statement: name, values: statement.values, valueMapper: prepareValue });
        protocol.describe({ type: 'P', name: '' });
        protocol.execute({ portal: '', rows: 0 });
      }
      if (this.statementName) {
        // pg's Query.prepare parses unless its own record says the statement exists: make that
        // record say exactly what this session decided.
        const name = this.statementName;
        this.prepareNamed(protocol, name, this.statementText);
        // Parse, when needed, is written above (after a Close when uncertain): prepare must not
        // write another, so pg's record says parsed.
        protocol.parsedStatements[name] = this.statementText;
      }
      (this as unknown as QueryInternals).prepare(protocol);
    } finally {
      protocol.stream.uncork();
    }
    return null;
  };

  private failed = false;

  override handleReadyForQuery(connection: unknown): void {
    if (!this.failed) for (const name of this.used) this.session?.set(name, 'parsed');
    super.handleReadyForQuery(connection);
  }

  override handleError(error: Error, connection: unknown): void {
    this.failed = true;
    for (const name of this.used) this.session?.set(name, 'uncertain');
    super.handleError(error, connection);
  }
}

function scopedQuery(client: pg.PoolClient, prefix: Statement[], text: string, values: unknown[], name: string | undefined): Promise<pg.QueryResult> {
  return new Promise((resolve, reject) => {
    let settled = false;
    void client.query(
      new ScopedQuery(prefix, text, values, name, (error, results) => {
        if (settled) return;
        settled = true;
        if (error) return reject(error);
        // One result per statement of the batch; the query's own comes last.
        const all = results as pg.QueryResult | pg.QueryResult[];
        resolve(Array.isArray(all) ? (all.at(-1) as pg.QueryResult) : all);
      }) as unknown as pg.QueryConfig,
    );
  });
}

/**
 * Prepared statements, named after their text: PostgreSQL parses and plans a statement once per
 * connection instead of on every request, which is most of its work for short queries. Bounded:
 * past MAX_NAMED distinct texts (a query builder can produce many, e.g. IN lists of every length)
 * the rest run unnamed. Statements that select `*` stay unnamed: a migration adding a column would
 * make their cached plan fail with "cached plan must not change result type".
 */
const MAX_NAMED = 500;
const statementNames = new Map<string, string>();

function statementName(text: string): string | undefined {
  const known = statementNames.get(text);
  if (known) return known;
  if (statementNames.size >= MAX_NAMED || text.includes('*')) return undefined;
  const name = `rv_${createHash('sha256').update(text).digest('base64url').slice(0, 22)}`;
  statementNames.set(text, name);
  return name;
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
