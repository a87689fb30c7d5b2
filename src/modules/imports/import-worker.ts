import { randomUUID } from 'node:crypto';
import { pipeline, Readable } from 'node:stream';
import { sql } from 'kysely';
import type { Logger } from '../../logger.ts';
import type { NewSubjectKey } from '../../crypto/keyring.ts';
import type { TenantDb, TenantTransaction } from '../../db/tenant-db.ts';
import type { SystemDb } from '../../db/system-db.ts';
import { recordAuditEvent } from '../../audit/audit-event.ts';
import { ContactInputError, normaliseContact, sealContact, type ContactData, type ContactFieldDefinition, type SealedContact } from '../contacts/contact-record.ts';
import { loadFieldDefinitions, type ContactsCrypto } from '../contacts/contacts.service.ts';
import { matchPhonesInBulk, recordMatches } from '../suppression/suppression.service.ts';
import { csvParser, type CsvRecord } from './csv-reading.ts';
import { cellProblem, mappingSchema, planColumns, rowToInput, type ColumnPlan } from './import-mapping.ts';
import { chunkAt } from './import-upload.ts';

/**
 * The import worker. Every `ringvakt serve` process runs one; the CLI runs one for its own import.
 * A worker claims an import with a lease (SKIP LOCKED, so two never take the same one), reads the
 * stored file again, skips the rows already done, and commits each batch of rows together with the
 * import's cursor and counts — so an import stopped anywhere (crash, deploy, lost lease) resumes
 * exactly after its last committed row, without duplicates. A batch commits only while its worker
 * still holds the lease.
 */
export type ImportOptions = { onExisting: 'link' | 'reject'; onSuppressed: 'skip' | 'keep'; delimiter?: ',' | ';' };

export const LEASE_SECONDS = 60;
export const BATCH_ROWS = 2000;
/** Rows after which the worker first refreshes the planner's statistics, and again each time they double. */
const FIRST_STATISTICS_REFRESH = 10_000;

class LeaseLost extends Error {}

type Job = {
  id: string;
  listId: string;
  campaignId: string | null;
  defaultRegion: string;
  plan: ColumnPlan;
  options: ImportOptions;
  delimiter: ',' | ';';
  rowsDone: number;
  createdBy: string;
};

/** Claims a queued import (or one whose worker's lease ran out); `importId` narrows it to one. */
export async function claimImport(tenantDb: TenantDb, owner: string, importId?: string): Promise<string | undefined> {
  return tenantDb.transaction(async (trx) => {
    const claimed = await sql<{ id: string }>`
      UPDATE contact_imports SET state = 'running', lease_owner = ${owner}, lease_until = now() + make_interval(secs => ${LEASE_SECONDS}),
             started_at = coalesce(started_at, now()), updated_at = now()
       WHERE id = (SELECT id FROM contact_imports
                    WHERE state IN ('queued', 'running') AND (lease_until IS NULL OR lease_until < now())
                      ${importId ? sql`AND id = ${importId}` : sql``}
                    ORDER BY created_at LIMIT 1 FOR UPDATE SKIP LOCKED)
       RETURNING id`.execute(trx);
    return claimed.rows[0]?.id;
  });
}

async function loadJob(trx: TenantTransaction, importId: string, headers: readonly string[] | undefined): Promise<Job & { mapping: unknown }> {
  const row = await trx
    .selectFrom('contact_imports')
    .innerJoin('contact_lists', 'contact_lists.id', 'contact_imports.list_id')
    .select(['contact_imports.id', 'list_id', 'mapping', 'options', 'delimiter', 'rows_done', 'created_by', 'contact_lists.default_region', 'contact_lists.campaign_id'])
    .where('contact_imports.id', '=', importId)
    .executeTakeFirstOrThrow();
  const options = row.options as ImportOptions;
  const plan = headers ? planColumns(headers, mappingSchema.parse(row.mapping)) : { columns: [] };
  if ('problem' in plan) throw new Error('the header row no longer matches the mapping');
  return {
    id: row.id,
    listId: row.list_id,
    campaignId: row.campaign_id,
    defaultRegion: row.default_region,
    plan,
    options,
    delimiter: row.delimiter ?? ',',
    rowsDone: Number(row.rows_done),
    createdBy: row.created_by,
    mapping: row.mapping,
  };
}

/** The stored file as text, chunk by chunk (a few chunks in memory at most). */
function storedFile(tenantDb: TenantDb, crypto: ContactsCrypto, importId: string): Readable {
  async function* chunks() {
    const decoder = new TextDecoder('utf-8');
    let seq = 0;
    for (;;) {
      const rows = await tenantDb.read((trx) =>
        trx.selectFrom('contact_import_chunks').select(['seq', 'ciphertext']).where('import_id', '=', importId).where('seq', '>=', seq).orderBy('seq').limit(4).execute(),
      );
      if (rows.length === 0) break;
      for (const row of rows) {
        const plain = await tenantDb.read((trx) => crypto.cipher.decryptBytes(trx, chunkAt(importId, row.seq), row.ciphertext));
        yield decoder.decode(plain, { stream: true });
        seq = row.seq + 1;
      }
    }
    const rest = decoder.decode();
    if (rest) yield rest;
  }
  return Readable.from(chunks(), { objectMode: false });
}

type Reject = { kind: 'reject'; rowNumber: number; reason: string; column: string | null; detail: string | null };
type ValidRow = { kind: 'valid'; rowNumber: number; data: ContactData };
/** A valid row made ready to write: its contact id, its subject key (wrapped), its fields sealed. */
type NewRow = { kind: 'new'; rowNumber: number; data: ContactData; sealed: SealedContact; subjectKey: NewSubjectKey };
type RowOutcome = NewRow | Reject;

export type BatchCounts = { created: number; linked: number; rejected: number; suppressed: number };

/**
 * Runs a claimed import to its end (or until its lease is lost, or `stop` says so). Returns the
 * final state.
 */
export async function runImport(
  tenantDb: TenantDb,
  crypto: ContactsCrypto,
  importId: string,
  owner: string,
  options: { logger?: Logger; stop?: () => boolean; batchRows?: number; onBatch?: () => void } = {},
): Promise<'done' | 'failed' | 'lease_lost' | 'stopped' | 'cancelled'> {
  const batchRows = options.batchRows ?? BATCH_ROWS;
  const state = await tenantDb.read((trx) => trx.selectFrom('contact_imports').select(['state', 'delimiter', 'rows_done']).where('id', '=', importId).executeTakeFirst());
  if (!state || state.state !== 'running') return 'lease_lost';
  // pipeline(), not pipe(): an error reading or decrypting a chunk must reach the loop below (and
  // fail the import), not go unheard on the source stream — or crash the process.
  const parser = pipeline(storedFile(tenantDb, crypto, importId), csvParser(state.delimiter ?? ','), () => undefined);
  let job: Job | undefined;
  let definitions: Map<string, ContactFieldDefinition> | undefined;
  let batch: { rowNumber: number; record: string[] }[] = [];
  let committedRows = 0;
  let refreshStatisticsAt = FIRST_STATISTICS_REFRESH;
  // One batch commits while the next is read and prepared (parsing and normalising are CPU work
  // in this process; committing is work in the database): at most two batches in memory.
  let inFlight: Promise<void> | undefined;
  const settle = async (): Promise<'stopped' | undefined> => {
    if (!inFlight) return undefined;
    const committing = inFlight;
    inFlight = undefined;
    await committing;
    if (committedRows >= refreshStatisticsAt) {
      refreshStatisticsAt *= 2;
      await tenantDb.transaction((trx) => sql`SELECT refresh_contact_statistics()`.execute(trx));
    }
    options.onBatch?.();
    if (!options.stop?.()) return undefined;
    // Hand the import back at once, so another process resumes it without waiting for the lease.
    await tenantDb.transaction((trx) => trx.updateTable('contact_imports').set({ lease_owner: null, lease_until: null }).where('id', '=', importId).where('lease_owner', '=', owner).execute());
    return 'stopped';
  };
  const startCommit = (current: Job, rows: readonly { rowNumber: number; record: string[] }[], prepared: RowOutcome[]) => {
    const lastRow = rows.at(-1)?.rowNumber ?? 1;
    inFlight = commitBatch(tenantDb, crypto, current, prepared, lastRow, owner).then(() => {
      current.rowsDone += rows.length;
      committedRows += rows.length;
    });
    // Its failure is taken up by the next settle(); until then it must not count as unhandled.
    inFlight.catch(() => undefined);
  };
  try {
    for await (const item of parser as AsyncIterable<CsvRecord>) {
      const rowNumber = item.info.records;
      if (rowNumber === 1) {
        const headers = item.record;
        job = await tenantDb.read((trx) => loadJob(trx, importId, headers));
        definitions = await tenantDb.read((trx) => loadFieldDefinitions(trx));
        continue;
      }
      if (!job || !definitions) throw new Error('an import file without a header row');
      // Rows already committed by an earlier run (the data row n is record n + 1).
      if (rowNumber - 1 <= job.rowsDone) continue;
      batch.push({ rowNumber, record: item.record });
      if (batch.length >= batchRows) {
        const rows = batch;
        batch = [];
        const prepared = await prepareBatch(tenantDb, crypto, job, definitions, rows);
        if ((await settle()) === 'stopped') return 'stopped';
        startCommit(job, rows, prepared);
      }
    }
    if (!job || !definitions) throw new Error('an import file without a header row');
    if ((await settle()) === 'stopped') return 'stopped';
    if (batch.length > 0) {
      startCommit(job, batch, await prepareBatch(tenantDb, crypto, job, definitions, batch));
      await inFlight;
    }
    const finished = job;
    const ended = await tenantDb.transaction(async (trx) => {
      const done = await trx
        .updateTable('contact_imports')
        .set({ state: 'done', finished_at: new Date(), lease_owner: null, lease_until: null, updated_at: new Date() })
        .where('id', '=', importId)
        .where('lease_owner', '=', owner)
        .where('state', '=', 'running')
        .returning(['rows_done', 'rows_created', 'rows_linked', 'rows_rejected', 'rows_suppressed', 'file_sha256'])
        .executeTakeFirst();
      if (!done) return false;
      // The file is no longer needed: the personal data now lives only in the contacts.
      await trx.deleteFrom('contact_import_chunks').where('import_id', '=', importId).execute();
      await recordAuditEvent(trx, {
        action: 'contact_import.finish',
        outcome: 'success',
        actor: { type: 'system', id: finished.createdBy },
        target: { type: 'contact_import', id: importId },
        details: {
          list: finished.listId,
          rows: Number(done.rows_done),
          created: Number(done.rows_created),
          linked: Number(done.rows_linked),
          rejected: Number(done.rows_rejected),
          suppressed: Number(done.rows_suppressed),
          fileSha256: done.file_sha256 ? done.file_sha256.toString('hex') : null,
        },
      });
      return true;
    });
    return ended ? 'done' : 'lease_lost';
  } catch (error) {
    await inFlight?.catch(() => undefined);
    if (error instanceof LeaseLost) return 'lease_lost';
    options.logger?.error({ importId, err: error instanceof Error ? { name: error.name, code: (error as { code?: string }).code } : undefined }, 'contact import failed');
    await tenantDb.transaction((trx) =>
      trx
        .updateTable('contact_imports')
        .set({ state: 'failed', error_code: 'internal_error', error_detail: 'The import stopped on an internal error; the rows before it are imported.', lease_owner: null, lease_until: null, finished_at: new Date() })
        .where('id', '=', importId)
        .where('lease_owner', '=', owner)
        .execute(),
    );
    // A failed import keeps no copy of its file: the rows not imported are not kept anywhere.
    await tenantDb.transaction(async (trx) => {
      const failed = await trx.selectFrom('contact_imports').select('state').where('id', '=', importId).executeTakeFirst();
      if (failed?.state === 'failed') await trx.deleteFrom('contact_import_chunks').where('import_id', '=', importId).execute();
    });
    return 'failed';
  } finally {
    // A batch still committing when this run ends early: let it finish before the caller goes on.
    await inFlight?.catch(() => undefined);
    parser.destroy();
  }
}

/** Each row on its own, before any database work: mapping, limits, normalisation. */
function prepareRows(job: Job, definitions: ReadonlyMap<string, ContactFieldDefinition>, rows: readonly { rowNumber: number; record: string[] }[]): (ValidRow | Reject)[] {
  return rows.map(({ rowNumber, record }) => {
    const { input, columnOf } = rowToInput(record, job.plan);
    const tooLong = cellProblem(input);
    if (tooLong) return { kind: 'reject', rowNumber, reason: 'value_too_long', column: columnOf(tooLong.where), detail: `${tooLong.where}: ${tooLong.reason}` };
    if (!input.phones?.length && !input.email && !input.externalId) return { kind: 'reject', rowNumber, reason: 'no_identifier', column: null, detail: 'no phone number, e-mail or external id' };
    try {
      return { kind: 'valid', rowNumber, data: normaliseContact(input, { defaultRegion: job.defaultRegion, definitions }) };
    } catch (error) {
      if (error instanceof ContactInputError) return { kind: 'reject', rowNumber, reason: error.code, column: columnOf(error.where), detail: `${error.where}: ${error.reason}` };
      throw error;
    }
  });
}

/**
 * A batch made ready to write, while the batch before it commits: every valid row gets its id and
 * a new subject key, and its values are sealed and indexed. Rows that dedupe or suppression drop
 * later are discarded with their keys unstored (their wraps still count against the key budget).
 * Yields to the event loop every few hundred rows, so the commit in flight keeps moving.
 */
async function prepareBatch(
  tenantDb: TenantDb,
  crypto: ContactsCrypto,
  job: Job,
  definitions: ReadonlyMap<string, ContactFieldDefinition>,
  rows: readonly { rowNumber: number; record: string[] }[],
): Promise<RowOutcome[]> {
  const parsed = prepareRows(job, definitions, rows);
  const valid = parsed.filter((row): row is ValidRow => row.kind === 'valid');
  const ready = new Map<number, NewRow>();
  await tenantDb.transaction(async (trx) => {
    const keys = await crypto.keyring.wrapNewSubjectKeys(trx, valid.map(() => randomUUID()));
    for (const [position, row] of valid.entries()) {
      const subjectKey = keys[position];
      if (!subjectKey) throw new Error('a subject key is missing');
      ready.set(row.rowNumber, { kind: 'new', rowNumber: row.rowNumber, data: row.data, subjectKey, sealed: await sealContact(crypto.cipher, trx, subjectKey.subjectId, subjectKey.key, row.data) });
      if (position % 250 === 249) await new Promise((resolve) => setImmediate(resolve));
    }
  });
  return parsed.map((row) => (row.kind === 'valid' ? (ready.get(row.rowNumber) as NewRow) : row));
}

async function commitBatch(tenantDb: TenantDb, crypto: ContactsCrypto, job: Job, outcomes: readonly RowOutcome[], lastRow: number, owner: string): Promise<void> {
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
      const earlier = keys.map((key) => seenInBatch.get(key)).find((row) => row !== undefined);
      if (earlier !== undefined) {
        final.push({ kind: 'reject', rowNumber: outcome.rowNumber, reason: 'duplicate_in_file', column: null, detail: `the same contact as row ${earlier}` });
        continue;
      }
      const match = keys.map((key) => existing.get(key)).find((found) => found !== undefined);
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
    const suppressed = await matchPhonesInBulk(trx, crypto, [...toCreate, ...linking.map((entry) => entry.row)].flatMap(numbersOf), job.campaignId);
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
    await crypto.keyring.storeSubjectKeys(trx, created.map((outcome) => outcome.subjectKey));
    const sealed = created.map((outcome) => outcome.sealed);
    const ids = sealed.map((entry) => entry.row.id);
    if (sealed.length > 0) {
      const column = <K extends keyof SealedContact['row']>(name: K) => sealed.map((entry) => entry.row[name]);
      await sql`
        INSERT INTO contacts (id, external_id, name_ciphertext, email_ciphertext, email_index, address_ciphertext, birth_date_ciphertext,
                              notes_ciphertext, personal_fields_ciphertext, fields, time_zones, time_zone_source, import_id, import_row)
        SELECT u.id, u.external_id, u.name_ct, u.email_ct, u.email_idx, u.address_ct, u.birth_ct, u.notes_ct, u.personal_ct, u.fields::jsonb,
               string_to_array(u.zones, ' '), u.zone_source, ${job.id}::uuid, u.row_number
          FROM unnest(${column('id')}::uuid[], ${column('external_id')}::text[], ${column('name_ciphertext')}::bytea[], ${column('email_ciphertext')}::bytea[],
                      ${column('email_index')}::bytea[], ${column('address_ciphertext')}::bytea[], ${column('birth_date_ciphertext')}::bytea[],
                      ${column('notes_ciphertext')}::bytea[], ${column('personal_fields_ciphertext')}::bytea[], ${column('fields')}::text[],
                      ${sealed.map((entry) => entry.row.time_zones.join(' '))}::text[], ${column('time_zone_source')}::text[],
                      ${created.map((outcome) => outcome.rowNumber)}::int[])
               AS u(id, external_id, name_ct, email_ct, email_idx, address_ct, birth_ct, notes_ct, personal_ct, fields, zones, zone_source, row_number)`.execute(trx);
      const phones = sealed.flatMap((entry) => entry.phones.map((phone) => ({ ...phone, contactId: entry.row.id })));
      if (phones.length > 0) {
        await sql`
          INSERT INTO contact_phones (contact_id, position, kind, number_ciphertext, number_index)
          SELECT * FROM unnest(${phones.map((phone) => phone.contactId)}::uuid[], ${phones.map((phone) => phone.position)}::smallint[],
                               ${phones.map((phone) => phone.kind)}::text[], ${phones.map((phone) => phone.number_ciphertext)}::bytea[],
                               ${phones.map((phone) => phone.number_index)}::bytea[])`.execute(trx);
      }
    }
    const members = [...ids, ...links];
    if (members.length > 0) {
      await sql`INSERT INTO contact_list_members (list_id, contact_id)
                SELECT ${job.listId}::uuid, u.id FROM unnest(${members}::uuid[]) AS u(id)
                ON CONFLICT DO NOTHING`.execute(trx);
    }
    if (rejects.length > 0) {
      await sql`
        INSERT INTO contact_import_rejects (import_id, row_number, reason, column_name, detail)
        SELECT ${job.id}::uuid, u.row_number, u.reason, u.column_name, u.detail
          FROM unnest(${rejects.map((reject) => reject.rowNumber)}::bigint[], ${rejects.map((reject) => reject.reason)}::text[],
                      ${rejects.map((reject) => reject.column?.slice(0, 200) ?? null)}::text[], ${rejects.map((reject) => reject.detail?.slice(0, 200) ?? null)}::text[])
               AS u(row_number, reason, column_name, detail)`.execute(trx);
    }
    await sql`
      UPDATE contact_imports
         SET rows_done = ${lastRow - 1}, rows_created = rows_created + ${created.length}, rows_linked = rows_linked + ${linkedRows},
             rows_rejected = rows_rejected + ${rejects.length}, rows_suppressed = rows_suppressed + ${suppressedRows},
             lease_until = now() + make_interval(secs => ${LEASE_SECONDS}), updated_at = now()
       WHERE id = ${job.id}`.execute(trx);
  });
}

/** The keys a contact is known by: external id, each phone, e-mail. */
function identityKeys(data: ContactData): string[] {
  return [...(data.externalId ? [`x:${data.externalId}`] : []), ...data.phones.map((phone) => `p:${phone.e164}`), ...(data.email ? [`e:${data.email}`] : [])];
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
    const byExternal = await trx.selectFrom('contacts').select(['id', 'external_id', 'import_id', 'import_row']).where('external_id', 'in', externalIds).execute();
    for (const row of byExternal) if (row.external_id) found.set(`x:${row.external_id}`, { id: row.id, importId: row.import_id, importRow: row.import_row });
  }
  // The blind indexes were computed when the rows were sealed.
  const phoneWanted = new Map<string, Set<string>>();
  const emailWanted = new Map<string, Set<string>>();
  for (const row of rows) {
    for (const [position, phone] of row.data.phones.entries()) {
      const index = row.sealed.phones[position]?.number_index.toString('hex');
      if (index) phoneWanted.set(index, (phoneWanted.get(index) ?? new Set()).add(phone.e164));
    }
    const email = row.data.email;
    const index = row.sealed.row.email_index?.toString('hex');
    if (email && index) emailWanted.set(index, (emailWanted.get(index) ?? new Set()).add(email));
  }
  const phoneCandidates =
    phoneWanted.size === 0
      ? []
      : (
          await sql<{ contact_id: string; position: number; number_ciphertext: Buffer; number_index: Buffer; import_id: string | null; import_row: number | null }>`
            SELECT p.contact_id, p.position, p.number_ciphertext, p.number_index, c.import_id, c.import_row
              FROM contact_phones p JOIN contacts c ON c.tenant_id = p.tenant_id AND c.id = p.contact_id
             WHERE p.number_index = ANY(${[...phoneWanted.keys()].map((hex) => Buffer.from(hex, 'hex'))}::bytea[])`.execute(trx)
        ).rows;
  const emailCandidates =
    emailWanted.size === 0
      ? []
      : (
          await sql<{ id: string; email_ciphertext: Buffer; email_index: Buffer; import_id: string | null; import_row: number | null }>`
            SELECT id, email_ciphertext, email_index, import_id, import_row FROM contacts
             WHERE email_index = ANY(${[...emailWanted.keys()].map((hex) => Buffer.from(hex, 'hex'))}::bytea[])`.execute(trx)
        ).rows;
  const subjects = [...new Set([...phoneCandidates.map((candidate) => candidate.contact_id), ...emailCandidates.map((candidate) => candidate.id)])];
  if (subjects.length === 0) return found;
  const keys = await crypto.keyring.subjectKeys(trx, subjects);
  for (const candidate of phoneCandidates) {
    const key = keys.get(candidate.contact_id);
    if (!key) continue;
    const number = crypto.cipher.decryptForSubject(trx.tenantId, { table: 'contacts', recordId: candidate.contact_id, field: `phone.${candidate.position}` }, candidate.number_ciphertext, key);
    if (phoneWanted.get(candidate.number_index.toString('hex'))?.has(number)) found.set(`p:${number}`, { id: candidate.contact_id, importId: candidate.import_id, importRow: candidate.import_row });
  }
  for (const candidate of emailCandidates) {
    const key = keys.get(candidate.id);
    if (!key) continue;
    const email = crypto.cipher.decryptForSubject(trx.tenantId, { table: 'contacts', recordId: candidate.id, field: 'email' }, candidate.email_ciphertext, key);
    if (emailWanted.get(candidate.email_index.toString('hex'))?.has(email)) found.set(`e:${email}`, { id: candidate.id, importId: candidate.import_id, importRow: candidate.import_row });
  }
  return found;
}

/** The background worker of `ringvakt serve`: finds tenants with pending imports, runs them one by one. */
export function importWorkerTick(systemDb: SystemDb, crypto: ContactsCrypto, logger: Logger, stop: () => boolean): () => Promise<void> {
  const owner = `worker:${randomUUID()}`;
  return async () => {
    for (const tenantId of await systemDb.tenantsWithPendingImports()) {
      const tenantDb = systemDb.inTenant(tenantId);
      for (;;) {
        if (stop()) return;
        const importId = await claimImport(tenantDb, owner);
        if (!importId) break;
        const outcome = await runImport(tenantDb, crypto, importId, owner, { logger, stop });
        logger.info({ importId, outcome }, 'contact import run ended');
        if (outcome === 'stopped') return;
      }
    }
  };
}
