import { binaryArray } from '../../db/binary-array.ts';
import { CompiledQuery, sql } from '../../db/kysely.ts';
import type { FieldCipher } from '../../crypto/field-cipher.ts';
import type { Keyring } from '../../crypto/keyring.ts';
import { deferWrite, sendTogether, type TenantTransaction } from '../../db/tenant-db.ts';
import type { ContactStatus } from '../../db/schema.ts';
import { AppError } from '../../server/errors.ts';
import { defaultSecurityPolicy } from '../access/security-policy.ts';
import { ContactInputError, newContactId, normaliseContact, sealContact, type ContactData, type ContactFieldDefinition, type ContactInput } from './contact-record.ts';
import { openContact, rowsByContact, type StoredContactRow, type StoredPhoneRow } from './open-contact.ts';

/** What contact services need: the cipher for fields and indexes, the keyring for subject keys. */
export type ContactsCrypto = { cipher: FieldCipher; keyring: Keyring };

export type LoadedContact = { row: StoredContactRow; data: ContactData };

/** The columns of a contact that open it (contact-record.ts openContact). */
export const contactColumns = [
  'id',
  'external_id',
  'status',
  'name_ciphertext',
  'email_ciphertext',
  'address_ciphertext',
  'birth_date_ciphertext',
  'notes_ciphertext',
  'personal_fields_ciphertext',
  'record_ciphertext',
  'fields',
  'time_zones',
  'time_zone_source',
  'created_at',
  'updated_at',
] as const;

export async function loadFieldDefinitions(trx: TenantTransaction): Promise<Map<string, ContactFieldDefinition>> {
  const rows = await trx.selectFrom('contact_fields').select(['key', 'label', 'type', 'personal']).orderBy('key').execute();
  return new Map(rows.map((row) => [row.key, row]));
}

/** The tenant's default region for numbers written without a country code: its first list's, else NO. */
export async function tenantDefaultRegion(trx: TenantTransaction): Promise<string> {
  const list = await trx.selectFrom('contact_lists').select('default_region').orderBy('created_at').limit(1).executeTakeFirst();
  return list?.default_region ?? 'NO';
}

/**
 * Many contacts, opened: their rows with their subject keys, and their phones — two queries sent
 * together, one round trip.
 */
export async function loadContacts(trx: TenantTransaction, crypto: ContactsCrypto, ids: readonly string[]): Promise<Map<string, LoadedContact>> {
  const found = new Map<string, LoadedContact>();
  if (ids.length === 0) return found;
  const wanted = binaryArray('uuid', ids);
  const [rows = [], phones = []] = (await sendTogether(trx, [
    sql`SELECT ${sql.join(contactColumns.map((column) => sql.ref(`c.${column}`)))}, k.tenant_key_version, k.wrapped_key
          FROM contacts c LEFT JOIN subject_keys k ON k.tenant_id = c.tenant_id AND k.subject_id = c.id
         WHERE c.id = ANY(${wanted}::uuid[])`.compile(trx),
    sql`SELECT contact_id, position, kind, number_ciphertext FROM contact_phones
         WHERE contact_id = ANY(${wanted}::uuid[])
         ORDER BY contact_id, position`.compile(trx),
  ])) as [(StoredContactRow & { tenant_key_version: number | null; wrapped_key: Buffer | null })[], StoredPhoneRow[]];
  const phonesOf = rowsByContact(phones);
  for (const { tenant_key_version: version, wrapped_key: wrapped, ...row } of rows) {
    // An erased contact's key is destroyed: its values stay closed.
    const key = row.status === 'erased' || wrapped === null || version === null ? null : await crypto.keyring.openSubjectKey(trx, row.id, version, wrapped);
    found.set(row.id, { row, data: openContact(crypto.cipher, trx.tenantId, row, phonesOf.get(row.id) ?? [], key) });
  }
  return found;
}

export async function requireContact(trx: TenantTransaction, crypto: ContactsCrypto, id: string): Promise<LoadedContact> {
  const contact = (await loadContacts(trx, crypto, [id])).get(id);
  // Another tenant's contact is invisible under row-level security: the same 404 as none at all.
  if (!contact) throw new AppError('not_found');
  return contact;
}

async function writeSealed(trx: TenantTransaction, crypto: ContactsCrypto, id: string, key: Buffer, data: ContactData, create: { importId?: string } | undefined) {
  const sealed = await sealContact(crypto.cipher, trx, id, key, data);
  try {
    if (create) {
      await trx
        .insertInto('contacts')
        .values({ ...sealed.row, ...(create.importId ? { import_id: create.importId } : {}) })
        .execute();
    } else {
      const { id: unchangedId, ...columns } = sealed.row;
      if (unchangedId !== id) throw new Error('a sealed contact belongs to another record');
      // A contact written before its record existed (migration 0028) moves to it: its per-value columns are cleared.
      const perValue = { name_ciphertext: null, email_ciphertext: null, address_ciphertext: null, birth_date_ciphertext: null, notes_ciphertext: null, personal_fields_ciphertext: null };
      await trx.updateTable('contacts').set({ ...columns, ...perValue }).where('id', '=', id).execute();
      // Phone rows as they were (kind, position and blind index; the numbers are in the record)
      // stay: rewriting them would count as new numbers for imports running meanwhile (migration 0029).
      const stored = await trx.selectFrom('contact_phones').select(['position', 'kind', 'number_index', 'number_ciphertext']).where('contact_id', '=', id).orderBy('position').execute();
      const same =
        stored.length === sealed.phones.length &&
        stored.every((row, at) => {
          const phone = sealed.phones[at];
          return phone && row.number_ciphertext === null && row.position === phone.position && row.kind === phone.kind && row.number_index.equals(phone.number_index);
        });
      if (same) return;
      await trx.deleteFrom('contact_phones').where('contact_id', '=', id).execute();
    }
  } catch (error) {
    if (isUniqueViolation(error, 'contacts_external_id')) throw new AppError('conflict', 'Another contact has this external id.');
    throw error;
  }
  if (sealed.phones.length > 0) {
    await trx
      .insertInto('contact_phones')
      .values(sealed.phones.map((phone) => ({ ...phone, contact_id: id })))
      .execute();
  }
}

export function isUniqueViolation(error: unknown, constraint: string): boolean {
  const pgError = error as { code?: string; constraint?: string };
  return pgError.code === '23505' && pgError.constraint === constraint;
}

export async function createContact(
  trx: TenantTransaction,
  crypto: ContactsCrypto,
  input: ContactInput,
  options: { defaultRegion: string },
): Promise<{ id: string; data: ContactData }> {
  const definitions = await loadFieldDefinitions(trx);
  const data = normaliseOrThrow(() => normaliseContact(input, { defaultRegion: options.defaultRegion, definitions }));
  const id = newContactId();
  const [key] = await crypto.keyring.createSubjectKeys(trx, [id]);
  if (!key) throw new Error('no subject key was created');
  await writeSealed(trx, crypto, id, key, data, {});
  return { id, data };
}

function normaliseOrThrow(work: () => ContactData): ContactData {
  try {
    return work();
  } catch (error) {
    if (error instanceof ContactInputError) throw new AppError(error.code, `${error.where}: ${error.reason}`);
    throw error;
  }
}

/** Names of the values that differ, for the audit event (digests, not values, go with them). */
export function changedFields(before: ContactData, after: ContactData): (keyof ContactData)[] {
  return (Object.keys(after) as (keyof ContactData)[]).filter((key) => JSON.stringify(before[key]) !== JSON.stringify(after[key]));
}

export async function updateContact(
  trx: TenantTransaction,
  crypto: ContactsCrypto,
  id: string,
  input: ContactInput,
): Promise<{ before: ContactData; after: ContactData; changed: (keyof ContactData)[] }> {
  // Serialise writers of one contact: two edits must not interleave phones and fields.
  await sql`SELECT 1 FROM contacts WHERE id = ${id} FOR NO KEY UPDATE`.execute(trx);
  const current = await requireContact(trx, crypto, id);
  if (current.row.status === 'erased') throw new AppError('contact_erased');
  const definitions = await loadFieldDefinitions(trx);
  const defaultRegion = await tenantDefaultRegion(trx);
  const after = normaliseOrThrow(() => normaliseContact(input, { defaultRegion, definitions, base: current.data }));
  const changed = changedFields(current.data, after);
  if (changed.length > 0) {
    const key = (await crypto.keyring.subjectKeys(trx, [id])).get(id);
    if (!key) throw new AppError('contact_erased');
    await writeSealed(trx, crypto, id, key, after, undefined);
  }
  return { before: current.data, after, changed };
}

/**
 * Keyed digests of values for the audit ledger: an auditor holding the tenant's keys can check that
 * a given value was set, while the ledger itself gives nothing away (a plain hash of a phone number
 * is reversed by trying the whole numbering plan).
 */
export async function auditDigests(trx: TenantTransaction, cipher: FieldCipher, data: ContactData, fields: readonly (keyof ContactData)[]): Promise<Record<string, string>> {
  const digests: Record<string, string> = {};
  for (const field of fields) {
    const digest = await cipher.blindIndex(trx, 'audit-digest', `${field}:${JSON.stringify(data[field])}`, 16);
    digests[`${field}Digest`] = digest.toString('hex');
  }
  return digests;
}

export async function setContactStatus(trx: TenantTransaction, id: string, status: Exclude<ContactStatus, 'erased'>): Promise<ContactStatus> {
  const row = await trx.selectFrom('contacts').select('status').where('id', '=', id).forNoKeyUpdate().executeTakeFirst();
  if (!row) throw new AppError('not_found');
  if (row.status === 'erased') throw new AppError('contact_erased');
  await trx.updateTable('contacts').set({ status }).where('id', '=', id).execute();
  return row.status;
}

/**
 * Starts a lookup by phone, e-mail or external id in the caller's transaction: takes one lookup from
 * the user's hourly budget. The transaction commits without waiting for the WAL flush
 * (`synchronous_commit = off`): a lookup changes no data, and its audit event and budget count can
 * be lost only if the database itself crashes within about half a second after it — the price of
 * keeping an agent's caller lookup off the disk's fsync latency. Changes and reveals stay durable.
 */
export async function beginLookup(trx: TenantTransaction, userId: string): Promise<void> {
  // Sent with the budget statement, in one round trip (an agent waits on every lookup).
  await deferWrite(trx, SYNCHRONOUS_COMMIT_OFF);
  await takeRevealBudget(trx, userId, 1, 'lookup');
}

const SYNCHRONOUS_COMMIT_OFF = CompiledQuery.raw('SET LOCAL synchronous_commit = off');

export const revealableFields = ['phones', 'email', 'address', 'birthDate', 'personalFields'] as const;
export type RevealableField = (typeof revealableFields)[number];

/**
 * Takes `count` reveals (or lookups) from the user's budget: the sum over a rolling 60 minutes may
 * not pass the tenant's limit. The minute's counter row is locked by the upsert, so concurrent
 * calls of one user count one after the other. Throws reveal_limit / lookup_limit (the caller
 * records the denial).
 */
export async function takeRevealBudget(trx: TenantTransaction, userId: string, count: number, kind: 'reveal' | 'lookup' = 'reveal'): Promise<{ used: number; limit: number }> {
  // One statement (a lookup is on an agent's hot path): count this minute, drop buckets older than
  // two hours, and read the rolling sum and the tenant's limit. The CTE's own row is not visible to
  // the outer query, so the sum takes the other minutes plus what the upsert returned.
  const result = await sql<{ used: number; cap: number | null }>`
    WITH bumped AS (
      INSERT INTO reveal_counters (user_id, kind, minute, uses) VALUES (${userId}, ${kind}, date_trunc('minute', now()), ${count})
      ON CONFLICT (tenant_id, user_id, kind, minute) DO UPDATE SET uses = reveal_counters.uses + EXCLUDED.uses
      RETURNING uses),
    dropped AS (
      DELETE FROM reveal_counters WHERE user_id = ${userId} AND kind = ${kind} AND minute < now() - interval '2 hours')
    SELECT ((SELECT uses FROM bumped) +
            (SELECT coalesce(sum(uses), 0) FROM reveal_counters
              WHERE user_id = ${userId} AND kind = ${kind} AND minute > now() - interval '60 minutes' AND minute <> date_trunc('minute', now())))::int AS used,
           (SELECT ${sql.ref(kind === 'reveal' ? 'reveals_per_hour' : 'lookups_per_hour')} FROM tenant_security_policies) AS cap`.execute(trx);
  const row = result.rows[0];
  const limit = row?.cap ?? (kind === 'reveal' ? defaultSecurityPolicy.revealsPerHour : defaultSecurityPolicy.lookupsPerHour);
  const used = row?.used ?? count;
  if (used > limit) {
    throw kind === 'reveal'
      ? new AppError('reveal_limit', `At most ${limit} reveals in any hour; try again later.`)
      : new AppError('lookup_limit', `At most ${limit} lookups by phone or e-mail in any hour; try again later.`);
  }
  return { used, limit };
}
