import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { loadConfig, type Config } from './config.ts';
import { databaseNameOf, resolveMigratorUrl } from './db/database.ts';
import type { EmbeddedCluster } from './db/embedded-postgres.ts';
import { loadMigrations, pendingMigrations, readApplied } from './db/migrate.ts';
import { rolesFor } from './db/provision.ts';
import type { Logger } from './logger.ts';

export type Check = { name: string; ok: boolean; detail: string };

function checkFileModes(config: Config): Check[] {
  const checks: Check[] = [];
  if (!existsSync(config.dataDir)) {
    return [{ name: 'data directory', ok: !!config.databaseUrl, detail: `${config.dataDir} does not exist yet (created on first start)` }];
  }
  const dataMode = statSync(config.dataDir).mode & 0o777;
  checks.push({
    name: 'data directory permissions',
    ok: (dataMode & 0o007) === 0,
    detail: `${config.dataDir} has mode ${dataMode.toString(8)}${(dataMode & 0o007) === 0 ? '' : ' — others may enter it; run chmod o-rwx'}`,
  });
  const secrets = path.join(config.dataDir, 'secrets');
  if (existsSync(secrets)) {
    const secretsMode = statSync(secrets).mode & 0o777;
    checks.push({ name: 'secrets folder permissions', ok: secretsMode === 0o700, detail: `${secrets} has mode ${secretsMode.toString(8)} (expected 700)` });
    for (const file of readdirSync(secrets)) {
      const mode = statSync(path.join(secrets, file)).mode & 0o777;
      checks.push({ name: `secret file ${file}`, ok: (mode & 0o077) === 0, detail: `mode ${mode.toString(8)} (expected 600)` });
    }
  }
  return checks;
}

function checkTls(config: Config): Check[] {
  if (!config.tls) return [{ name: 'TLS', ok: true, detail: 'not configured (plain HTTP; put a TLS proxy in front or set RINGVAKT_TLS_CERT_FILE/KEY_FILE)' }];
  const checks: Check[] = [];
  for (const [name, file] of [['certificate', config.tls.certFile], ['private key', config.tls.keyFile]] as const) {
    try {
      readFileSync(file);
      checks.push({ name: `TLS ${name}`, ok: true, detail: `${file} is readable` });
    } catch {
      checks.push({ name: `TLS ${name}`, ok: false, detail: `${file} cannot be read` });
    }
  }
  if (existsSync(config.tls.keyFile)) {
    const mode = statSync(config.tls.keyFile).mode & 0o777;
    checks.push({ name: 'TLS private key permissions', ok: (mode & 0o077) === 0, detail: `mode ${mode.toString(8)} (expected 600)` });
  }
  return checks;
}

async function checkDatabase(config: Config, logger: Logger): Promise<Check[]> {
  const checks: Check[] = [];
  let embedded: EmbeddedCluster | undefined;
  let migratorUrl: string;
  try {
    ({ migratorUrl, embedded } = await resolveMigratorUrl(config, logger, true));
  } catch (error) {
    return [{ name: 'database reachable', ok: false, detail: (error as Error).message }];
  }
  const client = new pg.Client({ connectionString: migratorUrl, connectionTimeoutMillis: 5000 });
  try {
    await client.connect();
    checks.push({ name: 'database reachable', ok: true, detail: config.databaseUrl ? 'DATABASE_URL answers' : 'embedded PostgreSQL answers' });
    const roles = rolesFor(databaseNameOf(migratorUrl));
    const result = await client.query<{
      rolname: string;
      rolsuper: boolean;
      rolbypassrls: boolean;
      rolcreaterole: boolean;
      rolcreatedb: boolean;
      member_of_owner: boolean;
      owns: number;
    }>(
      `SELECT r.rolname, r.rolsuper, r.rolbypassrls, r.rolcreaterole, r.rolcreatedb,
              pg_has_role(r.oid, $2, 'MEMBER') AS member_of_owner,
              (SELECT count(*)::int FROM pg_class c WHERE c.relowner = r.oid) AS owns
         FROM pg_roles r WHERE r.rolname = $1`,
      [roles.runtime, roles.owner],
    );
    const runtime = result.rows[0];
    if (!runtime) {
      checks.push({ name: 'runtime role', ok: false, detail: `${roles.runtime} does not exist; run ringvakt migrate` });
    } else {
      const problems = [
        runtime.rolsuper && 'is a superuser',
        runtime.rolbypassrls && 'has BYPASSRLS',
        runtime.rolcreaterole && 'has CREATEROLE',
        runtime.rolcreatedb && 'has CREATEDB',
        runtime.member_of_owner && `is a member of ${roles.owner}`,
        runtime.owns > 0 && `owns ${runtime.owns} relations`,
      ].filter(Boolean);
      checks.push({
        name: 'runtime role rights',
        ok: problems.length === 0,
        detail: problems.length === 0 ? `${roles.runtime} owns nothing and cannot bypass row-level security` : `${roles.runtime} ${problems.join(', ')}`,
      });
    }
    try {
      const pending = pendingMigrations(loadMigrations(), await readApplied(client));
      checks.push({ name: 'migrations', ok: pending.length === 0, detail: pending.length === 0 ? 'all applied' : `${pending.length} pending: run ringvakt migrate` });
    } catch (error) {
      checks.push({ name: 'migrations', ok: false, detail: (error as Error).message });
    }
  } catch (error) {
    checks.push({ name: 'database reachable', ok: false, detail: `connection failed (${(error as { code?: string }).code ?? 'error'})` });
  } finally {
    await client.end().catch(() => undefined);
    await embedded?.stop();
  }
  return checks;
}

/** Runs every check; never throws for a failed check, only reports it. */
export async function runDoctor(env: NodeJS.ProcessEnv, logger: Logger): Promise<Check[]> {
  let config: Config;
  try {
    config = loadConfig(env);
  } catch (error) {
    return [{ name: 'configuration', ok: false, detail: (error as Error).message }];
  }
  return [
    { name: 'configuration', ok: true, detail: 'valid' },
    ...checkFileModes(config),
    ...checkTls(config),
    ...(await checkDatabase(config, logger)),
  ];
}
