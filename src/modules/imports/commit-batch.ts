import { binaryArray } from '../../db/binary-array.ts';
import { sql } from '../../db/kysely.ts';
import { deferWrite, sendTogether, type TenantDb, type TenantTransaction } from '../../db/tenant-db.ts';
import type { ContactsCrypto } from '../contacts/contacts.service.ts';
import { phoneSuppressionLookup, recordMatches } from '../suppression/suppression.service.ts';
import { activeDataKeyVersionOf, activeDataKeyVersionQuery } from '../../crypto/keyring.ts';
import { LEASE_SECONDS, type Job } from './load-import-job.ts';
import { INDEX_BYTES, type PreparedBatch, type Reject } from './prepare-batch.ts';

/** The worker no longer holds the import's lease: another worker took it over. */
export class LeaseLost extends Error {}

/**
 * The batch's subject keys are wrapped under a data key version that a rotation retired after
 * the batch was prepared. Nothing was written: the batch is to be prepared again (a key stored
 * under a retired version could escape the rotation's sweep).
 */
export class WrapKeyRetired extends Error {
  constructor(readonly activeVersion: number) {
    super('the subject keys of this batch are wrapped under a retired data key');
  }
}

/** Row i's identity keys (external id, each number, e-mail), as dedupe compares them. */
function identityKeys(batch: PreparedBatch, row: number): string[] {
  const keys: string[] = [];
  const externalId = batch.externalIds[row];
  if (externalId) keys.push(`x:${externalId}`);
  const end = batch.phoneStarts[row + 1] as number;
  for (let phone = batch.phoneStarts[row] as number; phone < end; phone += 1) keys.push(`p:${batch.phoneNumbers[phone] as string}`);
  const email = batch.emails[row];
  if (email) keys.push(`e:${email}`);
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
 * One prepared batch into the database, in one transaction, only while this worker holds the
 * lease: dedupe, suppression, the writes, and the import's cursor and counts.
 */
export async function commitBatch(tenantDb: TenantDb, crypto: ContactsCrypto, job: Job, batch: PreparedBatch, lastRow: number, owner: string): Promise<void> {
  await tenantDb.transaction(async (trx) => {
    // The lease, then the tenant's import lock — always in this order (two workers that both think
    // they hold the lease must not take the two locks in opposite orders; statements sent together
    // still run one after the other) — and the active data key version, in one round trip. The
    // import lock: imports of one tenant commit one batch at a time (dedupe reads, then writes), so
    // two imports (two nodes, or the CLI beside a server) cannot both create the same person.
    const [leaseRows = [], , versionRows = []] = await sendTogether(trx, [
      trx.selectFrom('contact_imports').select(['state']).where('id', '=', job.id).where('lease_owner', '=', owner).forUpdate().compile(),
      // Only while the lease is still ours (read after the row lock above): a worker that lost it
      // does not queue for another import's lock.
      sql`SELECT pg_advisory_xact_lock(hashtextextended(${`ringvakt:contact-import:${trx.tenantId}`}, 0))
            FROM contact_imports WHERE id = ${job.id} AND lease_owner = ${owner} AND state = 'running'`.compile(trx),
      activeDataKeyVersionQuery(trx),
    ]);
    const lease = leaseRows[0] as { state: string } | undefined;
    if (!lease || lease.state !== 'running') throw new LeaseLost();
    const activeVersion = activeDataKeyVersionOf(versionRows);
    if (batch.count > 0 && batch.wrapVersion < activeVersion) throw new WrapKeyRetired(activeVersion);

    // 1. Every lookup the batch needs, in one round trip once the lock is held (so each sees every
    //    batch committed before): dedupe by external id, phone and e-mail, and the suppressions of
    //    every number (only those of rows created or linked count below). Each number's blind index
    //    is the one sealed with its row.
    const phoneIndexes = new Map<string, Buffer>();
    for (let phone = 0; phone < batch.phoneNumbers.length; phone += 1) {
      phoneIndexes.set(batch.phoneNumbers[phone] as string, Buffer.from(batch.phoneIndexes.buffer, batch.phoneIndexes.byteOffset + phone * INDEX_BYTES, INDEX_BYTES));
    }
    const dedupe = existingContactsLookup(trx, batch);
    const suppression = await phoneSuppressionLookup(trx, crypto, batch.phoneNumbers, job.campaignId, phoneIndexes);
    const [byExternal = [], phoneCandidates = [], emailCandidates = [], suppressionRows = []] = await sendTogether(trx, [...dedupe.queries, suppression.query]);
    const existing = await dedupe.found(crypto, byExternal, phoneCandidates, emailCandidates);
    const suppressed = await suppression.matches(suppressionRows);

    // 2. The same person twice: within the batch, and against existing contacts (rows of earlier
    //    batches of this import included) by external id, phone and e-mail blind indexes.
    const seenInBatch = new Map<string, number>();
    // Valid row i is created when create[i] holds.
    const create = new Array<boolean>(batch.count).fill(false);
    const linking: { row: number; contactId: string }[] = [];
    const rejects: Reject[] = [...batch.rejects];
    const reject = (row: number, reason: string, detail: string) => rejects.push({ kind: 'reject', rowNumber: batch.rowNumbers[row] as number, reason, column: null, detail });
    for (let row = 0; row < batch.count; row += 1) {
      const keys = identityKeys(batch, row);
      const rowNumber = batch.rowNumbers[row] as number;
      const earlier = firstFound(keys, seenInBatch);
      if (earlier !== undefined) {
        reject(row, 'duplicate_in_file', `the same contact as row ${earlier}`);
        continue;
      }
      const match = firstFound(keys, existing);
      if (match) {
        if (match.importId === job.id) {
          reject(row, 'duplicate_in_file', match.importRow ? `the same contact as row ${match.importRow}` : 'the same contact as an earlier row');
        } else if (job.options.onExisting === 'link') {
          linking.push({ row, contactId: match.id });
        } else {
          reject(row, 'exists', 'a contact with this phone, e-mail or external id exists');
        }
        for (const key of keys) seenInBatch.set(key, rowNumber);
        continue;
      }
      for (const key of keys) seenInBatch.set(key, rowNumber);
      create[row] = true;
    }

    // 3. Suppression: every number of every row to be created or linked — tenant-wide, registries,
    //    the list's campaign. A suppressed existing contact is not linked into the list either.
    //    Each number's blind index was computed when its row was sealed.
    const matchedSuppressions = new Set<string>();
    let suppressedRows = 0;
    const passes = (row: number) => {
      let hit = false;
      const end = batch.phoneStarts[row + 1] as number;
      for (let phone = batch.phoneStarts[row] as number; phone < end; phone += 1) {
        for (const id of suppressed.get(batch.phoneNumbers[phone] as string) ?? []) {
          matchedSuppressions.add(id);
          hit = true;
        }
      }
      if (!hit) return true;
      suppressedRows += 1;
      if (job.options.onSuppressed === 'keep') return true;
      reject(row, 'suppressed', 'a number is on a do-not-call list');
      return false;
    };
    let created = 0;
    for (let row = 0; row < batch.count; row += 1) {
      if (!create[row]) continue;
      create[row] = passes(row);
      if (create[row]) created += 1;
    }
    const links = new Set<string>();
    let linkedRows = 0;
    for (const entry of linking) {
      if (!passes(entry.row)) continue;
      links.add(entry.contactId);
      linkedRows += 1;
    }
    await recordMatches(trx, [...matchedSuppressions], { context: 'import', importId: job.id, ...(job.campaignId ? { campaignId: job.campaignId } : {}) });

    // 4. Write: subject keys, contacts, phones, list members, rejects, cursor — one transaction.
    //    Each statement takes the batch's prepared arrays whole and keeps the rows to create by a
    //    mask, so no ciphertext is handled here. None needs an answer: they travel, in order, in
    //    one batch with the COMMIT (deferWrite), and a failing one fails the commit. The tenant is
    //    given once per statement rather than left to each row's default (row-level security
    //    still checks every row against the transaction's tenant).
    const tenant = trx.tenantId;
    if (created > 0) {
      const keep = binaryArray('bool', create);
      const phoneKeep: boolean[] = [];
      for (let row = 0; row < batch.count; row += 1) {
        const end = batch.phoneStarts[row + 1] as number;
        for (let phone = batch.phoneStarts[row] as number; phone < end; phone += 1) phoneKeep.push(create[row] === true);
      }
      const [ids, externalIds, names, emails, emailIndexes, addresses, birthDates, notes, personal, fields, zones, zoneSources, rowNumbers] = batch.contactColumns as Buffer[];
      const [phoneContacts, positions, kinds, phoneNumbers, phoneIndexes] = batch.phoneColumns as Buffer[];
      await deferWrite(trx, sql`
        INSERT INTO subject_keys (tenant_id, subject_id, tenant_key_version, wrapped_key)
        SELECT ${tenant}::uuid, u.id, ${batch.wrapVersion}::int, u.wrapped
          FROM unnest(${ids}::uuid[], ${batch.wrappedKeys}::bytea[], ${keep}::bool[]) AS u(id, wrapped, keep)
         WHERE u.keep`.compile(trx));
      await deferWrite(trx, sql`
        INSERT INTO contacts (tenant_id, id, external_id, name_ciphertext, email_ciphertext, email_index, address_ciphertext, birth_date_ciphertext,
                              notes_ciphertext, personal_fields_ciphertext, fields, time_zones, time_zone_source, import_id, import_row)
        SELECT ${tenant}::uuid, u.id, u.external_id, u.name_ct, u.email_ct, u.email_idx, u.address_ct, u.birth_ct, u.notes_ct, u.personal_ct, u.fields::jsonb,
               string_to_array(u.zones, ' '), u.zone_source, ${job.id}::uuid, u.row_number
          FROM unnest(${ids}::uuid[], ${externalIds}::text[], ${names}::bytea[], ${emails}::bytea[], ${emailIndexes}::bytea[], ${addresses}::bytea[],
                      ${birthDates}::bytea[], ${notes}::bytea[], ${personal}::bytea[], ${fields}::text[], ${zones}::text[], ${zoneSources}::text[],
                      ${rowNumbers}::int[], ${keep}::bool[])
               AS u(id, external_id, name_ct, email_ct, email_idx, address_ct, birth_ct, notes_ct, personal_ct, fields, zones, zone_source, row_number, keep)
         WHERE u.keep`.compile(trx));
      if (phoneKeep.length > 0) {
        await deferWrite(trx, sql`
          INSERT INTO contact_phones (tenant_id, contact_id, position, kind, number_ciphertext, number_index)
          SELECT ${tenant}::uuid, u.contact_id, u.position, u.kind, u.number_ct, u.number_idx
            FROM unnest(${phoneContacts}::uuid[], ${positions}::smallint[], ${kinds}::text[], ${phoneNumbers}::bytea[], ${phoneIndexes}::bytea[],
                        ${binaryArray('bool', phoneKeep)}::bool[])
                 AS u(contact_id, position, kind, number_ct, number_idx, keep)
           WHERE u.keep`.compile(trx));
      }
      // The lawful basis the file came with, for the people it created (never for existing ones).
      const lawful = job.options.lawfulBasis;
      if (lawful) {
        await deferWrite(trx, sql`
          INSERT INTO consent_events (tenant_id, contact_id, purpose, action, basis, source, evidence_ref, occurred_at, recorded_by)
          SELECT ${tenant}::uuid, u.id, ${lawful.purpose}, 'grant', ${lawful.basis}, ${lawful.source}, ${lawful.evidenceRef ?? null}, now(), ${`import:${job.id}`}
            FROM unnest(${ids}::uuid[], ${keep}::bool[]) AS u(id, keep)
           WHERE u.keep`.compile(trx));
      }
      // The contacts just created are in no list yet.
      await deferWrite(trx, sql`INSERT INTO contact_list_members (tenant_id, list_id, contact_id)
                SELECT ${tenant}::uuid, ${job.listId}::uuid, u.id FROM unnest(${ids}::uuid[], ${keep}::bool[]) AS u(id, keep) WHERE u.keep`.compile(trx));
    }
    // An existing contact linked may be in this list already.
    if (links.size > 0) {
      await deferWrite(trx, sql`INSERT INTO contact_list_members (tenant_id, list_id, contact_id)
                SELECT ${tenant}::uuid, ${job.listId}::uuid, u.id FROM unnest(${binaryArray('uuid', [...links])}::uuid[]) AS u(id)
                ON CONFLICT DO NOTHING`.compile(trx));
    }
    if (rejects.length > 0) {
      await deferWrite(trx, sql`
        INSERT INTO contact_import_rejects (tenant_id, import_id, row_number, reason, column_name, detail)
        SELECT ${tenant}::uuid, ${job.id}::uuid, u.row_number, u.reason, u.column_name, u.detail
          FROM unnest(${rejects.map((entry) => entry.rowNumber)}::bigint[], ${rejects.map((entry) => entry.reason)}::text[],
                      ${rejects.map((entry) => entry.column?.slice(0, 200) ?? null)}::text[], ${rejects.map((entry) => entry.detail?.slice(0, 200) ?? null)}::text[])
               AS u(row_number, reason, column_name, detail)`.compile(trx));
    }
    await deferWrite(trx, sql`
      UPDATE contact_imports
         SET rows_done = ${lastRow - 1}, rows_created = rows_created + ${created}, rows_linked = rows_linked + ${linkedRows},
             rows_rejected = rows_rejected + ${rejects.length}, rows_suppressed = rows_suppressed + ${suppressedRows},
             lease_until = now() + make_interval(secs => ${LEASE_SECONDS}), updated_at = now()
       WHERE id = ${job.id}`.compile(trx));
  });
}

/**
 * Existing contacts that share a key with any of these: one query per kind of key for the batch
 * (sent together by the caller), then the blind-index candidates decrypted and compared.
 */
type ExistingContact = { id: string; importId: string | null; importRow: number | null };
type PhoneCandidate = { contact_id: string; position: number; number_ciphertext: Buffer; number_index: Buffer; import_id: string | null; import_row: number | null };
type EmailCandidate = { id: string; email_ciphertext: Buffer; email_index: Buffer; import_id: string | null; import_row: number | null };

function existingContactsLookup(trx: TenantTransaction, batch: PreparedBatch) {
  const externalIds = [...new Set(batch.externalIds.filter((id): id is string => id !== null))];
  // The blind indexes were computed when the rows were sealed.
  // Blind index (hex) → the values wanted under it: almost always one.
  const phoneWanted = new Map<string, string[]>();
  const emailWanted = new Map<string, string[]>();
  const want = (wanted: Map<string, string[]>, indexes: Uint8Array, at: number, value: string) => {
    const index = Buffer.from(indexes.buffer, indexes.byteOffset + at * INDEX_BYTES, INDEX_BYTES).toString('hex');
    const values = wanted.get(index);
    if (values) values.push(value);
    else wanted.set(index, [value]);
  };
  for (let phone = 0; phone < batch.phoneNumbers.length; phone += 1) want(phoneWanted, batch.phoneIndexes, phone, batch.phoneNumbers[phone] as string);
  for (let row = 0; row < batch.count; row += 1) {
    const email = batch.emails[row];
    if (email) want(emailWanted, batch.emailIndexes, row, email);
  }
  // Each query takes its values as one array parameter (a batch has thousands); an empty one finds nothing.
  const indexArray = (wanted: Map<string, string[]>) => binaryArray('bytea', [...wanted.keys()].map((hex) => Buffer.from(hex, 'hex')));
  const queries = [
    sql`SELECT id, external_id, import_id, import_row FROM contacts WHERE external_id = ANY(${binaryArray('text', externalIds)}::text[])`.compile(trx),
    sql`SELECT p.contact_id, p.position, p.number_ciphertext, p.number_index, c.import_id, c.import_row
          FROM contact_phones p JOIN contacts c ON c.tenant_id = p.tenant_id AND c.id = p.contact_id
         WHERE p.number_index = ANY(${indexArray(phoneWanted)}::bytea[])`.compile(trx),
    sql`SELECT id, email_ciphertext, email_index, import_id, import_row FROM contacts
         WHERE email_index = ANY(${indexArray(emailWanted)}::bytea[])`.compile(trx),
  ];
  const found = async (crypto: ContactsCrypto, externalRows: readonly unknown[], phoneRows: readonly unknown[], emailRows: readonly unknown[]) => {
    const existing = new Map<string, ExistingContact>();
    for (const row of externalRows as { id: string; external_id: string | null; import_id: string | null; import_row: number | null }[]) {
      if (row.external_id) existing.set(`x:${row.external_id}`, { id: row.id, importId: row.import_id, importRow: row.import_row });
    }
    const phoneCandidates = phoneRows as PhoneCandidate[];
    const emailCandidates = emailRows as EmailCandidate[];
    const subjects = [...new Set([...phoneCandidates.map((candidate) => candidate.contact_id), ...emailCandidates.map((candidate) => candidate.id)])];
    if (subjects.length === 0) return existing;
    const keys = await crypto.keyring.subjectKeys(trx, subjects);
    for (const candidate of phoneCandidates) {
      const key = keys.get(candidate.contact_id);
      if (!key) continue;
      const number = crypto.cipher.decryptForSubject(trx.tenantId, { table: 'contacts', recordId: candidate.contact_id, field: `phone.${candidate.position}` }, candidate.number_ciphertext, key);
      if (phoneWanted.get(candidate.number_index.toString('hex'))?.includes(number)) existing.set(`p:${number}`, { id: candidate.contact_id, importId: candidate.import_id, importRow: candidate.import_row });
    }
    for (const candidate of emailCandidates) {
      const key = keys.get(candidate.id);
      if (!key) continue;
      const email = crypto.cipher.decryptForSubject(trx.tenantId, { table: 'contacts', recordId: candidate.id, field: 'email' }, candidate.email_ciphertext, key);
      if (emailWanted.get(candidate.email_index.toString('hex'))?.includes(email)) existing.set(`e:${email}`, { id: candidate.id, importId: candidate.import_id, importRow: candidate.import_row });
    }
    return existing;
  };
  return { queries, found };
}
