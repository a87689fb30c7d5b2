import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.ts';
import { openDatabase } from '../src/db/database.ts';
import { loadMigrations, migrate, type Migration } from '../src/db/migrate.ts';
import { provisioningStatements, rolesFor } from '../src/db/provision.ts';
import { createLogger } from '../src/logger.ts';
import { adminQuery, createTestDatabase, serverLabel, urlFor, type TestDatabase } from './support/database.ts';

const logger = createLogger('silent');

describe(`migrations (${serverLabel()} server)`, () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => db?.drop());

  const migratorClient = async () => {
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    return client;
  };

  it('records every migration with its SHA-256, applied as the owner role', async () => {
    const rows = await db.superQuery('SELECT version, name, checksum FROM ringvakt.schema_migrations ORDER BY version');
    const files = loadMigrations();
    expect(rows.rows).toEqual(files.map((file) => ({ version: file.version, name: file.name, checksum: file.checksum })));
    const owner = await db.superQuery(`SELECT tableowner FROM pg_tables WHERE schemaname = 'ringvakt' AND tablename = 'users'`);
    expect(owner.rows[0]!.tableowner).toBe(db.handles.roles.owner);
  });

  it('does nothing the second time', async () => {
    const client = await migratorClient();
    try {
      expect(await migrate(client, db.handles.roles, logger)).toEqual([]);
    } finally {
      await client.end();
    }
  });

  it('refuses a landed migration whose file was changed, naming it', async () => {
    const edited: Migration[] = loadMigrations().map((migration, index) =>
      index === 0 ? { ...migration, sql: migration.sql + '\n-- edited', checksum: 'f'.repeat(64) } : migration,
    );
    const client = await migratorClient();
    try {
      await expect(migrate(client, db.handles.roles, logger, edited)).rejects.toThrow(
        /Migration 0001_foundation\.sql was changed after it was applied.*new migration/s,
      );
    } finally {
      await client.end();
    }
  });

  it('refuses a database migrated by a newer Ringvakt', async () => {
    const client = await migratorClient();
    try {
      const fewer = loadMigrations().slice(0, 0);
      await expect(migrate(client, db.handles.roles, logger, fewer)).rejects.toThrow(/newer Ringvakt/);
    } finally {
      await client.end();
    }
  });

  it('rolls a failing migration back whole and leaves it unrecorded', async () => {
    const broken: Migration[] = [
      ...loadMigrations(),
      { version: 99, name: '0099_broken.sql', checksum: 'a'.repeat(64), sql: 'CREATE TABLE half_done (id int); SELECT 1/0;' },
    ];
    const client = await migratorClient();
    try {
      await expect(migrate(client, db.handles.roles, logger, broken)).rejects.toThrow(/0099_broken\.sql failed and was rolled back/);
    } finally {
      await client.end();
    }
    const table = await db.superQuery(`SELECT to_regclass('ringvakt.half_done') AS t`);
    expect(table.rows[0]!.t).toBeNull();
    const recorded = await db.superQuery('SELECT count(*)::int AS n FROM ringvakt.schema_migrations WHERE version = 99');
    expect(recorded.rows[0]!.n).toBe(0);
  });

  it('lets two nodes migrate at once: one applies, the other waits and finds nothing to do', async () => {
    const name = `rv_test_race_${process.pid}`;
    await adminQuery(`CREATE DATABASE ${name}`);
    const folders = [mkdtempSync(path.join(os.tmpdir(), 'rv-race-')), mkdtempSync(path.join(os.tmpdir(), 'rv-race-'))];
    try {
      // The first node creates the roles; then two nodes (sharing its runtime password file, as a
      // cluster shares DATABASE_APP_URL) start at once and race to migrate.
      const config = loadConfig({ DATABASE_URL: urlFor(name), RINGVAKT_DATA_DIR: folders[0]! });
      await (await openDatabase(config, logger, { applyMigrations: false })).close();
      const opened = await Promise.all([config, config].map((node) => openDatabase(node, logger, { applyMigrations: true })));
      const rows = await adminQuery('SELECT count(*)::int AS n FROM ringvakt.schema_migrations', [], name);
      expect(rows.rows[0]!.n).toBe(loadMigrations().length);
      await Promise.all(opened.map((handles) => handles.close()));
    } finally {
      await adminQuery(`DROP DATABASE ${name} WITH (FORCE)`);
      await adminQuery(`DROP ROLE IF EXISTS ${name}_app`);
      await adminQuery(`DROP ROLE IF EXISTS ${name}_owner`);
      folders.forEach((folder) => rmSync(folder, { recursive: true, force: true }));
    }
  });
});

describe(`migrate --print-sql for a DBA (${serverLabel()} server)`, () => {
  it('gives statements that provision a database a restricted role can then run on', async () => {
    const name = `rv_test_dba_${process.pid}`;
    const roles = rolesFor(name);
    await adminQuery(`CREATE DATABASE ${name}`);
    // A migrator role without CREATEROLE, as a managed database would give.
    await adminQuery(`CREATE ROLE ${name}_deployer LOGIN PASSWORD 'deployer-secret' NOSUPERUSER NOCREATEROLE`);
    const dataDir = mkdtempSync(path.join(os.tmpdir(), 'rv-dba-'));
    try {
      const deployerUrl = new URL(urlFor(name));
      deployerUrl.username = `${name}_deployer`;
      deployerUrl.password = 'deployer-secret';
      const config = loadConfig({ DATABASE_URL: deployerUrl.toString(), RINGVAKT_DATA_DIR: dataDir });
      await expect(openDatabase(config, logger, { applyMigrations: true })).rejects.toThrow(/lacks the rights.*--print-sql/s);

      // The DBA runs the printed statements as a superuser (here through the pg client, with the
      // psql variable filled in), then Ringvakt starts with DATABASE_APP_URL.
      const printed = execFileSync(process.execPath, ['--import', 'tsx', 'src/main.ts', 'migrate', '--print-sql'], {
        env: { ...process.env, DATABASE_URL: deployerUrl.toString(), RINGVAKT_DATA_DIR: dataDir, RINGVAKT_LOG_LEVEL: 'silent' },
        encoding: 'utf8',
      });
      expect(printed).toContain(`CREATE ROLE "${roles.runtime}" LOGIN`);
      expect(printed).toContain(`GRANT "${roles.owner}" TO "${name}_deployer"`);
      expect(printed).toContain('-- 0001_foundation.sql');
      const runnable = printed
        .split('\n')
        .filter((line) => !line.startsWith('\\'))
        .join('\n')
        .replace(":'app_password'", "'app-secret-1234'");
      await adminQuery(runnable, [], name);

      const appUrl = new URL(urlFor(name));
      appUrl.username = roles.runtime;
      appUrl.password = 'app-secret-1234';
      const handles = await openDatabase(
        loadConfig({ DATABASE_URL: deployerUrl.toString(), DATABASE_APP_URL: appUrl.toString(), RINGVAKT_DATA_DIR: dataDir }),
        logger,
        { applyMigrations: true },
      );
      try {
        expect(await handles.systemDb.appliedMigrationVersions()).toEqual(loadMigrations().map((m) => m.version));
        const tenantId = await handles.systemDb.createTenant('dba-made', 'Provisioned by a DBA');
        expect(await handles.systemDb.tenantIdBySlug('dba-made')).toBe(tenantId);
      } finally {
        await handles.close();
      }
      expect(provisioningStatements(roles, 'x', { psqlVariable: 'p' }).join('\n')).not.toContain('app-secret');
    } finally {
      await adminQuery(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      for (const role of [roles.runtime, roles.owner, `${name}_deployer`]) await adminQuery(`DROP ROLE IF EXISTS ${role}`);
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

describe(`runtime role safety (${serverLabel()} server)`, () => {
  it('never resets the password of an existing runtime role, and says what to do', async () => {
    const name = `rv_test_pw_${process.pid}`;
    await adminQuery(`CREATE DATABASE ${name}`);
    const folders = [mkdtempSync(path.join(os.tmpdir(), 'rv-pw-')), mkdtempSync(path.join(os.tmpdir(), 'rv-pw-'))];
    try {
      const first = await openDatabase(loadConfig({ DATABASE_URL: urlFor(name), RINGVAKT_DATA_DIR: folders[0]! }), logger, { applyMigrations: true });
      const verifier = await adminQuery(`SELECT rolpassword FROM pg_authid WHERE rolname = $1`, [`${name}_app`]);
      await expect(
        openDatabase(loadConfig({ DATABASE_URL: urlFor(name), RINGVAKT_DATA_DIR: folders[1]! }), logger, { applyMigrations: true }),
      ).rejects.toThrow(/exists, but .* does not hold its password\. Set DATABASE_APP_URL/);
      const after = await adminQuery(`SELECT rolpassword FROM pg_authid WHERE rolname = $1`, [`${name}_app`]);
      expect(after.rows[0]!.rolpassword).toBe(verifier.rows[0]!.rolpassword);
      expect(String(verifier.rows[0]!.rolpassword)).toMatch(/^SCRAM-SHA-256\$4096:/);
      await expect(first.systemDb.ping()).resolves.toBeUndefined();
      await first.close();
    } finally {
      await adminQuery(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await adminQuery(`DROP ROLE IF EXISTS ${name}_app`);
      await adminQuery(`DROP ROLE IF EXISTS ${name}_owner`);
      folders.forEach((folder) => rmSync(folder, { recursive: true, force: true }));
    }
  });

  it('refuses to start when DATABASE_APP_URL names a role that could bypass row-level security', async () => {
    const db = await createTestDatabase();
    try {
      const superuser = urlFor(db.name);
      await expect(
        openDatabase(loadConfig({ DATABASE_URL: superuser, DATABASE_APP_URL: superuser, RINGVAKT_DATA_DIR: db.config.dataDir }), logger, { applyMigrations: true }),
      ).rejects.toThrow(/has too many rights .* refuses to run with it/s);
    } finally {
      await db.drop();
    }
  });
});

describe('migration files', () => {
  it('are named NNNN_name.sql and numbered without gaps', () => {
    const folder = mkdtempSync(path.join(os.tmpdir(), 'rv-files-'));
    try {
      writeFileSync(path.join(folder, '0001_a.sql'), 'SELECT 1;');
      writeFileSync(path.join(folder, '0003_c.sql'), 'SELECT 1;');
      expect(() => loadMigrations(folder)).toThrow(/without gaps; found 0003_c\.sql/);
      writeFileSync(path.join(folder, 'notes.txt'), '');
      expect(() => loadMigrations(folder)).toThrow(/notes\.txt .* is not named NNNN_name\.sql/);
    } finally {
      rmSync(folder, { recursive: true, force: true });
    }
  });
});
