// Opening a contact's sealed values (contact-record.ts seals them): its record (migration 0028),
// or — for a contact written before it — one ciphertext per value.
import type { FieldCipher } from '../../crypto/field-cipher.ts';
import { FieldCipherError } from '../../crypto/field-cipher.ts';
import type { ContactStatus, PhoneKind, TimeZoneSource } from '../../db/schema.ts';
import { contactFieldAt as at, RECORD_FIELD, type Address, type ContactData, type CustomValue, type RecordV1 } from './contact-record.ts';

/** The personal values of a contact, as its record or its per-value columns hold them. */
export type OpenedRecord = Pick<ContactData, 'name' | 'email' | 'address' | 'birthDate' | 'notes' | 'personalFields'> & { phones: string[] };

type Opener = Pick<FieldCipher, 'decryptForSubject'>;

/** Opens a contact's record (authenticated: a record of another contact, field or tenant does not open). */
export function openRecord(cipher: Opener, tenantId: string, contactId: string, ciphertext: Buffer, subjectKey: Buffer): OpenedRecord {
  const record = parseOpened<Partial<RecordV1> | null>(cipher.decryptForSubject(tenantId, at(contactId, RECORD_FIELD), ciphertext, subjectKey));
  if (record === null || typeof record !== 'object' || record.v !== 1) throw new FieldCipherError('Unsupported contact record version');
  return {
    name: record.name ?? null,
    phones: record.phones ?? [],
    email: record.email ?? null,
    address: record.address ?? null,
    birthDate: record.birthDate ?? null,
    notes: record.notes ?? null,
    personalFields: record.personal ?? {},
  };
}

/**
 * JSON of an opened value. A value that does not parse (a writer's bug: it authenticated) is a
 * FieldCipherError that quotes nothing: JSON.parse's own message quotes the text, personal data.
 */
function parseOpened<T>(text: string): T {
  try {
    return JSON.parse(text) as T;
  } catch {
    throw new FieldCipherError('An opened contact value is not well-formed');
  }
}

/**
 * A contact's numbers by position: from its record, or — for a contact written before the record
 * (migration 0028) — from each phone row's own ciphertext. The record is opened once for all of them.
 */
export function openNumbers(
  cipher: Opener,
  tenantId: string,
  contactId: string,
  subjectKey: Buffer,
  recordCiphertext: Buffer | null,
  phones: readonly { position: number; number_ciphertext: Buffer | null }[],
): { position: number; e164: string }[] {
  let record: OpenedRecord | undefined;
  return phones.map((phone) => {
    if (phone.number_ciphertext !== null) return { position: phone.position, e164: cipher.decryptForSubject(tenantId, at(contactId, `phone.${phone.position}`), phone.number_ciphertext, subjectKey) };
    if (recordCiphertext === null) throw new FieldCipherError('The number is in neither its phone row nor its contact record');
    record ??= openRecord(cipher, tenantId, contactId, recordCiphertext, subjectKey);
    const e164 = record.phones[phone.position];
    if (e164 === undefined) throw new FieldCipherError('The contact record holds no number at this position');
    return { position: phone.position, e164 };
  });
}

/** Phone rows (or any rows of a contact) grouped by contact, in the order given. */
export function rowsByContact<T extends { contact_id: string }>(rows: readonly T[]): Map<string, T[]> {
  const grouped = new Map<string, T[]>();
  for (const row of rows) {
    const own = grouped.get(row.contact_id);
    if (own) own.push(row);
    else grouped.set(row.contact_id, [row]);
  }
  return grouped;
}

/** A contact's e-mail, from its record or (written before it) its own column. */
export function openEmail(cipher: Opener, tenantId: string, contactId: string, subjectKey: Buffer, recordCiphertext: Buffer | null, emailCiphertext: Buffer | null): string | null {
  if (recordCiphertext !== null) return openRecord(cipher, tenantId, contactId, recordCiphertext, subjectKey).email;
  return emailCiphertext === null ? null : cipher.decryptForSubject(tenantId, at(contactId, 'email'), emailCiphertext, subjectKey);
}

export type StoredContactRow = {
  id: string;
  external_id: string | null;
  status: ContactStatus;
  /** The per-value columns: a contact written before its record existed (migration 0028); null otherwise. */
  name_ciphertext: Buffer | null;
  email_ciphertext: Buffer | null;
  address_ciphertext: Buffer | null;
  birth_date_ciphertext: Buffer | null;
  notes_ciphertext: Buffer | null;
  personal_fields_ciphertext: Buffer | null;
  record_ciphertext: Buffer | null;
  fields: Record<string, unknown>;
  time_zones: string[];
  time_zone_source: TimeZoneSource;
  created_at: Date;
  updated_at: Date;
};

export type StoredPhoneRow = { contact_id: string; position: number; kind: PhoneKind; number_ciphertext: Buffer | null };

/** The stored contact opened with its subject key (null when the contact was erased). */
export function openContact(cipher: FieldCipher, tenantId: string, row: StoredContactRow, phones: readonly StoredPhoneRow[], subjectKey: Buffer | null): ContactData {
  const plain = { externalId: row.external_id, fields: row.fields as Record<string, CustomValue>, timeZones: row.time_zones, timeZoneSource: row.time_zone_source };
  if (subjectKey === null) return { ...plain, name: null, phones: [], email: null, address: null, birthDate: null, notes: null, personalFields: {} };
  if (row.record_ciphertext !== null) {
    const record = openRecord(cipher, tenantId, row.id, row.record_ciphertext, subjectKey);
    // The record holds every number, in position order: a phone row adds its number's kind (and
    // carries its blind index), but a row gone or moved hides or moves no number.
    const kinds = new Map(phones.map((phone) => [phone.position, phone.kind]));
    const numbers = record.phones.map((e164, position) => ({ kind: kinds.get(position) ?? ('other' as const), e164 }));
    return { ...plain, name: record.name, phones: numbers, email: record.email, address: record.address, birthDate: record.birthDate, notes: record.notes, personalFields: record.personalFields };
  }
  const sorted = [...phones].sort((a, b) => a.position - b.position);
  const withNumbers = openNumbers(cipher, tenantId, row.id, subjectKey, null, sorted).map((number, index) => ({ kind: (sorted[index] as StoredPhoneRow).kind, e164: number.e164 }));
  const open = (field: string, value: Buffer | null) => (value === null ? null : cipher.decryptForSubject(tenantId, at(row.id, field), value, subjectKey));
  const address = open('address', row.address_ciphertext);
  const personal = open('personal_fields', row.personal_fields_ciphertext);
  return {
    ...plain,
    name: open('name', row.name_ciphertext),
    phones: withNumbers,
    email: open('email', row.email_ciphertext),
    address: address === null ? null : parseOpened<Address>(address),
    birthDate: open('birth_date', row.birth_date_ciphertext),
    notes: open('notes', row.notes_ciphertext),
    personalFields: personal === null ? {} : parseOpened<Record<string, CustomValue>>(personal),
  };
}
