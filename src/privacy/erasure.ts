import { appendFileSync, closeSync, existsSync, fsyncSync, openSync, readFileSync, truncateSync } from 'node:fs';
import { sql } from '../db/kysely.ts';
import { onCommit, type TenantTransaction } from '../db/tenant-db.ts';
import { AppError } from '../server/errors.ts';
import { loadContacts, type ContactsCrypto } from '../modules/contacts/contacts.service.ts';
import { normaliseEmail } from '../modules/contacts/phone.ts';
import { phoneIndex } from '../modules/contacts/contact-record.ts';
import { holdsOver } from './legal-holds.ts';
import type { SystemDb } from '../db/system-db.ts';

/**
 * Erasure (Art. 17) by crypto-shredding, and the erasure ledger.
 *
 * Erasing a subject destroys its per-subject key — every ciphertext under it (name, phones,
 * e-mail, notes, call notes, recordings), in this database, its replicas and its backups, is
 * unreadable from then on — drops what ciphertext and blind indexes the live rows hold, deletes
 * the recordings and the hopper rows, and keeps a tombstone so lists and call statistics still
 * add up. Suppressions stay (an objection must outlive the person's data; they hold the number
 * under the tenant key, with no link to the tombstone).
 *
 * Each erasure appends an entry to the erasure ledger: the subject id and keyed hashes of the
 * identifiers it had — no personal data. The same entry goes, once committed, to the ledger
 * mirror (a file kept apart from the database). A restore from a backup taken before the
 * erasure brings the subject's key and rows back; replaying the ledger (`replayErasures`)
 * erases them again — in the restore's own transaction (src/backup/logical-backup.ts), so a
 * restored database is never there without its erasures.
 */

export type ErasureReason = 'request' | 'retention' | 'operator';

export type ErasureLedgerEntry = {
  v: 1;
  tenantId: string;
  subjectId: string;
  identifierHashes: string[];
  method: 'crypto_shredding';
  reason: ErasureReason;
  requestId: string | null;
  erasedAt: string;
};

/** Where committed ledger entries are mirrored, outside the database (see `fileLedgerMirror`). */
export type ErasureLedgerMirror = { append(entry: ErasureLedgerEntry): void };

/** The keyed hash the ledger keeps of one identifier (HMAC-SHA256 under the tenant's ledger key). */
export async function identifierHash(trx: TenantTransaction, crypto: ContactsCrypto, kind: 'phone' | 'email' | 'external', normalised: string): Promise<Buffer> {
  return crypto.cipher.blindIndex(trx, 'erasure-ledger', `${kind}:${normalised}`, 32);
}

export type EraseOptions = { reason: ErasureReason; requestId?: string; mirror?: ErasureLedgerMirror | undefined; now?: Date };

export type EraseOutcome = { erased: boolean; recordingsDeleted: number; notesCleared: number };

/**
 * Erases one contact. Refused with `legal_hold` while a hold covers it, and with `subject_in_call`
 * while one of its calls is in progress (the call's record would be written after the erasure).
 * Erasing an erased contact does nothing.
 */
export async function eraseSubject(trx: TenantTransaction, crypto: ContactsCrypto, contactId: string, options: EraseOptions): Promise<EraseOutcome> {
  const row = await trx.selectFrom('contacts').select(['status']).where('id', '=', contactId).forNoKeyUpdate().executeTakeFirst();
  if (!row) throw new AppError('not_found');
  if (row.status === 'erased') return { erased: false, recordingsDeleted: 0, notesCleared: 0 };
  const holds = await holdsOver(trx, contactId);
  if (holds.length > 0) throw new AppError('legal_hold', `A legal hold (${holds.map((hold) => hold.scope).join(', ')}) keeps this subject's data; release it first.`);
  const live = await trx
    .selectFrom('dial_attempts')
    .select('id')
    .where('contact_id', '=', contactId)
    .where('state', 'in', ['reserved', 'dialing', 'answered', 'connected'])
    .executeTakeFirst();
  // A call an agent has asked for (preview) is about to be placed: the same as a call in progress.
  const requested = live ? undefined : await trx.selectFrom('campaign_contacts').select('campaign_id').where('contact_id', '=', contactId).where('dial_requested_at', 'is not', null).executeTakeFirst();
  if (live || requested) throw new AppError('subject_in_call', 'A call with this subject is in progress; erase it when the call has ended.');

  // The identifiers, hashed for the ledger, while they can still be read.
  const contact = (await loadContacts(trx, crypto, [contactId])).get(contactId);
  const hashes: Buffer[] = [];
  if (contact) {
    for (const phone of contact.data.phones) hashes.push(await identifierHash(trx, crypto, 'phone', phone.e164));
    const email = contact.data.email === null ? undefined : normaliseEmail(contact.data.email);
    if (email) hashes.push(await identifierHash(trx, crypto, 'email', email));
    if (contact.data.externalId) hashes.push(await identifierHash(trx, crypto, 'external', contact.data.externalId));
  }
  const now = options.now ?? new Date();
  const outcome = await shred(trx, crypto, contactId, now);
  // Inbound calls keep the caller only as the number's (truncated) blind index: those of the
  // subject's numbers go too (with the few other callers whose index collides: kept too little
  // rather than too much).
  if (contact && contact.data.phones.length > 0) {
    const indexes = await Promise.all(contact.data.phones.map((phone) => phoneIndex(crypto.cipher, trx, phone.e164)));
    await trx.updateTable('inbound_calls').set({ caller_index: null, anonymised_at: now }).where('caller_index', 'in', indexes).execute();
  }
  const entry = await trx
    .insertInto('erasure_ledger')
    .values({ subject_id: contactId, identifier_hashes: hashes, method: 'crypto_shredding', reason: options.reason, request_id: options.requestId ?? null, erased_at: now })
    .returning(['erased_at'])
    .executeTakeFirstOrThrow();
  const mirror = options.mirror;
  if (mirror) {
    const mirrored: ErasureLedgerEntry = {
      v: 1,
      tenantId: trx.tenantId,
      subjectId: contactId,
      identifierHashes: hashes.map((hash) => hash.toString('hex')),
      method: 'crypto_shredding',
      reason: options.reason,
      requestId: options.requestId ?? null,
      erasedAt: entry.erased_at.toISOString(),
    };
    onCommit(trx, () => mirror.append(mirrored));
  }
  return { erased: true, ...outcome };
}

/**
 * The destruction itself: the key under the keyring's lock, then every row through the
 * `erase_subject_rows` function (migration 0012) that a restore's ledger replay runs too.
 */
async function shred(trx: TenantTransaction, crypto: ContactsCrypto, contactId: string, now: Date): Promise<{ recordingsDeleted: number; notesCleared: number }> {
  await crypto.keyring.destroySubjectKey(trx, contactId);
  const result = await sql<{ recordings_deleted: string; notes_cleared: string }>`SELECT recordings_deleted, notes_cleared FROM erase_subject_rows(${trx.tenantId}::uuid, ${contactId}::uuid, ${now})`.execute(trx);
  const row = result.rows[0];
  return { recordingsDeleted: Number(row?.recordings_deleted ?? 0), notesCleared: Number(row?.notes_cleared ?? 0) };
}

/** Whether some erased subject had this identifier (the answer to "was this person erased?"). */
export async function wasErased(trx: TenantTransaction, crypto: ContactsCrypto, kind: 'phone' | 'email' | 'external', normalised: string): Promise<boolean> {
  const hash = await identifierHash(trx, crypto, kind, normalised);
  const found = await sql<{ one: number }>`SELECT 1 AS one FROM erasure_ledger WHERE ${hash} = ANY (identifier_hashes) LIMIT 1`.execute(trx);
  return found.rows.length > 0;
}

const ENTRY_KEYS = ['v', 'tenantId', 'subjectId', 'identifierHashes', 'method', 'reason', 'requestId', 'erasedAt'] as const;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** One mirror line, checked: a damaged line is an error naming its number, never skipped. */
export function parseLedgerLine(line: string, lineNumber: number): ErasureLedgerEntry {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    throw new Error(`erasure ledger line ${lineNumber} is not JSON`);
  }
  const entry = value as Partial<ErasureLedgerEntry>;
  const ok =
    typeof value === 'object' &&
    value !== null &&
    Object.keys(value).every((key) => (ENTRY_KEYS as readonly string[]).includes(key)) &&
    entry.v === 1 &&
    UUID.test(entry.tenantId ?? '') &&
    UUID.test(entry.subjectId ?? '') &&
    Array.isArray(entry.identifierHashes) &&
    entry.identifierHashes.every((hash) => typeof hash === 'string' && /^[0-9a-f]{64}$/.test(hash)) &&
    entry.method === 'crypto_shredding' &&
    (entry.reason === 'request' || entry.reason === 'retention' || entry.reason === 'operator') &&
    (entry.requestId === null || UUID.test(entry.requestId ?? '')) &&
    typeof entry.erasedAt === 'string' &&
    !Number.isNaN(Date.parse(entry.erasedAt));
  if (!ok) throw new Error(`erasure ledger line ${lineNumber} is not a ledger entry`);
  return entry as ErasureLedgerEntry;
}

export function readLedgerFile(file: string): ErasureLedgerEntry[] {
  const text = readFileSync(file, 'utf8');
  return text
    .split('\n')
    .map((line, index) => ({ line, number: index + 1 }))
    .filter(({ line }) => line.trim() !== '')
    .map(({ line, number }) => parseLedgerLine(line, number));
}

/**
 * The ledger mirror as an append-only JSON-lines file (mode 0600), each entry written and
 * flushed to disk once its erasure committed. Keep it on storage apart from the database and its
 * backups: it is what a restore replays.
 */
export function fileLedgerMirror(file: string): ErasureLedgerMirror {
  return {
    append(entry) {
      const fd = openSync(file, 'a', 0o600);
      try {
        appendFileSync(fd, `${JSON.stringify(entry)}\n`);
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
    },
  };
}

/**
 * Brings the mirror file up to the database's erasure ledger: every committed entry of every
 * tenant that the file lacks is appended (and flushed). An erasure's own append runs after its
 * commit, so a process killed between the two leaves the file one entry short; and each node's
 * file holds only the erasures it made. Run at start and then periodically (`serve` does), every
 * node's mirror becomes a complete copy, and no crash leaves an erasure that a restore would undo.
 * An erasure committing while this runs may be appended twice (by itself and here): replaying a
 * ledger erases a subject once, whatever the number of its lines. Returns how many were appended.
 */
export async function catchUpLedgerMirror(systemDb: SystemDb, file: string, mirror: ErasureLedgerMirror = fileLedgerMirror(file)): Promise<number> {
  const key = (entry: { tenantId: string; subjectId: string; erasedAt: string }) => `${entry.tenantId}|${entry.subjectId}|${entry.erasedAt}`;
  // A line cut short by a crash mid-write (no newline after it) is dropped: if its erasure
  // committed, the database's ledger holds it and it is written again whole below.
  if (existsSync(file)) {
    const text = readFileSync(file, 'utf8');
    if (text.length > 0 && !text.endsWith('\n')) truncateSync(file, Buffer.byteLength(text.slice(0, text.lastIndexOf('\n') + 1)));
  }
  const known = new Set(existsSync(file) ? readLedgerFile(file).map(key) : []);
  let appended = 0;
  for (const tenant of await systemDb.listTenants()) {
    const rows = await systemDb
      .inTenant(tenant.id)
      .read((trx) => trx.selectFrom('erasure_ledger').select(['subject_id', 'identifier_hashes', 'method', 'reason', 'request_id', 'erased_at']).orderBy('seq').execute());
    for (const row of rows) {
      const entry: ErasureLedgerEntry = {
        v: 1,
        tenantId: tenant.id,
        subjectId: row.subject_id,
        identifierHashes: row.identifier_hashes.map((hash) => hash.toString('hex')),
        method: row.method,
        reason: row.reason,
        requestId: row.request_id,
        erasedAt: row.erased_at.toISOString(),
      };
      if (known.has(key(entry))) continue;
      mirror.append(entry);
      known.add(key(entry));
      appended += 1;
    }
  }
  return appended;
}
