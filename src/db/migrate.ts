import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import type { Logger } from '../logger.ts';
import { SCHEMA, type DatabaseRoles } from './provision.ts';

/**
 * Plain SQL migrations, `migrations/NNNN_name.sql`, applied in order, each in its own transaction
 * as the owner role, and recorded with the SHA-256 of the file. A landed migration is never edited:
 * a changed checksum stops the start. Two placeholders let a migration name the roles, whose names
 * depend on the database: {{owner_role}} and {{runtime_role}} (replaced by quoted identifiers).
 */

export type Migration = { version: number; name: string; checksum: string; sql: string };

export class MigrationError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MigrationError';
  }
}

export const MIGRATIONS_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'migrations');
const FILE_PATTERN = /^(\d{4})_([a-z0-9_]+)\.sql$/;

export function loadMigrations(directory: string = MIGRATIONS_DIR): Migration[] {
  const migrations: Migration[] = [];
  for (const file of readdirSync(directory).sort()) {
    const match = FILE_PATTERN.exec(file);
    if (!match) throw new MigrationError(`${file} in the migrations folder is not named NNNN_name.sql`);
    const sql = readFileSync(path.join(directory, file), 'utf8');
    migrations.push({
      version: Number(match[1]),
      name: file,
      checksum: createHash('sha256').update(sql).digest('hex'),
      sql,
    });
  }
  migrations.forEach((migration, index) => {
    if (migration.version !== index + 1) {
      throw new MigrationError(`migration versions must run 0001, 0002, … without gaps; found ${migration.name}`);
    }
  });
  return migrations;
}

export function renderMigration(migration: Migration, roles: DatabaseRoles): string {
  return migration.sql
    .replaceAll('{{owner_role}}', pg.escapeIdentifier(roles.owner))
    .replaceAll('{{runtime_role}}', pg.escapeIdentifier(roles.runtime));
}

type AppliedRow = { version: number; name: string; checksum: string };

/** Compares the landed migrations with the files; throws on an edited or unknown one. */
export function pendingMigrations(migrations: Migration[], applied: AppliedRow[]): Migration[] {
  const byVersion = new Map(migrations.map((migration) => [migration.version, migration]));
  for (const row of applied) {
    const file = byVersion.get(row.version);
    if (!file) {
      throw new MigrationError(
        `The database has migration ${row.name}, which this version of Ringvakt does not have. ` +
          'It was migrated by a newer Ringvakt; run that version (downgrades are not supported).',
      );
    }
    if (file.checksum !== row.checksum) {
      throw new MigrationError(
        `Migration ${file.name} was changed after it was applied (its SHA-256 differs from the one recorded). ` +
          'Landed migrations are never edited: restore the file and put the change in a new migration.',
      );
    }
  }
  const appliedVersions = new Set(applied.map((row) => row.version));
  return migrations.filter((migration) => !appliedVersions.has(migration.version));
}

export async function readApplied(client: pg.ClientBase): Promise<AppliedRow[]> {
  const result = await client.query<AppliedRow>(
    `SELECT version, name, checksum FROM ${SCHEMA}.schema_migrations ORDER BY version`,
  );
  return result.rows;
}

/**
 * Applies pending migrations. Several nodes may start at once: a session advisory lock makes the
 * second wait, after which it finds nothing left to do.
 */
export async function migrate(
  client: pg.Client,
  roles: DatabaseRoles,
  logger: Logger,
  migrations: Migration[] = loadMigrations(),
): Promise<Migration[]> {
  await client.query(`SELECT pg_advisory_lock(hashtextextended('ringvakt:migrate', 0))`);
  try {
    const pending = pendingMigrations(migrations, await readApplied(client));
    for (const migration of pending) {
      await client.query('BEGIN');
      try {
        await client.query(`SET LOCAL ROLE ${pg.escapeIdentifier(roles.owner)}`);
        await client.query(`SET LOCAL search_path = ${SCHEMA}, pg_catalog`);
        await client.query(renderMigration(migration, roles));
        await client.query(
          `INSERT INTO ${SCHEMA}.schema_migrations (version, name, checksum) VALUES ($1, $2, $3)`,
          [migration.version, migration.name, migration.checksum],
        );
        await client.query('COMMIT');
      } catch (error) {
        await client.query('ROLLBACK').catch(() => undefined);
        throw new MigrationError(
          `Migration ${migration.name} failed and was rolled back: ${(error as Error).message}`,
        );
      }
      logger.info({ migration: migration.name }, 'applied migration');
    }
    return pending;
  } finally {
    await client.query(`SELECT pg_advisory_unlock(hashtextextended('ringvakt:migrate', 0))`);
  }
}
