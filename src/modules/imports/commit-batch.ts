import { binaryArray } from '../../db/binary-array.ts';
import { sql } from '../../db/kysely.ts';
import { deferWrite, type TenantDb, type TenantTransaction } from '../../db/tenant-db.ts';
import type { ContactData, SealedContact } from '../contacts/contact-record.ts';
import type { ContactsCrypto } from '../contacts/contacts.service.ts';
import { matchPhonesInBulk, recordMatches } from '../suppression/suppression.service.ts';
import { LEASE_SECONDS, type Job } from './load-import-job.ts';
import type { NewRow, Reject, RowOutcome } from './prepare-batch.ts';

/** The worker no longer holds the import's lease: another worker took it over. */
export class LeaseLost extends Error {}

/**
 * One prepared batch into the database, in one transaction, only while this worker holds the
 * lease: dedupe, suppression, the writes, and the import's cursor and counts.
 */
export async function commitBatch(tenantDb: TenantDb, crypto: ContactsCrypto, job: Job, outcomes: readonly RowOutcome[], lastRow: number, owner: string): Promise<void> {
  await tenantDb.transaction(async (trx) => {
    const lease = await trx
      .selectFrom('contact_imports')
      .select(['state'])
      .where('id', '=', job.id)
      .where('lease_owner', '=', owner)
      .forUpdate()
      .executeTakeFirst();
    if (!lease || lease.state !== 'running') throw new LeaseLost();
    // Imports of one tenant commit one batch at a time: dedupe reads, then writes, and two imports
    // (two nodes, or the CLI beside a server) must not both create the same person.
    await sql`SELECT pg_advisory_xact_lock(hashtextextended(${`ringvakt:contact-import:${trx.tenantId}`}, 0))`.execute(trx);

    // 2. The same person twice: within the batch, and against existing contacts (rows of earlier
    //    batches of this import included) by external id, phone and e-mail blind indexes.
    const fresh = outcomes.filter((outcome): outcome is NewRow => outcome.kind === 'new');
    const existing = await existingContacts(trx, crypto, fresh);
    const seenInBatch = new Map<string, number>();
    const linking: { row: NewRow; contactId: string }[] = [];
    const final: RowOutcome[] = [];
    for (const outcome of outcomes) {
      if (outcome.kind !== 'new') {
        final.push(outcome);
        continue;
      }
      const keys = identityKeys(outcome.data);
      const earlier = firstFound(keys, seenInBatch);
      if (earlier !== undefined) {
        final.push({ kind: 'reject', rowNumber: outcome.rowNumber, reason: 'duplicate_in_file', column: null, detail: `the same contact as row ${earlier}` });
        continue;
      }
      const match = firstFound(keys, existing);
      if (match) {
        if (match.importId === job.id) {
          final.push({ kind: 'reject', rowNumber: outcome.rowNumber, reason: 'duplicate_in_file', column: null, detail: match.importRow ? `the same contact as row ${match.importRow}` : 'the same contact as an earlier row' });
        } else if (job.options.onExisting === 'link') {
          linking.push({ row: outcome, contactId: match.id });
        } else {
          final.push({ kind: 'reject', rowNumber: outcome.rowNumber, reason: 'exists', column: null, detail: 'a contact with this phone, e-mail or external id exists' });
        }
        for (const key of keys) seenInBatch.set(key, outcome.rowNumber);
        continue;
      }
      for (const key of keys) seenInBatch.set(key, outcome.rowNumber);
      final.push(outcome);
    }

    // 3. Suppression: every number of every row to be created or linked — tenant-wide, registries,
    //    the list's campaign. A suppressed existing contact is not linked into the list either.
    const toCreate = final.filter((outcome): outcome is NewRow => outcome.kind === 'new');
    const numbersOf = (row: NewRow) => row.data.phones.map((phone) => phone.e164);
    const checked = [...toCreate, ...linking.map((entry) => entry.row)];
    // Each number's blind index was computed when its row was sealed.
    const indexes = new Map<string, Buffer>();
    for (const row of checked) {
      for (const sealed of row.sealed.phones) {
        const phone = row.data.phones[sealed.position];
        if (phone) indexes.set(phone.e164, sealed.number_index);
      }
    }
    const suppressed = await matchPhonesInBulk(trx, crypto, checked.flatMap(numbersOf), job.campaignId, indexes);
    const created: NewRow[] = [];
    const links = new Set<string>();
    let linkedRows = 0;
    const rejects: Reject[] = final.filter((outcome): outcome is Reject => outcome.kind === 'reject');
    const matchedSuppressions: string[] = [];
    let suppressedRows = 0;
    const passes = (row: NewRow) => {
      const hits = numbersOf(row).flatMap((number) => suppressed.get(number) ?? []);
      if (hits.length === 0) return true;
      suppressedRows += 1;
      matchedSuppressions.push(...hits);
      if (job.options.onSuppressed === 'keep') return true;
      rejects.push({ kind: 'reject', rowNumber: row.rowNumber, reason: 'suppressed', column: null, detail: 'a number is on a do-not-call list' });
      return false;
    };
    for (const outcome of toCreate) if (passes(outcome)) created.push(outcome);
    for (const entry of linking) {
      if (!passes(entry.row)) continue;
      links.add(entry.contactId);
      linkedRows += 1;
    }
    await recordMatches(trx, [...new Set(matchedSuppressions)], { context: 'import', importId: job.id, ...(job.campaignId ? { campaignId: job.campaignId } : {}) });

    // 4. Write: subject keys, contacts, phones, list members, rejects, cursor — one transaction.
    //    Nothing below needs an answer: the writes after the subject keys travel, in order, in
    //    one batch with the COMMIT (deferWrite), and a failing one fails the commit.
    await crypto.keyring.storeSubjectKeys(trx, created.map((outcome) => outcome.subjectKey));
    const sealed = created.map((outcome) => outcome.sealed);
    const ids = sealed.map((entry) => entry.row.id);
    if (sealed.length > 0) {
      const column = <K extends keyof SealedContact['row']>(name: K) => sealed.map((entry) => entry.row[name]);
      await deferWrite(trx, sql`
        INSERT INTO contacts (id, external_id, name_ciphertext, email_ciphertext, email_index, address_ciphertext, birth_date_ciphertext,
                              notes_ciphertext, personal_fields_ciphertext, fields, time_zones, time_zone_source, import_id, import_row)
        SELECT u.id, u.external_id, u.name_ct, u.email_ct, u.email_idx, u.address_ct, u.birth_ct, u.notes_ct, u.personal_ct, u.fields::jsonb,
               string_to_array(u.zones, ' '), u.zone_source, ${job.id}::uuid, u.row_number
          FROM unnest(${binaryArray('uuid', column('id'))}::uuid[], ${binaryArray('text', column('external_id'))}::text[], ${binaryArray('bytea', column('name_ciphertext'))}::bytea[],
                      ${binaryArray('bytea', column('email_ciphertext'))}::bytea[], ${binaryArray('bytea', column('email_index'))}::bytea[], ${binaryArray('bytea', column('address_ciphertext'))}::bytea[],
                      ${binaryArray('bytea', column('birth_date_ciphertext'))}::bytea[], ${binaryArray('bytea', column('notes_ciphertext'))}::bytea[],
                      ${binaryArray('bytea', column('personal_fields_ciphertext'))}::bytea[], ${binaryArray('text', column('fields'))}::text[],
                      ${binaryArray('text', sealed.map((entry) => entry.row.time_zones.join(' ')))}::text[], ${binaryArray('text', column('time_zone_source'))}::text[],
                      ${binaryArray('int4', created.map((outcome) => outcome.rowNumber))}::int[])
               AS u(id, external_id, name_ct, email_ct, email_idx, address_ct, birth_ct, notes_ct, personal_ct, fields, zones, zone_source, row_number)`.compile(trx));
      const phones = sealed.flatMap((entry) => entry.phones.map((phone) => ({ ...phone, contactId: entry.row.id })));
      if (phones.length > 0) {
        await deferWrite(trx, sql`
          INSERT INTO contact_phones (contact_id, position, kind, number_ciphertext, number_index)
          SELECT * FROM unnest(${binaryArray('uuid', phones.map((phone) => phone.contactId))}::uuid[], ${binaryArray('int2', phones.map((phone) => phone.position))}::smallint[],
                               ${binaryArray('text', phones.map((phone) => phone.kind))}::text[], ${binaryArray('bytea', phones.map((phone) => phone.number_ciphertext))}::bytea[],
                               ${binaryArray('bytea', phones.map((phone) => phone.number_index))}::bytea[])`.compile(trx));
      }
    }
    // The lawful basis the file came with, for the people it created (never for existing ones).
    const lawful = job.options.lawfulBasis;
    if (lawful && ids.length > 0) {
      await deferWrite(trx, sql`
        INSERT INTO consent_events (contact_id, purpose, action, basis, source, evidence_ref, occurred_at, recorded_by)
        SELECT u.id, ${lawful.purpose}, 'grant', ${lawful.basis}, ${lawful.source}, ${lawful.evidenceRef ?? null}, now(), ${`import:${job.id}`}
          FROM unnest(${binaryArray('uuid', ids)}::uuid[]) AS u(id)`.compile(trx));
    }
    // The contacts just created are in no list yet; an existing one linked may be in this one.
    if (ids.length > 0) {
      await deferWrite(trx, sql`INSERT INTO contact_list_members (list_id, contact_id)
                SELECT ${job.listId}::uuid, u.id FROM unnest(${binaryArray('uuid', ids)}::uuid[]) AS u(id)`.compile(trx));
    }
    if (links.size > 0) {
      await deferWrite(trx, sql`INSERT INTO contact_list_members (list_id, contact_id)
                SELECT ${job.listId}::uuid, u.id FROM unnest(${binaryArray('uuid', [...links])}::uuid[]) AS u(id)
                ON CONFLICT DO NOTHING`.compile(trx));
    }
    if (rejects.length > 0) {
      await deferWrite(trx, sql`
        INSERT INTO contact_import_rejects (import_id, row_number, reason, column_name, detail)
        SELECT ${job.id}::uuid, u.row_number, u.reason, u.column_name, u.detail
          FROM unnest(${rejects.map((reject) => reject.rowNumber)}::bigint[], ${rejects.map((reject) => reject.reason)}::text[],
                      ${rejects.map((reject) => reject.column?.slice(0, 200) ?? null)}::text[], ${rejects.map((reject) => reject.detail?.slice(0, 200) ?? null)}::text[])
               AS u(row_number, reason, column_name, detail)`.compile(trx));
    }
    await deferWrite(trx, sql`
      UPDATE contact_imports
         SET rows_done = ${lastRow - 1}, rows_created = rows_created + ${created.length}, rows_linked = rows_linked + ${linkedRows},
             rows_rejected = rows_rejected + ${rejects.length}, rows_suppressed = rows_suppressed + ${suppressedRows},
             lease_until = now() + make_interval(secs => ${LEASE_SECONDS}), updated_at = now()
       WHERE id = ${job.id}`.compile(trx));
  });
}

/** The keys a contact is known by: external id, each phone, e-mail. */
function identityKeys(data: ContactData): string[] {
  const keys: string[] = [];
  if (data.externalId) keys.push(`x:${data.externalId}`);
  for (const phone of data.phones) keys.push(`p:${phone.e164}`);
  if (data.email) keys.push(`e:${data.email}`);
  return keys;
}

/** The value of the first of `keys` that `map` holds. */
function firstFound<V>(keys: readonly string[], map: ReadonlyMap<string, V>): V | undefined {
  for (const key of keys) {
    const value = map.get(key);
    if (value !== undefined) return value;
  }
  return undefined;
}

/**
 * Existing contacts that share a key with any of these: one query per kind of key for the batch,
 * blind-index candidates decrypted and compared.
 */
type ExistingContact = { id: string; importId: string | null; importRow: number | null };

async function existingContacts(trx: TenantTransaction, crypto: ContactsCrypto, rows: readonly NewRow[]): Promise<Map<string, ExistingContact>> {
  const found = new Map<string, ExistingContact>();
  const externalIds = [...new Set(rows.flatMap((row) => (row.data.externalId ? [row.data.externalId] : [])))];
  if (externalIds.length > 0) {
    // One array parameter, not one parameter per id (a batch has thousands).
    const byExternal = await trx
      .selectFrom('contacts')
      .select(['id', 'external_id', 'import_id', 'import_row'])
      .where('external_id', '=', sql<string>`ANY(${binaryArray('text', externalIds)}::text[])`)
      .execute();
    for (const row of byExternal) if (row.external_id) found.set(`x:${row.external_id}`, { id: row.id, importId: row.import_id, importRow: row.import_row });
  }
  // The blind indexes were computed when the rows were sealed.
  // Blind index (hex) → the values wanted under it: almost always one.
  const phoneWanted = new Map<string, string[]>();
  const emailWanted = new Map<string, string[]>();
  const want = (wanted: Map<string, string[]>, index: string, value: string) => {
    const values = wanted.get(index);
    if (values) values.push(value);
    else wanted.set(index, [value]);
  };
  for (const row of rows) {
    const phones = row.data.phones;
    for (let position = 0; position < phones.length; position += 1) {
      const phone = phones[position];
      const index = row.sealed.phones[position]?.number_index;
      if (phone && index) want(phoneWanted, index.toString('hex'), phone.e164);
    }
    const email = row.data.email;
    const index = row.sealed.row.email_index;
    if (email && index) want(emailWanted, index.toString('hex'), email);
  }
  const phoneCandidates =
    phoneWanted.size === 0
      ? []
      : (
          await sql<{ contact_id: string; position: number; number_ciphertext: Buffer; number_index: Buffer; import_id: string | null; import_row: number | null }>`
            SELECT p.contact_id, p.position, p.number_ciphertext, p.number_index, c.import_id, c.import_row
              FROM contact_phones p JOIN contacts c ON c.tenant_id = p.tenant_id AND c.id = p.contact_id
             WHERE p.number_index = ANY(${binaryArray('bytea', [...phoneWanted.keys()].map((hex) => Buffer.from(hex, 'hex')))}::bytea[])`.execute(trx)
        ).rows;
  const emailCandidates =
    emailWanted.size === 0
      ? []
      : (
          await sql<{ id: string; email_ciphertext: Buffer; email_index: Buffer; import_id: string | null; import_row: number | null }>`
            SELECT id, email_ciphertext, email_index, import_id, import_row FROM contacts
             WHERE email_index = ANY(${binaryArray('bytea', [...emailWanted.keys()].map((hex) => Buffer.from(hex, 'hex')))}::bytea[])`.execute(trx)
        ).rows;
  const subjects = [...new Set([...phoneCandidates.map((candidate) => candidate.contact_id), ...emailCandidates.map((candidate) => candidate.id)])];
  if (subjects.length === 0) return found;
  const keys = await crypto.keyring.subjectKeys(trx, subjects);
  for (const candidate of phoneCandidates) {
    const key = keys.get(candidate.contact_id);
    if (!key) continue;
    const number = crypto.cipher.decryptForSubject(trx.tenantId, { table: 'contacts', recordId: candidate.contact_id, field: `phone.${candidate.position}` }, candidate.number_ciphertext, key);
    if (phoneWanted.get(candidate.number_index.toString('hex'))?.includes(number)) found.set(`p:${number}`, { id: candidate.contact_id, importId: candidate.import_id, importRow: candidate.import_row });
  }
  for (const candidate of emailCandidates) {
    const key = keys.get(candidate.id);
    if (!key) continue;
    const email = crypto.cipher.decryptForSubject(trx.tenantId, { table: 'contacts', recordId: candidate.id, field: 'email' }, candidate.email_ciphertext, key);
    if (emailWanted.get(candidate.email_index.toString('hex'))?.includes(email)) found.set(`e:${email}`, { id: candidate.id, importId: candidate.import_id, importRow: candidate.import_row });
  }
  return found;
}
