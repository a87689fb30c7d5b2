// Finding contacts: by phone or e-mail through their blind indexes (candidates decrypted and
// compared), by external id, list or status; one page at a time after a cursor.
import { sql } from '../../db/kysely.ts';
import type { TenantTransaction } from '../../db/tenant-db.ts';
import type { ContactStatus } from '../../db/schema.ts';
import { emailIndex, phoneIndex } from './contact-record.ts';
import { openContact, openEmail, openNumbers, type StoredContactRow, type StoredPhoneRow } from './open-contact.ts';
import { contactColumns, loadContacts, type ContactsCrypto, type LoadedContact } from './contacts.service.ts';

/** Contacts with this E.164 number: blind-index candidates, decrypted and compared. */
export async function findContactIdsByPhone(trx: TenantTransaction, crypto: ContactsCrypto, e164: string, limit = 100): Promise<string[]> {
  const index = await phoneIndex(crypto.cipher, trx, e164);
  // Candidates of the truncated index with their subject keys, in one round trip.
  const candidates = await sql<{ contact_id: string; position: number; number_ciphertext: Buffer | null; record_ciphertext: Buffer | null; tenant_key_version: number | null; wrapped_key: Buffer | null }>`
    SELECT p.contact_id, p.position, p.number_ciphertext, c.record_ciphertext, k.tenant_key_version, k.wrapped_key
      FROM contact_phones p
      JOIN contacts c ON c.tenant_id = p.tenant_id AND c.id = p.contact_id
      LEFT JOIN subject_keys k ON k.tenant_id = p.tenant_id AND k.subject_id = p.contact_id
     WHERE p.number_index = ${index}
     LIMIT 10000`.execute(trx);
  const matches = new Set<string>();
  for (const candidate of candidates.rows) {
    if (!candidate.wrapped_key || candidate.tenant_key_version === null) continue;
    const key = await crypto.keyring.openSubjectKey(trx, candidate.contact_id, candidate.tenant_key_version, candidate.wrapped_key);
    const [number] = openNumbers(crypto.cipher, trx.tenantId, candidate.contact_id, key, candidate.record_ciphertext, [candidate]);
    if (number?.e164 === e164) matches.add(candidate.contact_id);
    if (matches.size >= limit) break;
  }
  return [...matches].sort();
}

export async function findContactIdsByEmail(trx: TenantTransaction, crypto: ContactsCrypto, email: string, limit = 100): Promise<string[]> {
  const index = await emailIndex(crypto.cipher, trx, email);
  const candidates = await trx.selectFrom('contacts').select(['id', 'email_ciphertext', 'record_ciphertext']).where('email_index', '=', index).limit(10_000).execute();
  if (candidates.length === 0) return [];
  const keys = await crypto.keyring.subjectKeys(trx, candidates.map((candidate) => candidate.id));
  const matches: string[] = [];
  for (const candidate of candidates) {
    const key = keys.get(candidate.id);
    if (!key) continue;
    if (openEmail(crypto.cipher, trx.tenantId, candidate.id, key, candidate.record_ciphertext, candidate.email_ciphertext) === email) matches.push(candidate.id);
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
  numbers: (Buffer | null)[] | null;
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
      const phones: StoredPhoneRow[] = (positions ?? []).map((position, at) => ({ contact_id: row.id, position, kind: kinds?.[at] as StoredPhoneRow['kind'], number_ciphertext: numbers?.[at] ?? null }));
      // Opened whole (its record holds every value): a candidate whose number is not this one is a blind-index collision, rare.
      const data = openContact(crypto.cipher, trx.tenantId, row, phones, key);
      // A phone row whose blind index is this number's, and whose number (the record's at its position) is this one.
      const dialled = (positions ?? []).some((position, at) => indexes?.[at]?.equals(index) === true && data.phones[position]?.e164 === e164);
      if (!dialled) continue;
      found.push({ row, data });
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
