import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import type { Writable } from 'node:stream';
import pg from 'pg';

/**
 * One query with the statements that scope it, written as one extended-protocol batch (one
 * write, one Sync, one answer), and the per-connection bookkeeping of named prepared statements
 * that this needs. Used by the tenant-aware driver (tenant-driver.ts), which decides what goes in
 * front of each query.
 */

export type Statement = { text: string; values: unknown[]; name?: string };

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

export function scopedQuery(client: pg.PoolClient, prefix: Statement[], text: string, values: unknown[], name: string | undefined): Promise<pg.QueryResult> {
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

export function statementName(text: string): string | undefined {
  const known = statementNames.get(text);
  if (known) return known;
  if (statementNames.size >= MAX_NAMED || text.includes('*')) return undefined;
  const name = `rv_${createHash('sha256').update(text).digest('base64url').slice(0, 22)}`;
  statementNames.set(text, name);
  return name;
}

