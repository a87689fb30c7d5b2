import { spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.ts';
import { openDatabase } from '../src/db/database.ts';
import { startEmbeddedPostgres } from '../src/db/embedded-postgres.ts';
import { createLogger } from '../src/logger.ts';
import { adminUrl, urlFor } from './support/database.ts';

const logger = createLogger('silent');
const folders: string[] = [];
const freshFolder = () => {
  const folder = mkdtempSync(path.join(os.tmpdir(), 'ringvakt-embedded-'));
  // Our own test folder: the postgres system user (when running as root) may pass through it.
  chmodSync(folder, 0o711);
  folders.push(folder);
  return folder;
};
afterAll(() => folders.forEach((folder) => rmSync(folder, { recursive: true, force: true })));

const query = async (url: string, text: string) => {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await client.query(text);
  } finally {
    await client.end();
  }
};

describe('embedded PostgreSQL', () => {
  it('initialises on first start, keeps a 0600 random superuser password, listens only on a private unix socket', async () => {
    const dataDir = path.join(freshFolder(), 'data');
    const cluster = await startEmbeddedPostgres({ dataDir, logger });
    try {
      const passwordFile = path.join(dataDir, 'secrets', 'postgres-superuser.password');
      expect(statSync(passwordFile).mode & 0o777).toBe(0o600);
      expect(readFileSync(passwordFile, 'utf8').trim()).toMatch(/^[A-Za-z0-9_-]{43}$/);
      // No TCP port at all: a unix socket inside the cluster's own 0700 folder.
      expect(new URL(cluster.adminUrl).searchParams.get('host')).toBe(cluster.clusterDir);
      const settings = await query(cluster.adminUrl, `SELECT current_setting('listen_addresses') AS listen, current_setting('unix_socket_directories') AS sockets, current_setting('password_encryption') AS hashing`);
      expect(settings.rows[0]).toEqual({ listen: '', sockets: cluster.clusterDir, hashing: 'scram-sha-256' });
      expect(statSync(cluster.clusterDir).mode & 0o777).toBe(0o700);
      await expect(query(`postgres://postgres:x@127.0.0.1:${cluster.port}/postgres`, 'SELECT 1')).rejects.toThrow(/ECONNREFUSED/);
      const wrongPassword = new URL(cluster.adminUrl);
      wrongPassword.password = 'password';
      await expect(query(wrongPassword.toString(), 'SELECT 1')).rejects.toThrow(/password authentication failed/);
    } finally {
      await cluster.stop();
    }
    await expect(query(cluster.adminUrl, 'SELECT 1')).rejects.toThrow(/ECONNREFUSED|ENOENT/);
    expect(existsSync(path.join(dataDir, 'ringvakt.pid'))).toBe(false);
  });

  it('reuses the data on a second start and recovers from a crash that left the server running', async () => {
    const dataDir = freshFolder();
    const first = await startEmbeddedPostgres({ dataDir, logger });
    await query(first.adminUrl, 'CREATE TABLE kept (value text); INSERT INTO kept VALUES ($$still here$$)');
    // A crash: this process "dies" without stopping the server; its lock file stays behind.
    const orphanPid = Number(readFileSync(path.join(first.clusterDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
    const second = await startEmbeddedPostgres({ dataDir, logger });
    try {
      expect(() => process.kill(orphanPid, 0)).toThrow();
      const rows = await query(second.adminUrl, 'SELECT value FROM kept');
      expect(rows.rows).toEqual([{ value: 'still here' }]);
    } finally {
      await second.stop();
    }
  });

  it('removes a stale lock whose pid now belongs to another program', async () => {
    const dataDir = freshFolder();
    const cluster = await startEmbeddedPostgres({ dataDir, logger });
    await cluster.stop();
    const sleeper = spawn('sleep', ['30']);
    try {
      const lockFile = path.join(cluster.clusterDir, 'postmaster.pid');
      writeFileSync(lockFile, `${sleeper.pid}\n${cluster.clusterDir}\n`);
      const again = await startEmbeddedPostgres({ dataDir, logger });
      await expect(query(again.adminUrl, 'SELECT 1')).resolves.toBeTruthy();
      await again.stop();
    } finally {
      sleeper.kill();
    }
  });

  it('refuses, with a clear message and without changes, a data directory from another major', async () => {
    const dataDir = freshFolder();
    const cluster = await startEmbeddedPostgres({ dataDir, logger });
    await cluster.stop();
    const versionFile = path.join(cluster.clusterDir, 'PG_VERSION');
    const shipped = readFileSync(versionFile, 'utf8').trim();
    writeFileSync(versionFile, '14\n');
    await expect(startEmbeddedPostgres({ dataDir, logger })).rejects.toThrow(
      new RegExp(`created by PostgreSQL 14, but this Ringvakt ships PostgreSQL ${shipped}.*pg_upgrade`, 's'),
    );
    expect(readFileSync(versionFile, 'utf8')).toBe('14\n');
    expect(existsSync(path.join(dataDir, 'ringvakt.pid'))).toBe(false);
  });

  it('refuses a superuser password file others can read', async () => {
    const dataDir = freshFolder();
    const cluster = await startEmbeddedPostgres({ dataDir, logger });
    await cluster.stop();
    const passwordFile = path.join(dataDir, 'secrets', 'postgres-superuser.password');
    chmodSync(passwordFile, 0o644);
    const attempt = startEmbeddedPostgres({ dataDir, logger });
    await expect(attempt).rejects.toThrow(/readable or writable by others \(mode 644\); run: chmod 600/);
    await expect(attempt).rejects.not.toThrow(readFileSync(passwordFile, 'utf8').trim());
  });

  it.runIf(process.getuid?.() === 0)('as root, keeps the cluster outside a data folder the postgres user cannot enter', async () => {
    const closed = freshFolder();
    chmodSync(closed, 0o700); // as a clone under root's home would be
    const dataDir = path.join(closed, 'data');
    mkdirSync(dataDir, { mode: 0o700 });
    const cluster = await startEmbeddedPostgres({ dataDir, logger });
    try {
      expect(cluster.clusterDir.startsWith('/var/lib/ringvakt/')).toBe(true);
      expect(statSync(closed).mode & 0o777).toBe(0o700);
    } finally {
      await cluster.stop();
      rmSync(cluster.clusterDir, { recursive: true, force: true });
    }
  });

  it('starts no embedded server when DATABASE_URL is set', async () => {
    const dataDir = freshFolder();
    const name = `rv_test_noembed_${process.pid}`;
    await query(urlFor('postgres'), `CREATE DATABASE ${name}`);
    const config = loadConfig({ DATABASE_URL: urlFor(name, adminUrl()), RINGVAKT_DATA_DIR: dataDir });
    const handles = await openDatabase(config, logger, { applyMigrations: true });
    try {
      expect(handles.embedded).toBeUndefined();
      expect(existsSync(path.join(dataDir, 'pg'))).toBe(false);
      await expect(handles.systemDb.ping()).resolves.toBeUndefined();
    } finally {
      await handles.close();
      await query(urlFor('postgres'), `DROP DATABASE ${name} WITH (FORCE)`);
      await query(urlFor('postgres'), `DROP ROLE ${name}_app`);
      await query(urlFor('postgres'), `DROP ROLE ${name}_owner`);
    }
  });
});
