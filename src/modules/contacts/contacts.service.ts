import { binaryArray } from '../../db/binary-array.ts';
import { CompiledQuery, sql } from '../../db/kysely.ts';
import type { FieldCipher } from '../../crypto/field-cipher.ts';
import type { Keyring } from '../../crypto/keyring.ts';
import { deferWrite, sendTogether, type TenantTransaction } from '../../db/tenant-db.ts';
import type { ContactStatus } from '../../db/schema.ts';
import { AppError } from '../../server/errors.ts';
import { defaultSecurityPolicy } from '../access/security-policy.ts';
import {
  ContactInputError,
  emailIndex,
  newContactId,
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
  const phonesOf = new Map<string, StoredPhoneRow[]>();
  for (const phone of phones) {
    const own = phonesOf.get(phone.contact_id);
    if (own) own.push(phone);
    else phonesOf.set(phone.contact_id, [phone]);
  }
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

/** Contacts with this E.164 number: blind-index candidates, decrypted and compared. */
export async function findContactIdsByPhone(trx: TenantTransaction, crypto: ContactsCrypto, e164: string, limit = 100): Promise<string[]> {
  const index = await phoneIndex(crypto.cipher, trx, e164);
  // Candidates of the truncated index with their subject keys, in one round trip.
  const candidates = await sql<{ contact_id: string; position: number; number_ciphertext: Buffer; tenant_key_version: number | null; wrapped_key: Buffer | null }>`
    SELECT p.contact_id, p.position, p.number_ciphertext, k.tenant_key_version, k.wrapped_key
      FROM contact_phones p LEFT JOIN subject_keys k ON k.tenant_id = p.tenant_id AND k.subject_id = p.contact_id
     WHERE p.number_index = ${index}
     LIMIT 10000`.execute(trx);
  const matches = new Set<string>();
  for (const candidate of candidates.rows) {
    if (!candidate.wrapped_key || candidate.tenant_key_version === null) continue;
    const key = await crypto.keyring.openSubjectKey(trx, candidate.contact_id, candidate.tenant_key_version, candidate.wrapped_key);
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

/** Candidates of a phone's blind index read per round trip beyond the page's own need (index collisions). */
const PHONE_CANDIDATE_SLACK = 8;
/**
 * Candidates one search by phone examines at most. A number that more contacts share is paged
 * through: the page may then come back short, with the cursor after the last one examined.
 */
const PHONE_CANDIDATES_PER_SEARCH = 1000;

type PhoneCandidate = Partial<StoredContactRow> & {
  candidate: string;
  tenant_key_version: number | null;
  wrapped_key: Buffer | null;
  positions: number[] | null;
  kinds: StoredPhoneRow['kind'][] | null;
  numbers: Buffer[] | null;
  indexes: Buffer[] | null;
};

/**
 * Contacts with this number, opened, in id order after `after`: the agent's caller lookup. Each
 * round trip is one statement — the next candidates of the blind index, each with its contact,
 * subject key and phones, read under one snapshot — and keeps those whose number decrypts to
 * `e164`. Another trip follows only while the page is not full and candidates remain, up to
 * PHONE_CANDIDATES_PER_SEARCH candidates.
 */
async function contactsByPhone(
  trx: TenantTransaction,
  crypto: ContactsCrypto,
  e164: string,
  limit: number,
  after: string | undefined,
): Promise<{ contacts: LoadedContact[]; nextAfter: string | null }> {
  const index = await phoneIndex(crypto.cipher, trx, e164);
  const found: LoadedContact[] = [];
  const take = limit + PHONE_CANDIDATE_SLACK;
  let from = after ?? null;
  let examined = 0;
  for (;;) {
    const { rows } = await sql<PhoneCandidate>`
      SELECT m.contact_id AS candidate, ${sql.join(contactColumns.map((column) => sql.ref(`c.${column}`)))}, k.tenant_key_version, k.wrapped_key,
             p.positions, p.kinds, p.numbers, p.indexes
        FROM (SELECT DISTINCT contact_id FROM contact_phones
               WHERE number_index = ${index} AND (${from}::uuid IS NULL OR contact_id > ${from}::uuid)
               ORDER BY contact_id LIMIT ${take}) AS m
        LEFT JOIN contacts c ON c.id = m.contact_id
        LEFT JOIN subject_keys k ON k.tenant_id = c.tenant_id AND k.subject_id = c.id
        LEFT JOIN LATERAL (SELECT array_agg(position ORDER BY position) AS positions, array_agg(kind ORDER BY position) AS kinds,
                                  array_agg(number_ciphertext ORDER BY position) AS numbers, array_agg(number_index ORDER BY position) AS indexes
                             FROM contact_phones p
                            WHERE p.tenant_id = c.tenant_id AND p.contact_id = c.id) AS p ON true
       ORDER BY m.contact_id`.execute(trx);
    for (const { candidate, tenant_key_version: version, wrapped_key: wrapped, positions, kinds, numbers, indexes, ...columns } of rows) {
      if (examined === PHONE_CANDIDATES_PER_SEARCH) return { contacts: found, nextAfter: from };
      examined += 1;
      from = candidate;
      // A candidate whose contact is gone, or erased (its key destroyed), is found by no number.
      if (columns.id !== candidate || columns.status === 'erased' || wrapped === null || version === null) continue;
      const row = columns as StoredContactRow;
      const key = await crypto.keyring.openSubjectKey(trx, row.id, version, wrapped);
      const phones: StoredPhoneRow[] = (positions ?? []).map((position, at) => ({ contact_id: row.id, position, kind: kinds?.[at] as StoredPhoneRow['kind'], number_ciphertext: numbers?.[at] as Buffer }));
      const dialled = phones.some(
        (phone, at) =>
          indexes?.[at]?.equals(index) === true &&
          crypto.cipher.decryptForSubject(trx.tenantId, { table: 'contacts', recordId: row.id, field: `phone.${phone.position}` }, phone.number_ciphertext, key) === e164,
      );
      if (!dialled) continue;
      found.push({ row, data: openContact(crypto.cipher, trx.tenantId, row, phones, key) });
      if (found.length === limit) return { contacts: found, nextAfter: row.id };
    }
    // Fewer candidates than asked for: every one is examined, the page is complete. At the bound,
    // the cursor goes on from the last candidate examined (nothing before it was left out).
    if (rows.length < take) return { contacts: found, nextAfter: null };
    if (examined === PHONE_CANDIDATES_PER_SEARCH) return { contacts: found, nextAfter: from };
  }
}

/**
 * One page of contacts for a search, opened, in id order after the cursor, and the cursor of the
 * next page (null at the end). A search by phone alone (an agent's caller lookup) reads its page
 * in one statement; any other search finds the ids first and then loads them.
 */
export async function searchContacts(
  trx: TenantTransaction,
  crypto: ContactsCrypto,
  query: ContactQuery,
  e164?: string,
  email?: string,
): Promise<{ contacts: LoadedContact[]; nextAfter: string | null }> {
  const byPhoneAlone = e164 !== undefined && email === undefined && query.externalId === undefined && query.status === undefined && query.listId === undefined;
  if (byPhoneAlone) return contactsByPhone(trx, crypto, e164, query.limit, query.after?.toLowerCase());
  const ids = await searchContactIds(trx, crypto, query, e164, email);
  const loaded = await loadContacts(trx, crypto, ids);
  // A full page of ids is followed by another, even if one of them vanished meanwhile.
  const last = ids.at(-1);
  return { contacts: ids.flatMap((id) => loaded.get(id) ?? []), nextAfter: ids.length === query.limit && last ? last : null };
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
  const otherFilters = query.externalId !== undefined || query.status !== undefined || query.listId !== undefined;
  if (candidates && !otherFilters) {
    // Found by blind index alone: the ids are known, sorted; the cursor and the page cut them.
    const after = query.after?.toLowerCase();
    return candidates.filter((id) => after === undefined || id > after).slice(0, query.limit);
  }
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
