import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { link, open, rm, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Writable } from 'node:stream';
import pg from 'pg';
import { from as copyFrom, to as copyTo } from 'pg-copy-streams';
import type { RootKeyProvider } from '../crypto/root-keys/root-key-provider.ts';
import { DecryptionError, newKey, open as openSealed, seal } from '../crypto/aead.ts';
import type { ErasureLedgerEntry } from '../privacy/erasure.ts';

/**
 * A logical backup of Ringvakt's schema that needs no PostgreSQL client binaries (the embedded
 * server ships none, and a distribution's pg_dump refuses a newer server): every table is copied
 * in PostgreSQL's binary COPY format, all within one repeatable-read snapshot, and written as a
 * sequence of AES-256-GCM frames under a fresh backup key that the root key provider wraps.
 *
 * File: "RVBK1\n", a 4-byte length and a JSON header (format, time, root key id, wrapped backup
 * key, migrations), then frames — [4-byte length][12-byte nonce][ciphertext][16-byte tag], each
 * bound by its associated data to the header's SHA-256 and its position, so neither the header
 * nor the frames can be altered, reordered, dropped or spliced from another backup; the last
 * frame is the manifest (tables, row counts, SHA-256 of each table's data), and a file without
 * it is refused as truncated.
 *
 * Restore fills a migrated, empty database (same migrations), with triggers and foreign-key
 * checks off while loading (session_replication_role = replica: needs a superuser), checks every
 * table's row count and checksum against the manifest, resets identity sequences, and replays
 * the erasure ledger (src/privacy/erasure.ts) — all in one transaction.
 */

const MAGIC = Buffer.from('RVBK1\n');
const FORMAT = 'ringvakt-backup/v1';
export const SCHEMA = 'ringvakt';
const FRAME_TARGET = 1 << 20;
const KEY_CONTEXT = Buffer.from(FORMAT);

/**
 * `contents`: absent for binary COPY tables; `pg_dump-custom` for one pg_dump custom-format
 * archive (src/backup/pg-dump-backup.ts) in the same encrypted frames.
 */
export type Header = { format: typeof FORMAT; backupId: string; createdAt: string; rootKeyId: string; wrappedKey: string; migrations: number[]; contents?: 'pg_dump-custom' };
export type TableManifest = { table: string; rows: number; sha256: string };
/** `archive`: a pg_dump backup's archive, its size and SHA-256 (its tables carry row counts, and no checksum of their own). */
export type BackupManifest = { tables: TableManifest[]; archive?: { bytes: number; sha256: string } };

export const Frame = { TableStart: 1, Data: 2, TableEnd: 3, Manifest: 4 } as const;
export type Frame = (typeof Frame)[keyof typeof Frame];

export class BackupError extends Error {}
/** A backup stopped on purpose, by its caller's signal (the node shuts down): not a failure. */
export class BackupStopped extends BackupError {
  constructor() {
    super('The backup was stopped: the node is shutting down.');
  }
}

/** Each frame is bound to the whole header (so its migrations, time and key cannot be swapped) and to its position. */
const aad = (headerBytes: Buffer, index: number) => Buffer.concat([createHash('sha256').update(headerBytes).digest(), Buffer.from(`|${FORMAT}|${index}`)]);

/**
 * Writes a backup's header — a fresh backup key, wrapped by the root key provider — and returns
 * the writer of its frames: each sealed under that key, bound to the header and its position.
 */
export async function startFrames(handle: FileHandle, root: RootKeyProvider, migrations: number[], contents?: Header['contents']) {
  const key = newKey();
  const wrapped = await root.wrap(key, KEY_CONTEXT);
  const backupId = randomBytes(16).toString('hex');
  const header: Header = { format: FORMAT, backupId, createdAt: new Date().toISOString(), rootKeyId: wrapped.keyId, wrappedKey: wrapped.wrapped.toString('base64'), migrations, ...(contents ? { contents } : {}) };
  const headerBytes = Buffer.from(JSON.stringify(header));
  const length = Buffer.alloc(4);
  length.writeUInt32BE(headerBytes.length);
  await handle.write(Buffer.concat([MAGIC, length, headerBytes]));
  let bytes = MAGIC.length + 4 + headerBytes.length;
  let index = 0;
  const frame = async (type: Frame, payload: Buffer) => {
    const body = seal(key, Buffer.concat([Buffer.from([type]), payload]), aad(headerBytes, index));
    index += 1;
    const prefix = Buffer.alloc(4);
    prefix.writeUInt32BE(body.length);
    await handle.write(Buffer.concat([prefix, body]));
    bytes += 4 + body.length;
  };
  return { backupId, frame, bytes: () => bytes };
}

/** The tables a backup holds: Ringvakt's, without its migration record and its unlogged tables (which a crash empties; migration 0030). */
export async function tablesOf(client: pg.ClientBase): Promise<string[]> {
  const result = await client.query<{ name: string }>(
    `SELECT c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND c.relname <> 'schema_migrations' AND NOT c.relispartition AND c.relpersistence = 'p'
      ORDER BY c.relname`,
    [SCHEMA],
  );
  return result.rows.map((row) => row.name);
}

export const quoted = (table: string) => `${SCHEMA}."${table.replace(/"/g, '""')}"`;

/** Writes a backup of the database at `url` (a superuser or a role that bypasses row-level security) to `file`. */
export async function writeBackup(url: string, file: string, root: RootKeyProvider, signal?: AbortSignal): Promise<{ backupId: string; manifest: BackupManifest; bytes: number }> {
  /** A backup stopped on purpose (the node shuts down) ends at the next chunk, and leaves nothing. */
  const stopped = () => (signal?.aborted ? new BackupStopped() : undefined);
  const client = new pg.Client({ connectionString: url, application_name: 'ringvakt-backup' });
  // A lost connection fails the query in flight; without a listener it would end the process.
  client.on('error', () => undefined);
  await client.connect();
  // Row-level security would silently hand a restricted role only some rows: refuse instead.
  const role = await client.query<{ ok: boolean }>('SELECT rolsuper OR rolbypassrls AS ok FROM pg_roles WHERE rolname = current_user').catch(async (error: unknown) => {
    await client.end();
    throw error;
  });
  if (!role.rows[0]?.ok) {
    await client.end();
    throw new BackupError('A backup needs a role that sees every row (a superuser or BYPASSRLS): row-level security would leave rows out.');
  }
  // Written under a temporary name and linked to `file` only once complete (link never replaces
  // an existing file): a backup cut short — a crash, a kill — never sits under a backup's name.
  const partial = `${file}.partial`;
  let handle: FileHandle;
  try {
    if (existsSync(file)) throw Object.assign(new Error(`EEXIST: ${path.basename(file)} exists`), { code: 'EEXIST' });
    handle = await open(partial, 'wx', 0o600);
  } catch (error) {
    await client.end();
    throw error;
  }
  try {
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    await client.query('SET LOCAL row_security = off');
    const migrations = (await client.query<{ version: number }>(`SELECT version FROM ${SCHEMA}.schema_migrations ORDER BY version`)).rows.map((row) => Number(row.version));
    const writer = await startFrames(handle, root, migrations);
    const { backupId, frame } = writer;
    const manifest: BackupManifest = { tables: [] };
    for (const table of await tablesOf(client)) {
      const halt = stopped();
      if (halt) throw halt;
      await frame(Frame.TableStart, Buffer.from(table));
      const hash = createHash('sha256');
      let pending: Buffer[] = [];
      let pendingBytes = 0;
      const stream = client.query(copyTo(`COPY ${quoted(table)} TO STDOUT (FORMAT binary)`));
      await pipeline(
        stream,
        new Writable({
          write(chunk: Buffer, _encoding, done) {
            const halt = stopped();
            if (halt) return done(halt);
            hash.update(chunk);
            pending.push(chunk);
            pendingBytes += chunk.length;
            if (pendingBytes < FRAME_TARGET) return done();
            const data = Buffer.concat(pending);
            pending = [];
            pendingBytes = 0;
            frame(Frame.Data, data).then(() => done(), done);
          },
          final(done) {
            if (pendingBytes === 0) return done();
            frame(Frame.Data, Buffer.concat(pending)).then(() => done(), done);
          },
        }),
      );
      const entry = { table, rows: stream.rowCount, sha256: hash.digest('hex') };
      manifest.tables.push(entry);
      await frame(Frame.TableEnd, Buffer.from(JSON.stringify(entry)));
    }
    await frame(Frame.Manifest, Buffer.from(JSON.stringify(manifest)));
    await client.query('COMMIT');
    await handle.sync();
    await handle.close();
    await link(partial, file);
    return { backupId, manifest, bytes: writer.bytes() };
  } finally {
    await handle.close().catch(() => undefined);
    // Only our own partial file is removed, complete or not (the backup now has its own name).
    await rm(partial, { force: true }).catch(() => undefined);
    await client.end().catch(() => undefined);
  }
}

/**
 * Every subject the ledger names is erased again if the backup brought it back (the same
 * `erase_subject_rows` an erasure runs), and its entry restored where the backup predates it.
 * Entries of tenants the backup does not hold are counted and left alone.
 */
export async function replayLedger(client: pg.ClientBase, erasures: readonly ErasureLedgerEntry[]): Promise<ReplayOutcome> {
  const outcome: ReplayOutcome = { entries: erasures.length, reErased: 0, ledgerRestored: 0, otherTenants: 0 };
  const tenants = new Set((await client.query<{ id: string }>(`SELECT id FROM ${SCHEMA}.tenants`)).rows.map((row) => row.id));
  for (const entry of erasures) {
    if (!tenants.has(entry.tenantId)) {
      outcome.otherTenants += 1;
      continue;
    }
    const erased = await client.query<{ contact_erased: boolean }>(`SELECT contact_erased FROM ${SCHEMA}.erase_subject_rows($1, $2, $3)`, [entry.tenantId, entry.subjectId, entry.erasedAt]);
    if (erased.rows[0]?.contact_erased) outcome.reErased += 1;
    const restored = await client.query(
      `INSERT INTO ${SCHEMA}.erasure_ledger (tenant_id, subject_id, identifier_hashes, method, reason, request_id, erased_at)
       SELECT $1, $2, $3, $4, $5, $6, $7
        WHERE NOT EXISTS (SELECT 1 FROM ${SCHEMA}.erasure_ledger WHERE tenant_id = $1 AND subject_id = $2)`,
      [entry.tenantId, entry.subjectId, entry.identifierHashes.map((hash) => Buffer.from(hash, 'hex')), entry.method, entry.reason, entry.requestId, entry.erasedAt],
    );
    outcome.ledgerRestored += restored.rowCount ?? 0;
  }
  return outcome;
}

async function readExactly(handle: FileHandle, length: number, position: number): Promise<Buffer | undefined> {
  const buffer = Buffer.alloc(length);
  const { bytesRead } = await handle.read(buffer, 0, length, position);
  if (bytesRead === 0) return undefined;
  if (bytesRead < length) throw new BackupError('The backup file is truncated.');
  return buffer;
}

/** A backup's header, unchecked (its frames are what authenticate it): which kind of backup the file holds. */
async function readHeader(file: string): Promise<Header> {
  const handle = await open(file, 'r');
  try {
    const start = await readExactly(handle, MAGIC.length + 4, 0);
    if (!start || !start.subarray(0, MAGIC.length).equals(MAGIC)) throw new BackupError('Not a Ringvakt backup file.');
    const headerBytes = await readExactly(handle, start.readUInt32BE(MAGIC.length), MAGIC.length + 4);
    if (!headerBytes) throw new BackupError('The backup file is truncated.');
    try {
      return JSON.parse(headerBytes.toString('utf8')) as Header;
    } catch {
      throw new BackupError('The backup file\'s header is not readable.');
    }
  } finally {
    await handle.close();
  }
}

/** The frames of a backup, decrypted and checked, in order; throws on any tampering or truncation. */
export async function* frames(handle: FileHandle, root: RootKeyProvider): AsyncGenerator<{ type: Frame; payload: Buffer; header: Header }> {
  const start = await readExactly(handle, MAGIC.length + 4, 0);
  if (!start || !start.subarray(0, MAGIC.length).equals(MAGIC)) throw new BackupError('Not a Ringvakt backup file.');
  const headerLength = start.readUInt32BE(MAGIC.length);
  const headerBytes = await readExactly(handle, headerLength, MAGIC.length + 4);
  if (!headerBytes) throw new BackupError('The backup file is truncated.');
  const header = JSON.parse(headerBytes.toString('utf8')) as Header;
  if (header.format !== FORMAT) throw new BackupError(`Unsupported backup format ${String(header.format)}.`);
  const key = await root.unwrap({ keyId: header.rootKeyId, wrapped: Buffer.from(header.wrappedKey, 'base64') }, KEY_CONTEXT);
  let position = MAGIC.length + 4 + headerLength;
  for (let index = 0; ; index += 1) {
    const prefix = await readExactly(handle, 4, position);
    if (!prefix) throw new BackupError('The backup file ends before its manifest: it is truncated.');
    const length = prefix.readUInt32BE(0);
    const body = await readExactly(handle, length, position + 4);
    if (!body || length < 29) throw new BackupError('The backup file is truncated.');
    position += 4 + length;
    let plain: Buffer;
    try {
      plain = openSealed(key, body, aad(headerBytes, index));
    } catch (error) {
      if (error instanceof DecryptionError) throw new BackupError(`Frame ${index} of the backup does not authenticate: the file was altered.`);
      throw error;
    }
    const type = plain[0] as Frame;
    yield { type, payload: plain.subarray(1), header };
    if (type === Frame.Manifest) return;
  }
}

/** Identity columns continue after the restored rows. */
export async function resetIdentities(client: pg.ClientBase): Promise<void> {
  const identities = await client.query<{ table_name: string; column_name: string }>(
    `SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = $1 AND is_identity = 'YES'`,
    [SCHEMA],
  );
  for (const { table_name: table, column_name: column } of identities.rows) {
    if (table === 'schema_migrations') continue;
    await client.query(`SELECT setval(pg_get_serial_sequence($1, $2), coalesce((SELECT max("${column.replace(/"/g, '""')}") FROM ${quoted(table)}), 0) + 1, false)`, [quoted(table), column]);
  }
}

/**
 * Restores a backup into the database at `url` (a superuser): it must be migrated to the
 * backup's migrations and hold no tenant. All in one transaction: nothing is left half-restored.
 */
export type ReplayOutcome = { entries: number; reErased: number; ledgerRestored: number; otherTenants: number };

export async function restoreBackup(
  url: string,
  file: string,
  root: RootKeyProvider,
  erasures: readonly ErasureLedgerEntry[],
): Promise<{ backupId: string; createdAt: Date; manifest: BackupManifest; rows: number; replay: ReplayOutcome }> {
  if ((await readHeader(file)).contents === 'pg_dump-custom') {
    const { restorePgDumpBackup } = await import('./pg-dump-backup.ts');
    return restorePgDumpBackup(url, file, root, erasures);
  }
  const client = new pg.Client({ connectionString: url, application_name: 'ringvakt-restore' });
  await client.connect();
  const handle = await open(file, 'r');
  let current: { table: string; stream: ReturnType<typeof copyFrom>; hash: ReturnType<typeof createHash>; done: Promise<void> } | undefined;
  try {
    await client.query('BEGIN');
    await client.query("SET LOCAL session_replication_role = 'replica'");
    const tenants = await client.query<{ n: string }>(`SELECT count(*) AS n FROM ${SCHEMA}.tenants`);
    if (Number(tenants.rows[0]?.n) > 0) throw new BackupError('The target database holds data: a backup is restored only into an empty database.');
    const migrations = (await client.query<{ version: number }>(`SELECT version FROM ${SCHEMA}.schema_migrations ORDER BY version`)).rows.map((row) => Number(row.version));
    const tables = await tablesOf(client);
    // What the migrations seeded (jurisdiction profiles…) is replaced by the backup's rows.
    await client.query(`TRUNCATE ${tables.map(quoted).join(', ')}`);
    const loaded: TableManifest[] = [];
    let manifest: BackupManifest | undefined;
    let taken: Header | undefined;
    for await (const { type, payload, header } of frames(handle, root)) {
      taken = header;
      if (JSON.stringify(header.migrations) !== JSON.stringify(migrations)) throw new BackupError(`The backup was taken at migrations ${header.migrations.join(',')}; this database has ${migrations.join(',')}.`);
      if (type === Frame.TableStart) {
        const table = payload.toString('utf8');
        if (!tables.includes(table)) throw new BackupError(`The backup has a table this schema does not: ${table}.`);
        const stream = client.query(copyFrom(`COPY ${quoted(table)} FROM STDIN (FORMAT binary)`));
        const done = new Promise<void>((resolve, reject) => {
          stream.on('finish', resolve);
          stream.on('error', reject);
        });
        current = { table, stream, hash: createHash('sha256'), done };
      } else if (type === Frame.Data) {
        if (!current) throw new BackupError('Backup data outside a table.');
        current.hash.update(payload);
        if (!current.stream.write(payload)) await new Promise((resolve) => current?.stream.once('drain', resolve));
      } else if (type === Frame.TableEnd) {
        if (!current) throw new BackupError('A table ends that never began.');
        current.stream.end();
        await current.done;
        const expected = JSON.parse(payload.toString('utf8')) as TableManifest;
        const got = { table: current.table, rows: current.stream.rowCount, sha256: current.hash.digest('hex') };
        if (got.table !== expected.table || got.rows !== expected.rows || got.sha256 !== expected.sha256) throw new BackupError(`Table ${current.table} does not match its manifest entry.`);
        loaded.push(got);
        current = undefined;
      } else if (type === Frame.Manifest) {
        manifest = JSON.parse(payload.toString('utf8')) as BackupManifest;
      }
    }
    if (!manifest || !taken || JSON.stringify(manifest.tables) !== JSON.stringify(loaded)) throw new BackupError('The tables loaded do not match the backup manifest.');
    await resetIdentities(client);
    // The erasure ledger, replayed before the restore commits: a restored database never exists
    // without the erasures made since its backup.
    const replay = await replayLedger(client, erasures);
    await client.query('COMMIT');
    return { backupId: taken.backupId, createdAt: new Date(taken.createdAt), manifest, rows: loaded.reduce((sum, table) => sum + table.rows, 0), replay };
  } catch (error) {
    // A COPY still open is failed first (CopyFail), or the ROLLBACK would wait behind it.
    if (current) {
      current.stream.destroy(error instanceof Error ? error : new Error('restore failed'));
      await current.done.catch(() => undefined);
    }
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  } finally {
    await handle.close();
    await client.end();
  }
}
