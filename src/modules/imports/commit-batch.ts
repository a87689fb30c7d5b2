import { binaryArray } from '../../db/binary-array.ts';
import { CompiledQuery, sql } from '../../db/kysely.ts';
import { deferWrite, sendTogether, type TenantDb, type TenantTransaction } from '../../db/tenant-db.ts';
import { isUniqueViolation, type ContactsCrypto } from '../contacts/contacts.service.ts';
import { recordMatches } from '../suppression/suppression.service.ts';
import { lookupQueries, noIdentities, type BatchLookups, type Identities } from './batch-lookups.ts';
import type { FilterEpochs, IndexFilter } from './index-filter.ts';
import { LEASE_SECONDS, type Job } from './load-import-job.ts';
import type { PreparedBatch, Reject } from './prepare-batch.ts';

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

/**
 * The run cannot go on: the database server restarted since it began (a crash may have undone its
 * last batches, and the epochs its lookups relied on), or the import's cursor is not where the run
 * left it (migration 0030), or a key rotation retired the key its prepared batches are wrapped
 * under. Nothing was written; the import is handed back and resumed from the cursor the database
 * kept.
 */
export class RunInterrupted extends Error {
  override name = 'RunInterrupted';
}

/** The value of row i's first identity (external id, each number, e-mail) that `maps` holds. */
function firstFound<V>(batch: PreparedBatch, row: number, maps: Identities<V>): V | undefined {
  const externalId = batch.externalIds[row];
  if (externalId) {
    const value = maps.external.get(externalId);
    if (value !== undefined) return value;
  }
  const end = batch.phoneStarts[row + 1] as number;
  for (let phone = batch.phoneStarts[row] as number; phone < end; phone += 1) {
    const value = maps.phone.get(batch.phoneNumbers[phone] as string);
    if (value !== undefined) return value;
  }
  const email = batch.emails[row];
  return email ? maps.email.get(email) : undefined;
}

/** Every identity of row i, set to `value` in `maps`. */
function setAll<V>(batch: PreparedBatch, row: number, maps: Identities<V>, value: V): void {
  const externalId = batch.externalIds[row];
  if (externalId) maps.external.set(externalId, value);
  const end = batch.phoneStarts[row + 1] as number;
  for (let phone = batch.phoneStarts[row] as number; phone < end; phone += 1) maps.phone.set(batch.phoneNumbers[phone] as string, value);
  const email = batch.emails[row];
  if (email) maps.email.set(email, value);
}

/** Identity → the file row that created its contact: the rows a batch created, for the next batch. */
export type CreatedKeys = Identities<number>;

/**
 * Opens the batch (migrations 0026 and 0029, begin_contact_import_batch): the lease, the tenant's
 * import lock, the data key version the subject keys are wrapped under, and — for lookups made
 * ahead — the tenant's import epoch they saw and the epochs of the index filter they trusted.
 */
function beginBatch(trx: TenantTransaction, job: Job, owner: string, batch: PreparedBatch, seen: number | null, filter: FilterEpochs | null): CompiledQuery {
  return sql`SELECT begin_contact_import_batch(${job.id}::uuid, ${owner}, ${batch.count > 0 ? batch.wrapVersion : null}::int, ${seen}::bigint,
                                               ${filter?.contacts ?? null}::bigint, ${filter?.suppressions ?? null}::bigint)`.compile(trx);
}

/** The run goes on only in the server incarnation it began in, from the cursor it left (migration 0030). */
function continueRun(trx: TenantTransaction, job: Job): CompiledQuery {
  return sql`SELECT continue_contact_import_run(${job.id}::uuid, ${job.rowsDone}::bigint, ${job.incarnation}::uuid)`.compile(trx);
}

/**
 * A batch commits without waiting for the WAL flush: the import's thread goes on with the next
 * batch a few milliseconds sooner, every batch. A crash can lose only the last batches, whole
 * (rows, counts and cursor together), and the checks above refuse the run that committed them;
 * the import's end commits synchronously, making every batch before it durable.
 */
const COMMIT_WITHOUT_FLUSH = CompiledQuery.raw('SET LOCAL synchronous_commit = off');

/** Checks, in the transaction that ends the import, that its run may still end it (RunInterrupted otherwise). */
export async function checkRunContinues(trx: TenantTransaction, job: Job): Promise<void> {
  try {
    await trx.executeQuery(continueRun(trx, job));
  } catch (error) {
    throw (error as { code?: string }).code === 'RVI04' ? new RunInterrupted() : error;
  }
}

/**
 * The batch was refused, or ran into another writer, and wrote nothing (its transaction rolled
 * back): the reason as the worker handles it, or 'again' — its lookups are to be made again under
 * the lock. Again: another import committed since its lookups (RVI03); or a deadlock with a
 * contact writer (which locks a contact, then the epoch row, where the batch locks them the other
 * way round when it links that contact), or the same external id created meanwhile.
 */
function refusal(error: unknown): unknown {
  const { code, detail } = (error ?? {}) as { code?: string; detail?: string };
  if (code === 'RVI01') return new LeaseLost();
  if (code === 'RVI02') return new WrapKeyRetired(Number(detail));
  if (code === 'RVI04') return new RunInterrupted();
  if (code === 'RVI03' || code === '40P01' || code === '40001' || isUniqueViolation(error, 'contacts_external_id')) return 'again';
  return error;
}

/** Times a batch is done under the lock before its conflicts with other writers fail the import. */
const LOCKED_ATTEMPTS = 3;

/**
 * One prepared batch into the database, in one transaction, only while this worker holds the
 * lease: dedupe, suppression, the writes, and the import's cursor and counts. Returns the identity
 * keys of the rows it created, for the next batch's lookups made ahead.
 *
 * `ahead.previous`: what the batch just before it created. With lookups made ahead
 * (`ahead.lookups`), the transaction is one round trip: the opening checks (beginBatch), the
 * writes, the COMMIT. If another import committed since those lookups (or, for lookups that
 * trusted the import's index filter, anyone wrote contacts or do-not-call entries since it was
 * loaded), the opening refuses the batch before anything is written, and the batch is done again
 * with its lookups made under the import lock: the opening checks with the lookups (sent together,
 * in that order: every lookup sees every batch committed before the lock), the candidates' keys,
 * the writes with the COMMIT. A filter the refused lookups trusted is then put out of use
 * (`ahead.filter`).
 *
 * Every attempt checks, right after the opening, that the run may go on (continueRun), and commits
 * without waiting for the flush. On success the job's cursor moves to the batch's last row.
 */
export async function commitBatch(
  tenantDb: TenantDb,
  crypto: ContactsCrypto,
  job: Job,
  batch: PreparedBatch,
  lastRow: number,
  owner: string,
  ahead: { previous: CreatedKeys; lookups?: BatchLookups | undefined; filter?: IndexFilter | undefined } = { previous: noIdentities() },
): Promise<CreatedKeys> {
  const { previous, lookups: lookedAhead, filter } = ahead;
  try {
    // Only lookups that read the epoch can be checked against it.
    if (lookedAhead && lookedAhead.epoch !== null) {
      const created = await tenantDb
        .transaction(async (trx) => {
          await deferWrite(trx, beginBatch(trx, job, owner, batch, lookedAhead.epoch, lookedAhead.filterEpochs));
          await deferWrite(trx, continueRun(trx, job));
          await deferWrite(trx, COMMIT_WITHOUT_FLUSH);
          return await writeBatch(trx, job, batch, lastRow, lookedAhead, previous);
        })
        .catch((error: unknown) => {
          if (refusal(error) !== 'again') throw error;
          // Rows it does not hold may have been written since: out of use until loaded again (unless it was already).
          const used = lookedAhead.filterEpochs;
          const now = filter?.epochs;
          if (used && now && used.contacts === now.contacts && used.suppressions === now.suppressions) filter?.drop();
          return undefined;
        });
      if (created) {
        job.rowsDone = lastRow - 1;
        return created;
      }
    }
    for (let attempt = 1; ; attempt += 1) {
      try {
        const created = await tenantDb.transaction(async (trx) => {
          const lookups = await lookupQueries(trx, crypto, job, batch, filter && { filter, skip: false });
          const [, , , ...rows] = await sendTogether(trx, [beginBatch(trx, job, owner, batch, null, null), continueRun(trx, job), COMMIT_WITHOUT_FLUSH, ...lookups.queries]);
          return await writeBatch(trx, job, batch, lastRow, { epoch: null, ...(await lookups.answer(rows)) }, previous);
        });
        job.rowsDone = lastRow - 1;
        return created;
      } catch (error) {
        if (refusal(error) !== 'again' || attempt >= LOCKED_ATTEMPTS) throw error;
      }
    }
  } catch (error) {
    const reason = refusal(error);
    throw reason === 'again' ? error : reason;
  }
}

/**
 * The batch's rows decided (created, linked, or rejected with a reason) from its lookups, and
 * written. Its statements need no answer: they travel, in order, with the COMMIT.
 */
async function writeBatch(trx: TenantTransaction, job: Job, batch: PreparedBatch, lastRow: number, lookups: BatchLookups, previous: CreatedKeys): Promise<CreatedKeys> {
  const { existing, suppressed } = lookups;
  const createdKeys: CreatedKeys = noIdentities();
  // 2. The same person twice: within the batch, against the rows the batch before created (which
  //    lookups made ahead may not show), and against existing contacts (rows of earlier batches of
  //    this import included) by external id, phone and e-mail blind indexes.
  const seenInBatch: Identities<number> = noIdentities();
  // Valid row i is created when create[i] holds.
  const create = new Array<boolean>(batch.count).fill(false);
  const linking: { row: number; contactId: string }[] = [];
  const rejects: Reject[] = [...batch.rejects];
  const reject = (row: number, reason: string, detail: string) => rejects.push({ kind: 'reject', rowNumber: batch.rowNumbers[row] as number, reason, column: null, detail });
  for (let row = 0; row < batch.count; row += 1) {
    const rowNumber = batch.rowNumbers[row] as number;
    const earlier = firstFound(batch, row, seenInBatch) ?? firstFound(batch, row, previous);
    if (earlier !== undefined) {
      reject(row, 'duplicate_in_file', `the same contact as row ${earlier}`);
      continue;
    }
    const match = firstFound(batch, row, existing);
    if (match) {
      if (match.importId === job.id) {
        reject(row, 'duplicate_in_file', match.importRow ? `the same contact as row ${match.importRow}` : 'the same contact as an earlier row');
      } else if (job.options.onExisting === 'link') {
        linking.push({ row, contactId: match.id });
      } else {
        reject(row, 'exists', 'a contact with this phone, e-mail or external id exists');
      }
      setAll(batch, row, seenInBatch, rowNumber);
      continue;
    }
    setAll(batch, row, seenInBatch, rowNumber);
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
    if (!create[row]) continue;
    created += 1;
    setAll(batch, row, createdKeys, batch.rowNumbers[row] as number);
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
    const [ids, externalIds, records, emailIndexes, fields, zones, zoneSources, rowNumbers] = batch.contactColumns as Buffer[];
    const [phoneContacts, positions, kinds, phoneIndexes] = batch.phoneColumns as Buffer[];
    await deferWrite(trx, sql`
      INSERT INTO subject_keys (tenant_id, subject_id, tenant_key_version, wrapped_key)
      SELECT ${tenant}::uuid, u.id, ${batch.wrapVersion}::int, u.wrapped
        FROM unnest(${ids}::uuid[], ${batch.wrappedKeys}::bytea[], ${keep}::bool[]) AS u(id, wrapped, keep)
       WHERE u.keep`.compile(trx));
    await deferWrite(trx, sql`
      INSERT INTO contacts (tenant_id, id, external_id, record_ciphertext, email_index, fields, time_zones, time_zone_source, import_id, import_row)
      SELECT ${tenant}::uuid, u.id, u.external_id, u.record_ct, u.email_idx, u.fields::jsonb, string_to_array(u.zones, ' '), u.zone_source, ${job.id}::uuid, u.row_number
        FROM unnest(${ids}::uuid[], ${externalIds}::text[], ${records}::bytea[], ${emailIndexes}::bytea[], ${fields}::text[], ${zones}::text[], ${zoneSources}::text[],
                    ${rowNumbers}::int[], ${keep}::bool[])
             AS u(id, external_id, record_ct, email_idx, fields, zones, zone_source, row_number, keep)
       WHERE u.keep`.compile(trx));
    if (phoneKeep.length > 0) {
      await deferWrite(trx, sql`
        INSERT INTO contact_phones (tenant_id, contact_id, position, kind, number_index)
        SELECT ${tenant}::uuid, u.contact_id, u.position, u.kind, u.number_idx
          FROM unnest(${phoneContacts}::uuid[], ${positions}::smallint[], ${kinds}::text[], ${phoneIndexes}::bytea[], ${binaryArray('bool', phoneKeep)}::bool[])
               AS u(contact_id, position, kind, number_idx, keep)
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
  return createdKeys;
}
