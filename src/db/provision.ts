import { createHash, createHmac, pbkdf2Sync, randomBytes } from 'node:crypto';
import pg from 'pg';

/**
 * The two database roles. Names derive from the database name, so several Ringvakt databases (and
 * parallel test databases) can share one PostgreSQL cluster, where roles are cluster-wide.
 *   owner   — owns the schema and every table; NOLOGIN; the migrator switches to it with SET ROLE.
 *   runtime — what the server logs in as: owns nothing, no superuser, no BYPASSRLS, no CREATEROLE,
 *             and is not a member of the owner, so it can never turn row-level security off.
 */
export type DatabaseRoles = { database: string; owner: string; runtime: string };

export const SCHEMA = 'ringvakt';

export function rolesFor(database: string): DatabaseRoles {
  if (!/^[a-z_][a-z0-9_]{0,49}$/.test(database)) {
    throw new Error(
      `The database name "${database.slice(0, 64)}" must be lower-case letters, digits and underscores ` +
        '(at most 50): the role names are derived from it.',
    );
  }
  return { database, owner: `${database}_owner`, runtime: `${database}_app` };
}

const ident = (name: string) => pg.escapeIdentifier(name);

/**
 * A SCRAM-SHA-256 verifier (RFC 7677, PostgreSQL's stored format) for a password, so the password
 * itself never appears in SQL text — which a server with log_statement = ddl would log.
 */
export function scramVerifier(password: string, salt: Buffer = randomBytes(16), iterations = 4096): string {
  const salted = pbkdf2Sync(password.normalize('NFKC'), salt, iterations, 32, 'sha256');
  const clientKey = createHmac('sha256', salted).update('Client Key').digest();
  const storedKey = createHash('sha256').update(clientKey).digest();
  const serverKey = createHmac('sha256', salted).update('Server Key').digest();
  return `SCRAM-SHA-256$${iterations}:${salt.toString('base64')}$${storedKey.toString('base64')}:${serverKey.toString('base64')}`;
}

/**
 * The statements that create the roles, schema and grants. Idempotent, and they never change the
 * password of a runtime role that exists already (another node may be logged in with it).
 * `migratorRole` is the role of DATABASE_URL (it must be able to SET ROLE to the owner);
 * `runtimePassword` is a password (sent as a SCRAM verifier) or a psql variable for
 * `migrate --print-sql`, which a DBA runs once.
 */
export function provisioningStatements(
  roles: DatabaseRoles,
  migratorRole: string,
  runtimePassword: { literal: string } | { psqlVariable: string },
): string[] {
  const owner = ident(roles.owner);
  const runtime = ident(roles.runtime);
  const hardening = 'NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION NOBYPASSRLS';
  const createRuntime =
    'literal' in runtimePassword
      ? `DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = ${pg.escapeLiteral(roles.runtime)}) THEN CREATE ROLE ${runtime} LOGIN ${hardening} PASSWORD ${pg.escapeLiteral(scramVerifier(runtimePassword.literal))}; END IF; END $$`
      : `CREATE ROLE ${runtime} LOGIN ${hardening} PASSWORD :'${runtimePassword.psqlVariable}'`;
  return [
    `DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = ${pg.escapeLiteral(roles.owner)}) THEN CREATE ROLE ${owner} NOLOGIN ${hardening}; END IF; END $$`,
    createRuntime,
    `ALTER ROLE ${runtime} WITH LOGIN ${hardening}`,
    `GRANT ${owner} TO ${ident(migratorRole)}`,
    `REVOKE ALL ON DATABASE ${ident(roles.database)} FROM PUBLIC`,
    `GRANT CONNECT ON DATABASE ${ident(roles.database)} TO ${runtime}`,
    `GRANT CONNECT, CREATE ON DATABASE ${ident(roles.database)} TO ${owner}`,
    `REVOKE CREATE ON SCHEMA public FROM PUBLIC`,
    `CREATE SCHEMA IF NOT EXISTS ${ident(SCHEMA)} AUTHORIZATION ${owner}`,
    `REVOKE ALL ON SCHEMA ${ident(SCHEMA)} FROM PUBLIC`,
    `GRANT USAGE ON SCHEMA ${ident(SCHEMA)} TO ${runtime}`,
    `ALTER DEFAULT PRIVILEGES FOR ROLE ${owner} IN SCHEMA ${ident(SCHEMA)} GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO ${runtime}`,
    `ALTER DEFAULT PRIVILEGES FOR ROLE ${owner} IN SCHEMA ${ident(SCHEMA)} GRANT USAGE, SELECT ON SEQUENCES TO ${runtime}`,
    `ALTER DEFAULT PRIVILEGES FOR ROLE ${owner} REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC`,
    `ALTER DEFAULT PRIVILEGES FOR ROLE ${owner} IN SCHEMA ${ident(SCHEMA)} GRANT EXECUTE ON FUNCTIONS TO ${runtime}`,
    `CREATE TABLE IF NOT EXISTS ${ident(SCHEMA)}.schema_migrations (
       version integer PRIMARY KEY,
       name text NOT NULL,
       checksum text NOT NULL,
       applied_at timestamptz NOT NULL DEFAULT now(),
       applied_by text NOT NULL DEFAULT session_user
     )`,
    `ALTER TABLE ${ident(SCHEMA)}.schema_migrations OWNER TO ${owner}`,
    `REVOKE ALL ON ${ident(SCHEMA)}.schema_migrations FROM ${runtime}`,
    `GRANT SELECT ON ${ident(SCHEMA)}.schema_migrations TO ${runtime}`,
  ];
}

export type ProvisionState = {
  migratorRole: string;
  ownerExists: boolean;
  runtimeExists: boolean;
  canSetOwner: boolean;
  schemaReady: boolean;
};

/** What exists already; decides whether provisioning must run (and whether it can). */
export async function inspectProvisioning(client: pg.Client, roles: DatabaseRoles): Promise<ProvisionState> {
  const result = await client.query<{
    migrator: string;
    owner_exists: boolean;
    runtime_exists: boolean;
    can_set_owner: boolean;
    schema_ready: boolean;
  }>(
    `SELECT session_user AS migrator,
            EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1) AS owner_exists,
            EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $2) AS runtime_exists,
            EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1) AND pg_has_role(session_user, $1, 'MEMBER') AS can_set_owner,
            to_regclass($3) IS NOT NULL AS schema_ready`,
    [roles.owner, roles.runtime, `${SCHEMA}.schema_migrations`],
  );
  const row = result.rows[0];
  if (!row) throw new Error('provisioning inspection returned no row');
  return {
    migratorRole: row.migrator,
    ownerExists: row.owner_exists,
    runtimeExists: row.runtime_exists,
    canSetOwner: row.can_set_owner,
    schemaReady: row.schema_ready,
  };
}

export class ProvisioningError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ProvisioningError';
  }
}

/** Runs the provisioning statements in one transaction; explains what to do when rights are lacking. */
export async function provision(client: pg.Client, roles: DatabaseRoles, runtimePassword: string): Promise<void> {
  const state = await inspectProvisioning(client, roles);
  const statements = provisioningStatements(roles, state.migratorRole, { literal: runtimePassword });
  try {
    await client.query('BEGIN');
    // Several nodes may start at once; role creation is not idempotent under a race.
    await client.query(`SELECT pg_advisory_xact_lock(hashtextextended('ringvakt:provision', 0))`);
    for (const statement of statements) await client.query(statement);
    await client.query('COMMIT');
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    const code = (error as { code?: string }).code;
    if (code === '42501') {
      throw new ProvisioningError(
        `The role "${state.migratorRole}" in DATABASE_URL lacks the rights to create Ringvakt's roles and schema. ` +
          'Ask a DBA to run the statements printed by `ringvakt migrate --print-sql`, then start again with ' +
          'DATABASE_APP_URL set to the runtime role.',
      );
    }
    throw error;
  }
}
