import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { inject } from 'vitest';
import { loadConfig, type Config } from '../../src/config.ts';
import { openDatabase, type DatabaseHandles } from '../../src/db/database.ts';
import type { Logger } from '../../src/logger.ts';
import { capturingLogger } from './app.ts';
import { assertNoPersonalDataLeaked } from './canary.ts';

export const adminUrl = (): string => inject('adminUrl');
export const serverLabel = (): string => inject('serverLabel');

export function urlFor(database: string, base: string = adminUrl()): string {
  const url = new URL(base);
  url.pathname = `/${database}`;
  return url.toString();
}

export async function adminQuery<R extends pg.QueryResultRow = pg.QueryResultRow>(
  sqlText: string,
  values: unknown[] = [],
  database = 'postgres',
  server: string = adminUrl(),
): Promise<pg.QueryResult<R>> {
  const client = new pg.Client({ connectionString: urlFor(database, server) });
  await client.connect();
  try {
    return await client.query<R>(sqlText, values);
  } finally {
    await client.end();
  }
}

export type TestDatabase = {
  name: string;
  url: string;
  config: Config;
  logger: Logger;
  handles: DatabaseHandles;
  /** A superuser query in this database (for set-up and for reading what really happened). */
  superQuery<R extends pg.QueryResultRow = pg.QueryResultRow>(sqlText: string, values?: unknown[]): Promise<pg.QueryResult<R>>;
  /** The runtime role's connection string, exactly as the server logs in. */
  runtimeUrl: string;
  /** A client logged in as the runtime role, exactly as the server is. */
  runtimeClient(): Promise<pg.Client>;
  drop(): Promise<void>;
};

/**
 * A fresh database (own roles, migrated) on the test server — or on `server`, a superuser's URL of
 * a PostgreSQL server of the test's own; drop() removes database and roles.
 */
export async function createTestDatabase(
  options: { logger?: Logger; env?: NodeJS.ProcessEnv; ownerAccess?: boolean; server?: string; settings?: Record<string, string> } = {},
): Promise<TestDatabase> {
  const name = `rv_test_${randomBytes(6).toString('hex')}`;
  const server = options.server ?? adminUrl();
  await adminQuery(`CREATE DATABASE ${name}`, [], 'postgres', server);
  // Server settings for every session of this database (set before any connects), e.g. deadlock_timeout.
  for (const [setting, value] of Object.entries(options.settings ?? {})) {
    if (!/^[a-z_]+$/.test(setting) || !/^[\w .]+$/.test(value)) throw new Error(`not a plain setting: ${setting}`);
    await adminQuery(`ALTER DATABASE ${name} SET ${setting} = '${value}'`, [], 'postgres', server);
  }
  const url = urlFor(name, server);
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'ringvakt-test-data-'));
  chmodSync(dataDir, 0o711);
  const config = loadConfig({ DATABASE_URL: url, RINGVAKT_DATA_DIR: dataDir, RINGVAKT_LOG_LEVEL: 'silent', ...options.env });
  // Not silent: every line goes to the personal-data canary (canary.ts), checked on drop().
  const logger = options.logger ?? capturingLogger('debug').logger;
  const handles = await openDatabase(config, logger, { applyMigrations: true, ownerAccess: options.ownerAccess ?? false });
  const runtimeUrl = new URL(url);
  runtimeUrl.username = handles.roles.runtime;
  runtimeUrl.password = readFileSync(path.join(dataDir, 'secrets', `${handles.roles.runtime}.password`), 'utf8').trim();
  return {
    name,
    url,
    config,
    logger,
    handles,
    superQuery: (sqlText, values = []) => adminQuery(sqlText, values, name, server),
    runtimeUrl: runtimeUrl.toString(),
    async runtimeClient() {
      const client = new pg.Client({ connectionString: runtimeUrl.toString(), options: '-c search_path=ringvakt' });
      await client.connect();
      return client;
    },
    async drop() {
      await handles.close();
      const audit = await adminQuery<{ row: string }>(
        `SELECT concat_ws(' ', actor_id, target_type, target_id, source_ip, request_id, details::text) AS row FROM ringvakt.audit_events`,
        [],
        name,
        server,
      );
      await adminQuery(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`, [], 'postgres', server);
      await adminQuery(`DROP ROLE IF EXISTS ${handles.roles.runtime}`, [], 'postgres', server);
      await adminQuery(`DROP ROLE IF EXISTS ${handles.roles.owner}`, [], 'postgres', server);
      rmSync(dataDir, { recursive: true, force: true });
      // The canary: no registered personal data in this database's audit rows, logs or problem bodies.
      assertNoPersonalDataLeaked(audit.rows.map((row) => ({ where: 'an audit event', text: row.row })));
    },
  };
}
