import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { Kysely } from './kysely.ts';
import pg from 'pg';
import type { Config } from '../config.ts';
import type { Logger } from '../logger.ts';
import { readSecretFile, writeSecretFile } from '../secret-files.ts';
import type { EmbeddedCluster } from './embedded-postgres.ts';
import { loadMigrations, migrate, type Migration } from './migrate.ts';
import { inspectProvisioning, provision, ProvisioningError, rolesFor, SCHEMA, type DatabaseRoles } from './provision.ts';
import type { Database } from './schema.ts';
import { createSystemDb, type SystemDb } from './system-db.ts';
import { tenantHandles, type TenantDb } from './tenant-db.ts';
import { TenantAwarePostgresDialect } from './tenant-driver.ts';
import { createFieldCipher, type FieldCipher } from '../crypto/field-cipher.ts';
import { createKeyring, type Keyring } from '../crypto/keyring.ts';
import { verifyRootKey } from '../crypto/root-key-check.ts';
import { createRootKeyProvider } from '../crypto/root-keys/create-root-key-provider.ts';
import type { RootKeyProvider } from '../crypto/root-keys/root-key-provider.ts';
import { startChangeListener, type ChangeListener } from './change-listener.ts';

export { EMBEDDED_DATABASE, resolveMigratorUrl, type MigratorTarget } from './embedded-database.ts';
import { resolveMigratorUrl, type MigratorTarget } from './embedded-database.ts';

export type DatabaseHandles = {
  roles: DatabaseRoles;
  /** Notifications from PostgreSQL (LISTEN/NOTIFY), shared by every subscriber in this process. */
  changes: ChangeListener;
  migrations: Migration[];
  /** Only for the tenant and system handles and for pool metrics; never for services. */
  pool: pg.Pool;
  systemDb: SystemDb;
  forTenant(tenantId: string): TenantDb;
  embedded: EmbeddedCluster | undefined;
  /**
   * Runs `work` in one transaction as the owner role, on a connection of its own. Only for
   * operator commands that the owner alone may run (audit retention). The server opens the
   * database with `ownerAccess` only for its scheduled backups (and never calls this); without
   * it, this throws.
   */
  asOwner<T>(work: (client: pg.ClientBase) => Promise<T>): Promise<T>;
  /** The migrator's connection string (a superuser with the embedded server), for backup and restore; only with `ownerAccess`. */
  migratorUrl(): string;
  /**
   * The key hierarchy (root key provider, keyring, field cipher), made on first use — after the
   * configured root key has been checked against this database (a wrong key fails here, before
   * anything is encrypted). Commands that never touch encrypted data never create a key file.
   */
  crypto(): Promise<CryptoHandles>;
  close(): Promise<void>;
};

export type CryptoHandles = { root: RootKeyProvider; keyring: Keyring; cipher: FieldCipher };

/** The runtime role's pool, as every part of Ringvakt uses it. */
export function runtimePool(runtimeUrl: string, max: number, logger: Logger): pg.Pool {
  const pool = new pg.Pool({
    connectionString: runtimeUrl,
    // Queries on a connection are written without waiting for earlier answers (see tenant-driver.ts).
    pipeline: true,
    max,
    application_name: 'ringvakt',
    // Bound every statement and every idle transaction: a stuck request cannot pin a connection.
    options: `-c search_path=${SCHEMA} -c statement_timeout=30000 -c idle_in_transaction_session_timeout=60000`,
  });
  pool.on('error', (error) => logger.error({ err: error }, 'idle database connection failed'));
  return pool;
}

/**
 * The tenant and system handles and the key hierarchy over a runtime pool: what the server and
 * the CLI get from openDatabase, and what a worker thread (contact imports) builds for itself over
 * a pool of its own.
 */
export function runtimeHandles(
  pool: pg.Pool,
  config: Pick<Config, 'keys' | 'dataDir'>,
  logger: Logger,
): { kysely: Kysely<Database>; forTenant: (tenantId: string) => TenantDb; systemDb: SystemDb; crypto: () => Promise<CryptoHandles> } {
  const kysely = new Kysely<Database>({ dialect: new TenantAwarePostgresDialect(pool, logger) });
  const forTenant = tenantHandles(pool, logger);
  const systemDb = createSystemDb(kysely, forTenant);
  let crypto: Promise<CryptoHandles> | undefined;
  return {
    kysely,
    forTenant,
    systemDb,
    crypto() {
      crypto ??= (async () => {
        const root = await createRootKeyProvider(config);
        await verifyRootKey(systemDb, root);
        const keyring = createKeyring(root);
        return { root, keyring, cipher: createFieldCipher(keyring) };
      })();
      // A failure (wrong key) is not remembered: the next call tries again.
      crypto.catch(() => {
        crypto = undefined;
      });
      return crypto;
    },
  };
}

export function databaseNameOf(connectionString: string): string {
  return decodeURIComponent(new URL(connectionString).pathname.replace(/^\//, '')) || 'postgres';
}

function runtimeUrlFrom(migratorUrl: string, roles: DatabaseRoles, password: string): string {
  const url = new URL(migratorUrl);
  url.username = encodeURIComponent(roles.runtime);
  url.password = encodeURIComponent(password);
  return url.toString();
}

/**
 * The server must never hold more rights than the runtime role's: refuse to start when the
 * configured runtime login (DATABASE_APP_URL, say) is a superuser, can bypass row-level security,
 * or can act as the owner. Also turns a wrong runtime password into a clear message.
 */
async function assertRuntimeRoleIsRestricted(pool: pg.Pool, roles: DatabaseRoles): Promise<void> {
  let row: { rolname: string; rolsuper: boolean; rolbypassrls: boolean; owner_member: boolean } | undefined;
  try {
    const result = await pool.query(
      `SELECT rolname, rolsuper, rolbypassrls, pg_has_role(current_user, $1, 'MEMBER') AS owner_member
         FROM pg_roles WHERE rolname = current_user`,
      [roles.owner],
    );
    row = result.rows[0];
  } catch (error) {
    if ((error as { code?: string }).code === '28P01') {
      throw new ProvisioningError(`The runtime role ${roles.runtime} refused its password: the password file or DATABASE_APP_URL is out of date.`);
    }
    throw error;
  }
  if (!row || row.rolsuper || row.rolbypassrls || row.owner_member) {
    throw new ProvisioningError(
      `The runtime database login ${row?.rolname ?? '(unknown)'} has too many rights (superuser, BYPASSRLS or member of ${roles.owner}). ` +
        'Ringvakt refuses to run with it: row-level security would not protect tenants. Use the restricted runtime role.',
    );
  }
}

export type OpenOptions = {
  applyMigrations: boolean;
  /** CLI commands use the embedded server a running `serve` started, instead of refusing. */
  attachToRunning?: boolean;
  /** Operator commands that need the owner's rights (see DatabaseHandles.asOwner). */
  ownerAccess?: boolean;
  /** The embedded server already starting (src/serve-main.ts), instead of starting it here. */
  target?: Promise<MigratorTarget>;
};

/**
 * Starts (or reaches) PostgreSQL, provisions the roles, applies migrations, and opens the pool
 * of the runtime role. The server holds no connection with more rights than that, except the
 * short-lived one of a scheduled backup (src/operations/backups.ts), opened only with ownerAccess.
 */
export async function openDatabase(config: Config, logger: Logger, options: OpenOptions): Promise<DatabaseHandles> {
  const { migratorUrl, embedded } = await (options.target ?? resolveMigratorUrl(config, logger, options.attachToRunning ?? false));
  try {
    const roles = rolesFor(databaseNameOf(migratorUrl));
    const migrations = loadMigrations();
    const migrator = new pg.Client({ connectionString: migratorUrl, application_name: 'ringvakt-migrate' });
    // A server-side disconnect surfaces as the failure of the query in flight; don't crash on the event.
    migrator.on('error', (error) => logger.warn({ err: error }, 'migration connection lost'));
    await migrator.connect();
    let runtimeUrl: string;
    try {
      if (config.databaseAppUrl) {
        // A DBA created the roles (migrate --print-sql); provision only if something is missing.
        const state = await inspectProvisioning(migrator, roles);
        if (!state.schemaReady || !state.canSetOwner) {
          throw new Error(
            `The database is not provisioned for Ringvakt (role ${state.migratorRole} cannot act as ${roles.owner}, ` +
              'or the schema is missing). Run the statements from `ringvakt migrate --print-sql` first.',
          );
        }
        runtimeUrl = config.databaseAppUrl;
      } else {
        const passwordFile = path.join(config.dataDir, 'secrets', `${roles.runtime}.password`);
        let password: string;
        if (existsSync(passwordFile)) {
          password = readSecretFile(passwordFile, 'the runtime database role password');
        } else {
          const state = await inspectProvisioning(migrator, roles);
          if (state.runtimeExists) {
            // Never reset it: other nodes may be logged in with the current password.
            throw new ProvisioningError(
              `The runtime role ${roles.runtime} exists, but ${passwordFile} does not hold its password. ` +
                'Set DATABASE_APP_URL to that role (as every further node of a cluster should), or copy the ' +
                'password file from the node that created the role.',
            );
          }
          password = randomBytes(32).toString('base64url');
          writeSecretFile(passwordFile, password);
        }
        await provision(migrator, roles, password);
        runtimeUrl = runtimeUrlFrom(migratorUrl, roles, password);
      }
      if (options.applyMigrations) await migrate(migrator, roles, logger, migrations);
    } finally {
      await migrator.end();
    }

    const pool = runtimePool(runtimeUrl, config.poolMax, logger);
    try {
      await assertRuntimeRoleIsRestricted(pool, roles);
    } catch (error) {
      await pool.end();
      throw error;
    }
    const { kysely, forTenant, systemDb, crypto } = runtimeHandles(pool, config, logger);
    const changes = await startChangeListener(runtimeUrl, logger);
    return {
      roles,
      changes,
      migrations,
      pool,
      systemDb,
      forTenant,
      embedded,
      crypto,
      migratorUrl() {
        if (!options.ownerAccess) throw new Error('this database handle was opened without owner access');
        return migratorUrl;
      },
      async asOwner(work) {
        if (!options.ownerAccess) throw new Error('this database handle was opened without owner access');
        const client = new pg.Client({ connectionString: migratorUrl, application_name: 'ringvakt-owner' });
        client.on('error', (error) => logger.warn({ err: error }, 'owner connection lost'));
        await client.connect();
        try {
          await client.query('BEGIN');
          await client.query(`SET LOCAL ROLE ${pg.escapeIdentifier(roles.owner)}`);
          await client.query(`SET LOCAL search_path = ${SCHEMA}, pg_catalog`);
          const result = await work(client);
          await client.query('COMMIT');
          return result;
        } catch (error) {
          await client.query('ROLLBACK').catch(() => undefined);
          throw error;
        } finally {
          await client.end();
        }
      },
      async close() {
        await changes.close();
        await kysely.destroy();
        // Kysely ends the pool only if a query went through it: a handle opened and closed unused
        // would otherwise leave the pool's connections open.
        if (!pool.ending) await pool.end();
        await embedded?.stop();
      },
    };
  } catch (error) {
    await embedded?.stop();
    throw error;
  }
}
