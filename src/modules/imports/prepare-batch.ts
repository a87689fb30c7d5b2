import { newKey } from '../../crypto/aead.ts';
import { BLIND_INDEX_BYTES } from '../../crypto/field-format.ts';
import { wrapSubjectKey, type DataKey } from '../../crypto/key-wraps.ts';
import { BinaryArrayWriter, type ArrayElementType } from '../../db/binary-array.ts';
import {
  ContactInputError,
  newContactId,
  normaliseContact,
  sealContactUnder,
  type ContactData,
  type ContactFieldDefinition,
  type ContactIndexKeys,
  type SealedContact,
} from '../contacts/contact-record.ts';
import { cellProblem, columnOf, rowToInput, type ColumnPlan } from './import-mapping.ts';
import { rowsOf, type BatchRows } from './packed-rows.ts';

/**
 * Preparing a batch of an import: each row mapped, checked and normalised, and each valid one
 * given its contact id and a new subject key (wrapped under the tenant's data key), its values
 * sealed as its record and its blind indexes computed. No I/O and no keyring: the keys come in `SealingKeys`, so
 * this runs in a sealing thread (sealing-thread.ts) as well as in the import's own.
 *
 * The result is laid out for the two things that follow it, in the committing thread:
 *   - dedupe and the suppression check, which need each row's identifiers (external id, numbers,
 *     e-mail, and their blind indexes): plain arrays and flat byte arrays, cheap to pass between
 *     threads;
 *   - the writes: every column of every valid row already in PostgreSQL's binary array format
 *     (binary-array.ts), one byte array per column, moved between threads without a copy. The
 *     statements take each row or not by a mask (rows that dedupe or suppression drop), so the
 *     committing thread never touches a ciphertext.
 */

export type SourceRow = { rowNumber: number; record: string[] };
export type Reject = { kind: 'reject'; rowNumber: number; reason: string; column: string | null; detail: string | null };

/** What every batch of one import is prepared with, besides its keys. */
export type PrepareContext = { tenantId: string; plan: ColumnPlan; defaultRegion: string; definitions: ReadonlyMap<string, ContactFieldDefinition> };

/** The keys a batch is sealed with: the data key that wraps subject keys (its budget counted for the batch), the index keys. */
export type SealingKeys = { dataKey: DataKey; indexKeys: ContactIndexKeys };

/** Bytes of a contact's blind index (phone and e-mail). */
export const INDEX_BYTES = BLIND_INDEX_BYTES.contact;

export type PreparedBatch = {
  /** Rows refused by mapping, limits or normalisation. */
  rejects: Reject[];
  /** The valid rows, in file order; row i of every array below is the i-th of them. */
  count: number;
  rowNumbers: Int32Array;
  externalIds: (string | null)[];
  emails: (string | null)[];
  /** Row i's e-mail blind index at i × INDEX_BYTES (zeros when it has no e-mail). */
  emailIndexes: Uint8Array;
  /** Row i's numbers (E.164) are phoneNumbers[phoneStarts[i]] up to phoneStarts[i + 1]. */
  phoneStarts: Int32Array;
  phoneNumbers: string[];
  /** Number j's blind index at j × INDEX_BYTES. */
  phoneIndexes: Uint8Array;
  /** The data key version the subject keys are wrapped under. */
  wrapVersion: number;
  /**
   * Array parameters (binary-array.ts) of every valid row, in order: contacts (id, external_id,
   * record, email_index, fields, time_zones, time_zone_source, import_row), contact_phones
   * (contact_id, position, kind, number_index; one element per number), and the wrapped subject
   * keys (one per row, under the contact's id).
   */
  contactColumns: Uint8Array[];
  phoneColumns: Uint8Array[];
  wrappedKeys: Uint8Array;
};

/** One row on its own: mapping, limits, normalisation. */
function prepareRow(context: PrepareContext, { rowNumber, record }: SourceRow): ContactData | Reject {
  const input = rowToInput(record, context.plan);
  const tooLong = cellProblem(input);
  if (tooLong) return { kind: 'reject', rowNumber, reason: 'value_too_long', column: columnOf(record, context.plan, tooLong.where), detail: `${tooLong.where}: ${tooLong.reason}` };
  if (!input.phones?.length && !input.email && !input.externalId) return { kind: 'reject', rowNumber, reason: 'no_identifier', column: null, detail: 'no phone number, e-mail or external id' };
  try {
    return normaliseContact(input, { defaultRegion: context.defaultRegion, definitions: context.definitions });
  } catch (error) {
    if (error instanceof ContactInputError) return { kind: 'reject', rowNumber, reason: error.code, column: columnOf(record, context.plan, error.where), detail: `${error.where}: ${error.reason}` };
    throw error;
  }
}

export function prepareRows(context: PrepareContext, keys: SealingKeys, batchRows: BatchRows | readonly SourceRow[]): PreparedBatch {
  const rows = 'next' in batchRows ? batchRows : rowsOf(batchRows);
  const rejects: Reject[] = [];
  // Each row is checked, normalised, sealed and written into the columns in one go, so that its
  // objects (its values, their parsed numbers) die young: only the columns live for the whole
  // batch. (Checked first for all rows, thousands of rows' values outlived the young generation
  // and were copied by every collection meanwhile.) Sized for every row being valid; a column
  // grows as needed, and the arrays are cut to the valid rows at the end.
  const most = rows.count;
  const column = <T extends ArrayElementType>(type: T, bytesPerRow: number) => new BinaryArrayWriter(type, most * bytesPerRow);
  const contacts = {
    id: column('uuid', 20),
    externalId: column('text', 16),
    record: column('bytea', 120),
    emailIndex: column('bytea', 8),
    fields: column('text', 8),
    timeZones: column('text', 20),
    timeZoneSource: column('text', 12),
    rowNumber: column('int4', 8),
  };
  const phones = {
    contactId: column('uuid', 20),
    position: column('int2', 6),
    kind: column('text', 10),
    numberIndex: column('bytea', 8),
  };
  const wrappedKeys = column('bytea', 68);
  const rowNumbers = new Int32Array(most);
  const phoneStarts = new Int32Array(most + 1);
  const phoneNumbers: string[] = [];
  const phoneIndexes: number[] = [];
  const externalIds: (string | null)[] = [];
  const emails: (string | null)[] = [];
  const emailIndexes = new Uint8Array(most * INDEX_BYTES);
  let count = 0;
  for (let at = 0; at < most; at += 1) {
    const source = rows.next();
    const data = prepareRow(context, source);
    if ('kind' in data) {
      rejects.push(data);
      continue;
    }
    const position = count;
    count += 1;
    rowNumbers[position] = source.rowNumber;
    const id = newContactId();
    const subjectKey = newKey();
    wrappedKeys.push(wrapSubjectKey(context.tenantId, id, keys.dataKey, subjectKey));
    const { row, phones: sealedPhones } = sealContactUnder(context.tenantId, id, subjectKey, data, keys.indexKeys);
    // The key exists from here on only wrapped: this copy is wiped at once.
    subjectKey.fill(0);
    contacts.id.push(row.id);
    contacts.externalId.push(row.external_id);
    contacts.record.push(row.record_ciphertext);
    contacts.emailIndex.push(row.email_index);
    contacts.fields.push(row.fields);
    contacts.timeZones.push(row.time_zones.join(' '));
    contacts.timeZoneSource.push(row.time_zone_source);
    contacts.rowNumber.push(source.rowNumber);
    externalIds.push(data.externalId);
    emails.push(data.email);
    row.email_index?.copy(emailIndexes, position * INDEX_BYTES);
    phoneStarts[position] = phoneNumbers.length;
    for (let index = 0; index < sealedPhones.length; index += 1) {
      const phone = sealedPhones[index] as SealedContact['phones'][number];
      phones.contactId.push(id);
      phones.position.push(phone.position);
      phones.kind.push(phone.kind);
      phones.numberIndex.push(phone.number_index);
      phoneNumbers.push((data.phones[index] as ContactData['phones'][number]).e164);
      for (const byte of phone.number_index) phoneIndexes.push(byte);
    }
  }
  phoneStarts[count] = phoneNumbers.length;
  return {
    rejects,
    count,
    rowNumbers: rowNumbers.slice(0, count),
    externalIds,
    emails,
    emailIndexes: emailIndexes.slice(0, count * INDEX_BYTES),
    phoneStarts: phoneStarts.slice(0, count + 1),
    phoneNumbers,
    phoneIndexes: Uint8Array.from(phoneIndexes),
    wrapVersion: keys.dataKey.version,
    contactColumns: [
      contacts.id.finish(),
      contacts.externalId.finish(),
      contacts.record.finish(),
      contacts.emailIndex.finish(),
      contacts.fields.finish(),
      contacts.timeZones.finish(),
      contacts.timeZoneSource.finish(),
      contacts.rowNumber.finish(),
    ],
    phoneColumns: [phones.contactId.finish(), phones.position.finish(), phones.kind.finish(), phones.numberIndex.finish()],
    wrappedKeys: wrappedKeys.finish(),
  };
}
