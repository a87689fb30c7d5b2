import type { NewSubjectKey } from '../../crypto/keyring.ts';
import type { TenantDb } from '../../db/tenant-db.ts';
import { ContactInputError, newContactId, normaliseContact, sealContact, type ContactData, type ContactFieldDefinition, type SealedContact } from '../contacts/contact-record.ts';
import type { ContactsCrypto } from '../contacts/contacts.service.ts';
import { cellProblem, columnOf, rowToInput } from './import-mapping.ts';
import type { Job } from './load-import-job.ts';

export type SourceRow = { rowNumber: number; record: string[] };
export type Reject = { kind: 'reject'; rowNumber: number; reason: string; column: string | null; detail: string | null };
type ValidRow = { kind: 'valid'; rowNumber: number; data: ContactData };
/** A valid row made ready to write: its contact id, its subject key (wrapped), its fields sealed. */
export type NewRow = { kind: 'new'; rowNumber: number; data: ContactData; sealed: SealedContact; subjectKey: NewSubjectKey };
export type RowOutcome = NewRow | Reject;

/**
 * Rows prepared between two turns of the event loop. The batch before this one commits meanwhile,
 * one statement after another, and each answer waits for the next turn to be taken up: at a few
 * hundred rows per turn those waits added up to a third of an import's time; at this many, a
 * turn is about a millisecond.
 */
const ROWS_PER_TURN = 20;
const nextTurn = () => new Promise((resolve) => setImmediate(resolve));

/** One row on its own, before any database work: mapping, limits, normalisation. */
function prepareRow(job: Job, definitions: ReadonlyMap<string, ContactFieldDefinition>, { rowNumber, record }: SourceRow): ValidRow | Reject {
  const input = rowToInput(record, job.plan);
  const tooLong = cellProblem(input);
  if (tooLong) return { kind: 'reject', rowNumber, reason: 'value_too_long', column: columnOf(record, job.plan, tooLong.where), detail: `${tooLong.where}: ${tooLong.reason}` };
  if (!input.phones?.length && !input.email && !input.externalId) return { kind: 'reject', rowNumber, reason: 'no_identifier', column: null, detail: 'no phone number, e-mail or external id' };
  try {
    return { kind: 'valid', rowNumber, data: normaliseContact(input, { defaultRegion: job.defaultRegion, definitions }) };
  } catch (error) {
    if (error instanceof ContactInputError) return { kind: 'reject', rowNumber, reason: error.code, column: columnOf(record, job.plan, error.where), detail: `${error.where}: ${error.reason}` };
    throw error;
  }
}

/**
 * A batch made ready to write, while the batch before it commits: every valid row gets its id and
 * a new subject key, and its values are sealed and indexed. Rows that dedupe or suppression drop
 * later are discarded with their keys unstored (their wraps still count against the key budget).
 * Yields to the event loop every ROWS_PER_TURN rows, so the commit in flight keeps moving.
 */
export async function prepareBatch(
  tenantDb: TenantDb,
  crypto: ContactsCrypto,
  job: Job,
  definitions: ReadonlyMap<string, ContactFieldDefinition>,
  rows: readonly SourceRow[],
): Promise<RowOutcome[]> {
  const parsed: (ValidRow | Reject)[] = [];
  for (let position = 0; position < rows.length; position += 1) {
    parsed.push(prepareRow(job, definitions, rows[position] as SourceRow));
    if (position % ROWS_PER_TURN === ROWS_PER_TURN - 1) await nextTurn();
  }
  const valid = parsed.filter((row): row is ValidRow => row.kind === 'valid');
  const ready = new Map<number, NewRow>();
  await tenantDb.transaction(async (trx) => {
    const keys = await crypto.keyring.wrapNewSubjectKeys(trx, valid.map(() => newContactId()));
    for (let position = 0; position < valid.length; position += 1) {
      const row = valid[position] as ValidRow;
      const subjectKey = keys[position];
      if (!subjectKey) throw new Error('a subject key is missing');
      ready.set(row.rowNumber, { kind: 'new', rowNumber: row.rowNumber, data: row.data, subjectKey, sealed: await sealContact(crypto.cipher, trx, subjectKey.subjectId, subjectKey.key, row.data) });
      if (position % ROWS_PER_TURN === ROWS_PER_TURN - 1) await nextTurn();
    }
  });
  return parsed.map((row) => (row.kind === 'valid' ? (ready.get(row.rowNumber) as NewRow) : row));
}
