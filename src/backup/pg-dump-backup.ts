import { spawn, type ChildProcess } from 'node:child_process';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { link, open, rm, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import type { RootKeyProvider } from '../crypto/root-keys/root-key-provider.ts';
import type { ErasureLedgerEntry } from '../privacy/erasure.ts';
import {
  BackupError,
  BackupStopped,
  Frame,
  frames,
  quoted,
  replayLedger,
  resetIdentities,
  SCHEMA,
  startFrames,
  tablesOf,
  type BackupManifest,
  type ReplayOutcome,
  type TableManifest,
} from './logical-backup.ts';

/**
 * The same encrypted backup file (src/backup/logical-backup.ts: header, AES-256-GCM frames bound
 * to it, a manifest last), holding a pg_dump custom-format archive of Ringvakt's data instead of
 * our binary COPY tables — for operators who want PostgreSQL's own tools' format inside the
 * encryption. It needs PostgreSQL's client tools of the server's major version or newer (the
 * embedded server ships none; `RINGVAKT_PG_BIN_DIR` names where they are, else PATH).
 *
 * Backup: one repeatable-read snapshot is exported; the row count of every table is taken in it,
 * and `pg_dump --snapshot` dumps exactly that snapshot (data only, the schema comes from the
 * migrations), streamed through the frames — never a plaintext file on disk. The manifest holds
 * the migrations, every table's row count, and the archive's size and SHA-256.
 *
 * Restore: into a migrated, empty database (as the default format), `pg_restore --data-only
 * --disable-triggers --single-transaction` fed from the decrypted frames; a frame that does not
 * authenticate kills pg_restore before it commits. Then, in one transaction, every table's row
 * count is checked against the manifest, identity sequences are reset and the erasure ledger is
 * replayed; if any of that fails, every table is emptied again. These are separate commits
 * (pg_restore's own, then ours): a restore process killed between them leaves a database that
 * holds the backup without the replayed erasures — it reported no success, and must be dropped
 * and restored again, never served (the default format restores in one transaction).
 * The database password travels to the tools in their environment, never on a command line.
 */

const execFileAsync = promisify(execFile);
const ARCHIVE = 'pg_dump-custom';
const CHUNK = 1 << 20;

type Tool = 'pg_dump' | 'pg_restore';

/** The tool's path and major version, or a clear error when it is missing. */
async function findTool(tool: Tool): Promise<{ path: string; major: number }> {
  const dir = process.env.RINGVAKT_PG_BIN_DIR;
  const file = dir ? path.join(dir, tool) : tool;
  try {
    const { stdout } = await execFileAsync(file, ['--version'], { timeout: 10_000 });
    const match = /(\d+)(?:\.\d+)?/.exec(stdout);
    if (!match) throw new Error('no version');
    return { path: file, major: Number(match[1]) };
  } catch {
    throw new BackupError(`${tool} was not found (install PostgreSQL's client tools, or set RINGVAKT_PG_BIN_DIR): the pg_dump backup format needs it.`);
  }
}

/** The connection for the tools: the URL without its password, and the password in their environment. */
function toolConnection(url: string): { dbname: string; env: NodeJS.ProcessEnv } {
  const parsed = new URL(url);
  const password = decodeURIComponent(parsed.password);
  parsed.password = '';
  return { dbname: parsed.toString(), env: { ...process.env, PGPASSWORD: password, PGAPPNAME: 'ringvakt-backup' } };
}

/** Waits for a tool to exit; its stderr is kept to recognise known failures, never passed on (it may quote connection details). */
function exited(child: ChildProcess, tool: Tool): Promise<void> {
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    if (stderr.length < 8_192) stderr += chunk.toString();
  });
  return new Promise((resolve, reject) => {
    child.once('error', () => reject(new BackupError(`${tool} could not be started.`)));
    child.once('close', (code, signal) => {
      if (code === 0) return resolve();
      if (/server version mismatch/i.test(stderr)) return reject(new BackupError(`${tool} is older than the database server: install the client tools of the server's version.`));
      reject(new BackupError(`${tool} failed (${signal ?? `exit code ${String(code)}`}).`));
    });
  });
}

async function serverMajor(client: pg.ClientBase): Promise<number> {
  const result = await client.query<{ v: string }>("SELECT current_setting('server_version_num') AS v");
  return Math.floor(Number(result.rows[0]?.v) / 10_000);
}

export async function writePgDumpBackup(url: string, file: string, root: RootKeyProvider, signal?: AbortSignal): Promise<{ backupId: string; manifest: BackupManifest; bytes: number }> {
  const tool = await findTool('pg_dump');
  const client = new pg.Client({ connectionString: url, application_name: 'ringvakt-backup' });
  client.on('error', () => undefined);
  await client.connect();
  const partial = `${file}.partial`;
  let handle: FileHandle | undefined;
  let dump: ChildProcess | undefined;
  try {
    const role = await client.query<{ ok: boolean }>('SELECT rolsuper OR rolbypassrls AS ok FROM pg_roles WHERE rolname = current_user');
    if (!role.rows[0]?.ok) throw new BackupError('A backup needs a role that sees every row (a superuser or BYPASSRLS): row-level security would leave rows out.');
    const server = await serverMajor(client);
    if (tool.major < server) throw new BackupError(`pg_dump ${tool.major} cannot dump a PostgreSQL ${server} server: install the client tools of version ${server} or newer, or use the default backup format.`);
    if (existsSync(file)) throw Object.assign(new Error(`EEXIST: ${path.basename(file)} exists`), { code: 'EEXIST' });
    handle = await open(partial, 'wx', 0o600);

    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    await client.query('SET LOCAL row_security = off');
    const snapshot = (await client.query<{ id: string }>('SELECT pg_export_snapshot() AS id')).rows[0]?.id ?? '';
    const migrations = (await client.query<{ version: number }>(`SELECT version FROM ${SCHEMA}.schema_migrations ORDER BY version`)).rows.map((row) => Number(row.version));
    const tables: TableManifest[] = [];
    for (const table of await tablesOf(client)) {
      const counted = await client.query<{ n: string }>(`SELECT count(*) AS n FROM ${quoted(table)}`);
      tables.push({ table, rows: Number(counted.rows[0]?.n), sha256: '' });
    }
    const writer = await startFrames(handle, root, migrations, ARCHIVE);
    await writer.frame(Frame.TableStart, Buffer.from(ARCHIVE));

    const connection = toolConnection(url);
    dump = spawn(
      tool.path,
      ['--format=custom', '--data-only', '--no-unlogged-table-data', `--schema=${SCHEMA}`, `--exclude-table=${SCHEMA}.schema_migrations`, `--snapshot=${snapshot}`, `--dbname=${connection.dbname}`],
      { env: connection.env, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const done = exited(dump, 'pg_dump');
    // Awaited below; a loop that throws first (stopped, a full disk) must not leave it unhandled.
    done.catch(() => undefined);
    // Stopped also while pg_dump sends nothing (waiting on a lock).
    const child = dump;
    const stop = () => child.kill('SIGKILL');
    signal?.addEventListener('abort', stop, { once: true });
    const hash = createHash('sha256');
    let archiveBytes = 0;
    let pending: Buffer[] = [];
    let pendingBytes = 0;
    const stdout = dump.stdout;
    if (!stdout) throw new BackupError('pg_dump gave no output.');
    for await (const chunk of stdout as AsyncIterable<Buffer>) {
      if (signal?.aborted) throw new BackupStopped();
      hash.update(chunk);
      archiveBytes += chunk.length;
      pending.push(chunk);
      pendingBytes += chunk.length;
      if (pendingBytes >= CHUNK) {
        await writer.frame(Frame.Data, Buffer.concat(pending));
        pending = [];
        pendingBytes = 0;
      }
    }
    signal?.removeEventListener('abort', stop);
    if (signal?.aborted) throw new BackupStopped();
    if (pendingBytes > 0) await writer.frame(Frame.Data, Buffer.concat(pending));
    await done;
    const archive = { bytes: archiveBytes, sha256: hash.digest('hex') };
    await writer.frame(Frame.TableEnd, Buffer.from(JSON.stringify({ table: ARCHIVE, rows: 0, sha256: archive.sha256 })));
    const manifest: BackupManifest = { tables, archive };
    await writer.frame(Frame.Manifest, Buffer.from(JSON.stringify(manifest)));
    await client.query('COMMIT');
    await handle.sync();
    await handle.close();
    await link(partial, file);
    return { backupId: writer.backupId, manifest, bytes: writer.bytes() };
  } finally {
    if (dump && dump.exitCode === null) dump.kill('SIGKILL');
    await handle?.close().catch(() => undefined);
    await rm(partial, { force: true }).catch(() => undefined);
    await client.end().catch(() => undefined);
  }
}

export async function restorePgDumpBackup(
  url: string,
  file: string,
  root: RootKeyProvider,
  erasures: readonly ErasureLedgerEntry[],
): Promise<{ backupId: string; createdAt: Date; manifest: BackupManifest; rows: number; replay: ReplayOutcome }> {
  const tool = await findTool('pg_restore');
  const client = new pg.Client({ connectionString: url, application_name: 'ringvakt-restore' });
  await client.connect();
  const handle = await open(file, 'r');
  let restore: ChildProcess | undefined;
  let tables: string[] = [];
  let loaded = false;
  try {
    // Triggers off for this session (as pg_restore's --disable-triggers does for its own): the
    // ledger's guards refuse TRUNCATE, and restored rows are not new events. Needs a superuser.
    await client.query("SET session_replication_role = 'replica'");
    const server = await serverMajor(client);
    if (tool.major < server) throw new BackupError(`pg_restore ${tool.major} cannot restore into a PostgreSQL ${server} server: install the client tools of version ${server} or newer.`);
    const tenants = await client.query<{ n: string }>(`SELECT count(*) AS n FROM ${SCHEMA}.tenants`);
    if (Number(tenants.rows[0]?.n) > 0) throw new BackupError('The target database holds data: a backup is restored only into an empty database.');
    const migrations = (await client.query<{ version: number }>(`SELECT version FROM ${SCHEMA}.schema_migrations ORDER BY version`)).rows.map((row) => Number(row.version));
    tables = await tablesOf(client);

    let manifest: BackupManifest | undefined;
    let header: { backupId: string; createdAt: string } | undefined;
    const hash = createHash('sha256');
    let archiveBytes = 0;
    let done: Promise<void> | undefined;
    for await (const frame of frames(handle, root)) {
      header = frame.header;
      if (JSON.stringify(frame.header.migrations) !== JSON.stringify(migrations)) throw new BackupError(`The backup was taken at migrations ${frame.header.migrations.join(',')}; this database has ${migrations.join(',')}.`);
      if (frame.type === Frame.TableStart) {
        if (frame.payload.toString('utf8') !== ARCHIVE || restore) throw new BackupError('The backup does not hold one pg_dump archive.');
        // What the migrations seeded (jurisdiction profiles…) is replaced by the backup's rows.
        await client.query(`TRUNCATE ${tables.map(quoted).join(', ')}`);
        loaded = true;
        const connection = toolConnection(url);
        restore = spawn(tool.path, ['--data-only', '--disable-triggers', '--single-transaction', '--exit-on-error', `--dbname=${connection.dbname}`], {
          env: { ...connection.env, PGAPPNAME: 'ringvakt-restore' },
          stdio: ['pipe', 'ignore', 'pipe'],
        });
        done = exited(restore, 'pg_restore');
        // A pg_restore that ends early must not leave an unhandled rejection while frames are read,
        // nor an EPIPE on its input.
        done.catch(() => undefined);
        restore.stdin?.on('error', () => undefined);
      } else if (frame.type === Frame.Data) {
        const stdin = restore?.stdin;
        if (!stdin) throw new BackupError('Backup data outside the archive.');
        hash.update(frame.payload);
        archiveBytes += frame.payload.length;
        // Waits for room in its input, or for pg_restore's end (it stopped on an error: said by `done`).
        if (!stdin.write(frame.payload)) await Promise.race([new Promise((resolve) => stdin.once('drain', resolve)), done]);
      } else if (frame.type === Frame.TableEnd) {
        // The archive is complete: pg_restore commits once its input ends.
        restore?.stdin?.end();
        await done;
      } else if (frame.type === Frame.Manifest) {
        manifest = JSON.parse(frame.payload.toString('utf8')) as BackupManifest;
      }
    }
    if (!manifest?.archive || !header || !done) throw new BackupError('The backup has no archive or no manifest.');
    if (manifest.archive.bytes !== archiveBytes || manifest.archive.sha256 !== hash.digest('hex')) throw new BackupError('The archive does not match the backup manifest.');

    await client.query('BEGIN');
    try {
      for (const entry of manifest.tables) {
        if (!tables.includes(entry.table)) throw new BackupError(`The backup has a table this schema does not: ${entry.table}.`);
        const counted = await client.query<{ n: string }>(`SELECT count(*) AS n FROM ${quoted(entry.table)}`);
        if (Number(counted.rows[0]?.n) !== entry.rows) throw new BackupError(`Table ${entry.table} does not match its manifest entry.`);
      }
      await resetIdentities(client);
      // The erasure ledger, replayed before the restore counts as done.
      const replay = await replayLedger(client, erasures);
      await client.query('COMMIT');
      return { backupId: header.backupId, createdAt: new Date(header.createdAt), manifest, rows: manifest.tables.reduce((sum, entry) => sum + entry.rows, 0), replay };
    } catch (error) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw error;
    }
  } catch (error) {
    // Killed before its input ends, pg_restore commits nothing; rows it did commit are emptied again.
    if (restore && restore.exitCode === null) restore.kill('SIGKILL');
    if (loaded) await client.query(`TRUNCATE ${tables.map(quoted).join(', ')}`).catch(() => undefined);
    throw error;
  } finally {
    await handle.close();
    await client.end();
  }
}
