import { binaryArray, BinaryArrayWriter } from '../../db/binary-array.ts';
import { sql, type CompiledQuery } from '../../db/kysely.ts';
import { sendTogether, type TenantDb, type TenantTransaction } from '../../db/tenant-db.ts';
import { openEmail, openNumbers } from '../contacts/open-contact.ts';
import type { ContactsCrypto } from '../contacts/contacts.service.ts';
import { phoneSuppressionLookup } from '../suppression/suppression.service.ts';
import { indexKey, type FilterEpochs, type IndexFilter, type IndexKind } from './index-filter.ts';
import type { Job } from './load-import-job.ts';
import { INDEX_BYTES, type PreparedBatch } from './prepare-batch.ts';

/**
 * What an import batch must know before it writes: which of its rows' people exist already
 * (dedupe by external id, phone and e-mail blind indexes, the candidates decrypted and compared),
 * and which of its numbers are suppressed.
 *
 * Looked up either
 *   - **ahead** (`lookUpAhead`), on the read handle while the batch before it is still writing:
 *     the tenant's import epoch is read first, and the batch's commit is refused if another
 *     import committed since (migration 0026); the batch just before, of the same import, which
 *     these lookups may not see, is compared in the worker (commit-batch.ts);
 *   - or **under the tenant's import lock** (`lookupQueries` sent after the lock, in the batch's
 *     own transaction), when the lookups made ahead went stale.
 */

/**
 * Values by identity, one map per kind of identity — external id, number (E.164), e-mail — as
 * dedupe compares them: what exists, what a batch has seen, what the batch before it created.
 */
export type Identities<V> = { external: Map<string, V>; phone: Map<string, V>; email: Map<string, V> };

export const noIdentities = <V>(): Identities<V> => ({ external: new Map(), phone: new Map(), email: new Map() });

/** indexKey of an index read from the database; -1 (no key wanted) for one of another length. */
const storedIndexKey = (index: Buffer): number => (index.length === INDEX_BYTES ? indexKey(index, 0) : -1);

export type ExistingContact = { id: string; importId: string | null; importRow: number | null };

export type BatchLookups = {
  /** The tenant's import epoch, read before the lookups made ahead; null when made under the lock. */
  epoch: number | null;
  /** The epochs of the index filter whose clear bits spared lookups (index-filter.ts); null when none did. */
  filterEpochs: FilterEpochs | null;
  /** External id, number, e-mail → the existing contact holding it. */
  existing: Identities<ExistingContact>;
  /** Number (E.164) → the ids of the suppressions in force for it. */
  suppressed: Map<string, string[]>;
};

type PhoneCandidate = {
  contact_id: string;
  position: number;
  number_ciphertext: Buffer | null;
  record_ciphertext: Buffer | null;
  number_index: Buffer;
  import_id: string | null;
  import_row: number | null;
};
type EmailCandidate = { id: string; email_ciphertext: Buffer | null; record_ciphertext: Buffer | null; email_index: Buffer; import_id: string | null; import_row: number | null };

/**
 * The import's index filter: every external id, number and e-mail address of the batch is added
 * to it as the import's own; with `skip` (lookups made ahead, which the batch's opening checks against the
 * filter's epochs), one it does not hold is not looked up.
 */
export type ImportFilter = { filter: IndexFilter; skip: boolean };

/**
 * The batch's lookups as queries to be sent together (dedupe by external id, phone, e-mail; the
 * suppressions of every number, of which only those of rows created or linked count later), and
 * what turns their rows into the answer. Each number's blind index is the one sealed with its row.
 * With an index filter that `skip`s, an external id, number, e-mail address or suppression index
 * it does not hold is not looked up.
 */
export async function lookupQueries(
  trx: TenantTransaction,
  crypto: ContactsCrypto,
  job: Job,
  batch: PreparedBatch,
  importFilter: ImportFilter | undefined,
): Promise<{ queries: CompiledQuery[]; answer: (rows: readonly unknown[][]) => Promise<Omit<BatchLookups, 'epoch'>> }> {
  // Read once: every value is tested against the filter as it stands at these epochs, before this batch's own are added.
  const filter = importFilter?.filter;
  const epochs = importFilter?.skip && filter?.inUse ? filter.epochs : null;
  const numbers: string[] = [];
  const phoneIndexes = new Map<string, Buffer>();
  for (let phone = 0; phone < batch.phoneNumbers.length; phone += 1) {
    if (filter && epochs && !filter.mayHoldSuppression(indexKey(batch.phoneIndexes, phone * INDEX_BYTES), epochs)) continue;
    const number = batch.phoneNumbers[phone] as string;
    numbers.push(number);
    phoneIndexes.set(number, Buffer.from(batch.phoneIndexes.buffer, batch.phoneIndexes.byteOffset + phone * INDEX_BYTES, INDEX_BYTES));
  }
  const dedupe = existingContactsLookup(trx, batch, filter, epochs);
  const suppression = await phoneSuppressionLookup(trx, crypto, numbers, job.campaignId, phoneIndexes);
  return {
    queries: [...dedupe.queries, suppression.query],
    answer: async ([byExternal = [], phoneCandidates = [], emailCandidates = [], suppressionRows = []]) => ({
      filterEpochs: epochs,
      existing: await dedupe.found(crypto, byExternal, phoneCandidates, emailCandidates),
      suppressed: await suppression.matches(suppressionRows),
    }),
  };
}

/**
 * The lookups made ahead, outside the import lock, on the read handle: the epoch first, then the
 * lookups, each in a snapshot of its own taken after the epoch's (so anything committed after the
 * epoch was read shows as a newer epoch when the batch commits).
 */
export async function lookUpAhead(tenantDb: TenantDb, crypto: ContactsCrypto, job: Job, batch: PreparedBatch, filter?: IndexFilter): Promise<BatchLookups> {
  return tenantDb.read(async (trx) => {
    const lookups = await lookupQueries(trx, crypto, job, batch, filter && { filter, skip: true });
    const [epochRows = [], ...rows] = await sendTogether(trx, [trx.selectFrom('contact_import_epochs').select('epoch').where('tenant_id', '=', trx.tenantId).compile(), ...lookups.queries]);
    return { epoch: Number((epochRows[0] as { epoch: string } | undefined)?.epoch ?? 0), ...(await lookups.answer(rows)) };
  });
}

/**
 * Existing contacts that share a key with any of these: one query per kind of key for the batch
 * (sent together by the caller), then the blind-index candidates decrypted and compared. Every
 * external id, number and e-mail address is added to the filter as the import's own; with
 * `skipAt` (the filter's epochs), one it did not hold is not looked up.
 */
function existingContactsLookup(trx: TenantTransaction, batch: PreparedBatch, filter: IndexFilter | undefined, skipAt: FilterEpochs | null) {
  const externalIds = new Set<string>();
  for (const id of batch.externalIds) if (id !== null && !(filter && skipAt && !filter.mayHoldExternalId(id, skipAt))) externalIds.add(id);
  // The blind indexes were computed when the rows were sealed.
  // Blind index (as a number: indexKey) → the values wanted under it: almost always one. Each
  // index is also written once into its query's array parameter.
  const phoneWanted = new Map<number, string[]>();
  const emailWanted = new Map<number, string[]>();
  const phoneParameter = new BinaryArrayWriter('bytea', batch.phoneNumbers.length * (4 + INDEX_BYTES));
  const emailParameter = new BinaryArrayWriter('bytea', batch.count * (4 + INDEX_BYTES));
  const want = (kind: Exclude<IndexKind, 'suppression'>, wanted: Map<number, string[]>, parameter: BinaryArrayWriter<'bytea'>, indexes: Uint8Array, at: number, value: string) => {
    const key = indexKey(indexes, at * INDEX_BYTES);
    if (filter && skipAt && !filter.mayHoldContact(kind, key, value, skipAt)) return;
    const values = wanted.get(key);
    if (values) {
      values.push(value);
      return;
    }
    wanted.set(key, [value]);
    parameter.push(Buffer.from(indexes.buffer, indexes.byteOffset + at * INDEX_BYTES, INDEX_BYTES));
  };
  for (let phone = 0; phone < batch.phoneNumbers.length; phone += 1) want('phone', phoneWanted, phoneParameter, batch.phoneIndexes, phone, batch.phoneNumbers[phone] as string);
  for (let row = 0; row < batch.count; row += 1) {
    const email = batch.emails[row];
    if (email) want('email', emailWanted, emailParameter, batch.emailIndexes, row, email);
  }
  // Added once every value was tested: a value twice in the batch is compared within it (commit-batch.ts), not looked up.
  if (filter) {
    for (const number of batch.phoneNumbers) filter.addOwn(number);
    for (const email of batch.emails) if (email) filter.addOwn(email);
    for (const id of batch.externalIds) if (id) filter.addOwn(id);
  }
  // Each query takes its values as one array parameter (a batch has thousands); an empty one finds nothing.
  const queries = [
    sql`SELECT id, external_id, import_id, import_row FROM contacts WHERE external_id = ANY(${binaryArray('text', [...externalIds])}::text[])`.compile(trx),
    sql`SELECT p.contact_id, p.position, p.number_ciphertext, c.record_ciphertext, p.number_index, c.import_id, c.import_row
          FROM contact_phones p JOIN contacts c ON c.tenant_id = p.tenant_id AND c.id = p.contact_id
         WHERE p.number_index = ANY(${phoneParameter.finish()}::bytea[])`.compile(trx),
    sql`SELECT id, email_ciphertext, record_ciphertext, email_index, import_id, import_row FROM contacts
         WHERE email_index = ANY(${emailParameter.finish()}::bytea[])`.compile(trx),
  ];
  const found = async (crypto: ContactsCrypto, externalRows: readonly unknown[], phoneRows: readonly unknown[], emailRows: readonly unknown[]) => {
    const existing = noIdentities<ExistingContact>();
    for (const row of externalRows as { id: string; external_id: string | null; import_id: string | null; import_row: number | null }[]) {
      if (row.external_id) existing.external.set(row.external_id, { id: row.id, importId: row.import_id, importRow: row.import_row });
    }
    const phoneCandidates = phoneRows as PhoneCandidate[];
    const emailCandidates = emailRows as EmailCandidate[];
    const subjects = [...new Set([...phoneCandidates.map((candidate) => candidate.contact_id), ...emailCandidates.map((candidate) => candidate.id)])];
    if (subjects.length === 0) return existing;
    const keys = await crypto.keyring.subjectKeys(trx, subjects);
    for (const candidate of phoneCandidates) {
      const key = keys.get(candidate.contact_id);
      if (!key) continue;
      const number = (openNumbers(crypto.cipher, trx.tenantId, candidate.contact_id, key, candidate.record_ciphertext, [candidate])[0] as { e164: string }).e164;
      if (phoneWanted.get(storedIndexKey(candidate.number_index))?.includes(number)) existing.phone.set(number, { id: candidate.contact_id, importId: candidate.import_id, importRow: candidate.import_row });
    }
    for (const candidate of emailCandidates) {
      const key = keys.get(candidate.id);
      if (!key) continue;
      const email = openEmail(crypto.cipher, trx.tenantId, candidate.id, key, candidate.record_ciphertext, candidate.email_ciphertext);
      if (email !== null && emailWanted.get(storedIndexKey(candidate.email_index))?.includes(email)) existing.email.set(email, { id: candidate.id, importId: candidate.import_id, importRow: candidate.import_row });
    }
    return existing;
  };
  return { queries, found };
}
