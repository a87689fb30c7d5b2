import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import type { FieldCipher } from '../../crypto/field-cipher.ts';
import type { Keyring } from '../../crypto/keyring.ts';
import type { TenantTransaction } from '../../db/tenant-db.ts';
import type { ContactStatus } from '../../db/schema.ts';
import { AppError } from '../../server/errors.ts';
import { loadSecurityPolicy } from '../access/security-policy.ts';
import {
  ContactInputError,
  emailIndex,
  normaliseContact,
  openContact,
  phoneIndex,
  sealContact,
  type ContactData,
  type ContactFieldDefinition,
  type ContactInput,
  type StoredContactRow,
  type StoredPhoneRow,
} from './contact-record.ts';

/** What contact services need: the cipher for fields and indexes, the keyring for subject keys. */
export type ContactsCrypto = { cipher: FieldCipher; keyring: Keyring };

export type LoadedContact = { row: StoredContactRow; data: ContactData };

const contactColumns = [
  'id',
  'external_id',
  'status',
  'name_ciphertext',
  'email_ciphertext',
  'address_ciphertext',
  'birth_date_ciphertext',
  'notes_ciphertext',
  'personal_fields_ciphertext',
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

/** Many contacts, opened, in one query per table (contacts, phones, subject keys). */
export async function loadContacts(trx: TenantTransaction, crypto: ContactsCrypto, ids: readonly string[]): Promise<Map<string, LoadedContact>> {
  const found = new Map<string, LoadedContact>();
  if (ids.length === 0) return found;
  const [rows, phones, keys] = await Promise.all([
    trx.selectFrom('contacts').select(contactColumns).where('id', 'in', ids).execute(),
    trx.selectFrom('contact_phones').select(['contact_id', 'position', 'kind', 'number_ciphertext']).where('contact_id', 'in', ids).orderBy('contact_id').orderBy('position').execute(),
    crypto.keyring.subjectKeys(trx, ids),
  ]);
  const phonesOf = new Map<string, StoredPhoneRow[]>();
  for (const phone of phones) phonesOf.set(phone.contact_id, [...(phonesOf.get(phone.contact_id) ?? []), phone]);
  for (const row of rows) {
    const key = row.status === 'erased' ? null : (keys.get(row.id) ?? null);
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
      await trx.updateTable('contacts').set(columns).where('id', '=', id).execute();
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
  const id = randomUUID();
  const [key] = await crypto.keyring.createSubjectKeys(trx, [id]);
  if (!key) throw new Error('no subject key was created');
  await writeSealed(trx, crypto, id, key, data, {});
  return { id, data };
}

function normaliseOrThrow(work: () => ContactData): ContactData {
  try {
    return work();
  } catch (error) {
    if (error instanceof ContactInputError) throw error.toAppError();
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
  await sql`SELECT 1 FROM contacts WHERE id = ${id} FOR UPDATE`.execute(trx);
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
  const row = await trx.selectFrom('contacts').select('status').where('id', '=', id).forUpdate().executeTakeFirst();
  if (!row) throw new AppError('not_found');
  if (row.status === 'erased') throw new AppError('contact_erased');
  await trx.updateTable('contacts').set({ status }).where('id', '=', id).execute();
  return row.status;
}

/**
 * Erasure by crypto-shredding: the subject key is destroyed (every copy of the ciphertext, backups
 * included, is unreadable from then on), the ciphertext and indexes are dropped, and a tombstone row
 * keeps list memberships and history pointing at "erased".
 */
export async function eraseContact(trx: TenantTransaction, crypto: ContactsCrypto, id: string): Promise<void> {
  const row = await trx.selectFrom('contacts').select('status').where('id', '=', id).forUpdate().executeTakeFirst();
  if (!row) throw new AppError('not_found');
  if (row.status === 'erased') return;
  await crypto.keyring.destroySubjectKey(trx, id);
  await trx.deleteFrom('contact_phones').where('contact_id', '=', id).execute();
  await trx
    .updateTable('contacts')
    .set({
      status: 'erased',
      erased_at: new Date(),
      external_id: null,
      name_ciphertext: null,
      email_ciphertext: null,
      email_index: null,
      address_ciphertext: null,
      birth_date_ciphertext: null,
      notes_ciphertext: null,
      personal_fields_ciphertext: null,
      fields: '{}',
    })
    .where('id', '=', id)
    .execute();
}

/** Contacts with this E.164 number: blind-index candidates, decrypted and compared. */
export async function findContactIdsByPhone(trx: TenantTransaction, crypto: ContactsCrypto, e164: string, limit = 100): Promise<string[]> {
  const index = await phoneIndex(crypto.cipher, trx, e164);
  const candidates = await trx
    .selectFrom('contact_phones')
    .select(['contact_id', 'position', 'number_ciphertext'])
    .where('number_index', '=', index)
    .limit(10_000)
    .execute();
  if (candidates.length === 0) return [];
  const keys = await crypto.keyring.subjectKeys(trx, [...new Set(candidates.map((candidate) => candidate.contact_id))]);
  const matches = new Set<string>();
  for (const candidate of candidates) {
    const key = keys.get(candidate.contact_id);
    if (!key) continue;
    const number = crypto.cipher.decryptForSubject(trx.tenantId, { table: 'contacts', recordId: candidate.contact_id, field: `phone.${candidate.position}` }, candidate.number_ciphertext, key);
    if (number === e164) matches.add(candidate.contact_id);
    if (matches.size >= limit) break;
  }
  return [...matches].sort();
}

export async function findContactIdsByEmail(trx: TenantTransaction, crypto: ContactsCrypto, email: string, limit = 100): Promise<string[]> {
  const index = await emailIndex(crypto.cipher, trx, email);
  const candidates = await trx.selectFrom('contacts').select(['id', 'email_ciphertext']).where('email_index', '=', index).limit(10_000).execute();
  if (candidates.length === 0) return [];
  const keys = await crypto.keyring.subjectKeys(trx, candidates.map((candidate) => candidate.id));
  const matches: string[] = [];
  for (const candidate of candidates) {
    const key = keys.get(candidate.id);
    if (!key || !candidate.email_ciphertext) continue;
    if (crypto.cipher.decryptForSubject(trx.tenantId, { table: 'contacts', recordId: candidate.id, field: 'email' }, candidate.email_ciphertext, key) === email) matches.push(candidate.id);
    if (matches.length >= limit) break;
  }
  return matches.sort();
}

export type ContactQuery = { phone?: string; email?: string; externalId?: string; listId?: string; status?: ContactStatus; after?: string; limit: number };

/** Contact ids for a search, in id order after the cursor. */
export async function searchContactIds(trx: TenantTransaction, crypto: ContactsCrypto, query: ContactQuery, e164?: string, email?: string): Promise<string[]> {
  let candidates: string[] | undefined;
  if (e164 !== undefined) candidates = await findContactIdsByPhone(trx, crypto, e164, 1000);
  if (email !== undefined) {
    const byEmail = await findContactIdsByEmail(trx, crypto, email, 1000);
    candidates = candidates ? candidates.filter((id) => byEmail.includes(id)) : byEmail;
  }
  if (candidates?.length === 0) return [];
  let select = trx.selectFrom('contacts').select('contacts.id').orderBy('contacts.id').limit(query.limit);
  if (candidates) select = select.where('contacts.id', 'in', candidates);
  if (query.externalId !== undefined) select = select.where('contacts.external_id', '=', query.externalId);
  if (query.status !== undefined) select = select.where('contacts.status', '=', query.status);
  if (query.after !== undefined) select = select.where('contacts.id', '>', query.after);
  if (query.listId !== undefined) {
    const listId = query.listId;
    select = select.where((eb) =>
      eb.exists(eb.selectFrom('contact_list_members').select('contact_id').whereRef('contact_list_members.contact_id', '=', 'contacts.id').where('contact_list_members.list_id', '=', listId)),
    );
  }
  return (await select.execute()).map((row) => row.id);
}

export const revealableFields = ['phones', 'email', 'address', 'birthDate', 'personalFields'] as const;
export type RevealableField = (typeof revealableFields)[number];

/**
 * Takes `count` reveals from the user's budget: the sum over a rolling 60 minutes may not pass the
 * tenant's limit. The minute's counter row is locked by the upsert, so concurrent reveals of one
 * user count one after the other. Throws reveal_limit (the caller records the denial).
 */
export async function takeRevealBudget(trx: TenantTransaction, userId: string, count: number): Promise<{ used: number; limit: number }> {
  const { revealsPerHour: limit } = await loadSecurityPolicy(trx);
  await sql`INSERT INTO reveal_counters (user_id, minute, reveals) VALUES (${userId}, date_trunc('minute', now()), ${count})
            ON CONFLICT (tenant_id, user_id, minute) DO UPDATE SET reveals = reveal_counters.reveals + EXCLUDED.reveals`.execute(trx);
  const result = await sql<{ used: number }>`
    SELECT coalesce(sum(reveals), 0)::int AS used FROM reveal_counters WHERE user_id = ${userId} AND minute > now() - interval '60 minutes'`.execute(trx);
  const used = result.rows[0]?.used ?? count;
  if (used > limit) throw new AppError('reveal_limit', `At most ${limit} reveals in any hour; try again later.`);
  // Old buckets go as they age out (this user's only: cheap, and under the lock we already hold).
  await sql`DELETE FROM reveal_counters WHERE user_id = ${userId} AND minute < now() - interval '2 hours'`.execute(trx);
  return { used, limit };
}
