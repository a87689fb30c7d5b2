import { randomBytes, type KeyObject } from 'node:crypto';
import type { FieldCipher, FieldLocation } from '../../crypto/field-cipher.ts';
import { BLIND_INDEX_BYTES, blindIndexUnder, encryptForSubjectKey } from '../../crypto/field-format.ts';
import type { TenantTransaction } from '../../db/tenant-db.ts';
import type { PhoneKind, TimeZoneSource } from '../../db/schema.ts';
import { v7 as uuidv7 } from 'uuid';
import { isValidTimeZone, normaliseEmail, normalisePhone, timeZonesOfCountry, timeZonesOfNumber } from './phone.ts';

/**
 * A contact's personal data as the application holds it in memory, and its sealed form in the
 * tables: every personal value encrypted under the contact's own data-subject key, phones and
 * e-mail also as blind indexes. Sealing and opening are synchronous once the subject key is at hand,
 * so a thousand-row import batch costs one key query, not thousands.
 */
export type Address = {
  line1?: string | undefined;
  line2?: string | undefined;
  postalCode?: string | undefined;
  city?: string | undefined;
  region?: string | undefined;
  /** ISO 3166 alpha-2. */
  country?: string | undefined;
};

export type CustomValue = string | number | boolean;

export type ContactData = {
  externalId: string | null;
  name: string | null;
  phones: { kind: PhoneKind; e164: string }[];
  email: string | null;
  address: Address | null;
  birthDate: string | null;
  notes: string | null;
  /** Custom fields flagged personal: encrypted. */
  personalFields: Record<string, CustomValue>;
  /** The other custom fields: plain JSON. */
  fields: Record<string, CustomValue>;
  timeZones: string[];
  timeZoneSource: TimeZoneSource;
};

export type ContactFieldDefinition = { key: string; label: string; type: 'text' | 'number' | 'date' | 'boolean'; personal: boolean };

/** Raw input as an API body or a CSV row gives it, before normalisation. */
export type ContactInput = {
  externalId?: string | null | undefined;
  name?: string | null | undefined;
  phones?: { kind: PhoneKind; number: string }[] | undefined;
  email?: string | null | undefined;
  address?: Address | null | undefined;
  birthDate?: string | null | undefined;
  notes?: string | null | undefined;
  fields?: Record<string, CustomValue | null> | undefined;
  timeZone?: string | null | undefined;
};

/** A value a row or a request got wrong: the code, and where (never the value). */
export class ContactInputError extends Error {
  constructor(
    readonly code: 'phone_invalid' | 'email_invalid' | 'field_invalid' | 'validation_failed',
    readonly where: string,
    readonly reason: string,
  ) {
    super(`${where}: ${reason}`);
    this.name = 'ContactInputError';
  }
}

const DATE = /^\d{4}-\d{2}-\d{2}$/;

export function isCalendarDate(text: string): boolean {
  if (!DATE.test(text)) return false;
  const date = new Date(`${text}T00:00:00Z`);
  return !Number.isNaN(date.getTime()) && date.toISOString().slice(0, 10) === text;
}

function checkCustomValue(definition: ContactFieldDefinition, value: CustomValue): CustomValue {
  const bad = (reason: string) => new ContactInputError('field_invalid', `fields.${definition.key}`, reason);
  switch (definition.type) {
    case 'text':
      if (typeof value !== 'string' || value.length > 1000) throw bad('must be text of at most 1,000 characters');
      return value;
    case 'number': {
      const number = typeof value === 'string' && value.trim() !== '' ? Number(value) : value;
      if (typeof number !== 'number' || !Number.isFinite(number)) throw bad('must be a number');
      return number;
    }
    case 'date':
      if (typeof value !== 'string' || !isCalendarDate(value)) throw bad('must be a date, YYYY-MM-DD');
      return value;
    case 'boolean': {
      if (typeof value === 'boolean') return value;
      if (value === 'true' || value === 'yes' || value === '1') return true;
      if (value === 'false' || value === 'no' || value === '0') return false;
      throw bad('must be true or false');
    }
  }
}

/**
 * Normalises input over what exists (`base`, for an update): numbers to E.164 with the list's or
 * tenant's default region, e-mail lower-cased, custom fields checked against their definitions,
 * and the callee's time zones derived — override, then a single-zone address country, then the
 * number, then the address country, then the default region.
 */
export function normaliseContact(
  input: ContactInput,
  options: { defaultRegion: string; definitions: ReadonlyMap<string, ContactFieldDefinition>; base?: ContactData; timeZoneOverride?: boolean },
): ContactData {
  const base = options.base;
  const phones =
    input.phones === undefined
      ? (base?.phones ?? [])
      : input.phones.map((phone, position) => {
          const normalised = normalisePhone(phone.number, options.defaultRegion);
          if (typeof normalised === 'string') {
            throw new ContactInputError('phone_invalid', `phones[${position}]`, normalised === 'phone_too_long' ? 'too long' : 'not a valid number for its country');
          }
          return { kind: phone.kind, e164: normalised.e164 };
        });
  // At most ten numbers: compared pairwise, without a Set for each contact of an import.
  for (let position = 1; position < phones.length; position += 1) {
    const e164 = phones[position]?.e164;
    for (let earlier = 0; earlier < position; earlier += 1) {
      if (phones[earlier]?.e164 === e164) throw new ContactInputError('phone_invalid', `phones[${position}]`, 'the same number twice');
    }
  }
  let email = base?.email ?? null;
  if (input.email !== undefined) {
    email = input.email === null || input.email.trim() === '' ? null : (normaliseEmail(input.email) ?? null);
    if (input.email !== null && input.email.trim() !== '' && email === null) throw new ContactInputError('email_invalid', 'email', 'not an e-mail address');
  }
  const birthDate = input.birthDate === undefined ? (base?.birthDate ?? null) : input.birthDate;
  if (birthDate !== null && !isCalendarDate(birthDate)) throw new ContactInputError('validation_failed', 'birthDate', 'must be a date, YYYY-MM-DD');
  const address = input.address === undefined ? (base?.address ?? null) : input.address;
  if (address?.country !== undefined && !/^[A-Z]{2}$/.test(address.country)) {
    throw new ContactInputError('validation_failed', 'address.country', 'must be an ISO 3166 alpha-2 code');
  }

  let personalFields: Record<string, CustomValue> = { ...base?.personalFields };
  let fields: Record<string, CustomValue> = { ...base?.fields };
  if (input.fields) {
    const personal = new Map<string, CustomValue>(Object.entries(personalFields));
    const plain = new Map<string, CustomValue>(Object.entries(fields));
    for (const [key, value] of Object.entries(input.fields)) {
      const definition = options.definitions.get(key);
      if (!definition) throw new ContactInputError('field_invalid', `fields.${key}`, 'no such custom field');
      const target = definition.personal ? personal : plain;
      if (value === null || value === '') target.delete(key);
      else target.set(key, checkCustomValue(definition, value));
    }
    personalFields = Object.fromEntries(personal);
    fields = Object.fromEntries(plain);
  }

  let timeZones = base?.timeZones ?? [];
  let timeZoneSource: TimeZoneSource = base?.timeZoneSource ?? 'unknown';
  if (input.timeZone !== undefined && input.timeZone !== null) {
    if (!isValidTimeZone(input.timeZone)) throw new ContactInputError('validation_failed', 'timeZone', 'not an IANA time zone');
    timeZones = [input.timeZone];
    timeZoneSource = 'override';
  } else if (timeZoneSource !== 'override' || input.timeZone === null) {
    ({ zones: timeZones, source: timeZoneSource } = deriveTimeZones(phones, address, options.defaultRegion));
  }

  return {
    externalId: input.externalId === undefined ? (base?.externalId ?? null) : input.externalId,
    name: input.name === undefined ? (base?.name ?? null) : input.name,
    phones,
    email,
    address,
    birthDate,
    notes: input.notes === undefined ? (base?.notes ?? null) : input.notes,
    personalFields,
    fields,
    timeZones,
    timeZoneSource,
  };
}

export function deriveTimeZones(
  phones: readonly { e164: string }[],
  address: Address | null,
  defaultRegion: string,
): { zones: string[]; source: TimeZoneSource } {
  const addressZones = address?.country ? timeZonesOfCountry(address.country) : [];
  if (addressZones.length === 1) return { zones: addressZones, source: 'address' };
  const first = phones[0];
  const numberZones = first ? timeZonesOfNumber(first.e164) : [];
  if (numberZones.length > 0) return { zones: numberZones.slice(0, 64), source: 'number' };
  if (addressZones.length > 0) return { zones: addressZones.slice(0, 64), source: 'address' };
  const regionZones = timeZonesOfCountry(defaultRegion);
  if (regionZones.length > 0) return { zones: regionZones.slice(0, 64), source: 'region' };
  return { zones: [], source: 'unknown' };
}

/**
 * A new contact's id: a time-ordered UUID (version 7, RFC 9562). Every index keyed by contact id
 * (contacts, subject keys, phones, list members) then grows at its right edge instead of taking
 * each new id at a random page: at a million contacts an import writes a few hot pages, not the
 * whole index, and a checkpoint copies far fewer whole pages into the WAL. The id tells the
 * millisecond the contact was made (also to readers of the audit ledger, after an erasure too);
 * the rest, 74 bits, is drawn afresh for every id — the library's per-millisecond counter, which
 * would make ids of one batch consecutive, is not used. No access rests on an id being
 * unguessable (every read is authorised and tenant-scoped), but none can be derived from another.
 */
export const newContactId = (): string => {
  // Drawn from a pool of CSPRNG output, 4 KiB at a time: one call into OpenSSL per 256 ids, where
  // the library's own pool makes one per 16 (the call, not the bytes, is what costs). Each
  // 16-byte slice is used once.
  if (idOffset + 16 > ID_POOL_BYTES) {
    idPool = randomBytes(ID_POOL_BYTES);
    idOffset = 0;
  }
  const random = idPool.subarray(idOffset, idOffset + 16);
  idOffset += 16;
  return uuidv7({ msecs: Date.now(), random });
};
const ID_POOL_BYTES = 4096;
let idPool = randomBytes(ID_POOL_BYTES);
let idOffset = 0;

/** Where a contact field sits: the associated data its ciphertext is bound to. */
export const contactFieldAt = (recordId: string, field: string): FieldLocation => ({ table: 'contacts', recordId, field });
const at = contactFieldAt;

export type SealedContact = {
  row: {
    id: string;
    external_id: string | null;
    record_ciphertext: Buffer;
    email_index: Buffer | null;
    fields: string;
    time_zones: string[];
    time_zone_source: TimeZoneSource;
  };
  phones: { position: number; kind: PhoneKind; number_index: Buffer }[];
};

/** Blind indexes of a contact's values: tenant-keyed, the same in contacts and suppressions. */
export const indexNames = { phone: 'contact-phone', email: 'contact-email' } as const;

export const phoneIndex = (cipher: FieldCipher, trx: TenantTransaction, e164: string) => cipher.blindIndex(trx, indexNames.phone, e164, BLIND_INDEX_BYTES.contact);
export const emailIndex = (cipher: FieldCipher, trx: TenantTransaction, email: string) => cipher.blindIndex(trx, indexNames.email, email, BLIND_INDEX_BYTES.contact);

/** The keys of a contact's two blind indexes (FieldCipher.blindIndexKey). */
export type ContactIndexKeys = { phone: KeyObject; email: KeyObject };

export async function contactIndexKeys(cipher: FieldCipher, trx: TenantTransaction): Promise<ContactIndexKeys> {
  return { phone: await cipher.blindIndexKey(trx, indexNames.phone), email: await cipher.blindIndexKey(trx, indexNames.email) };
}

export async function sealContact(cipher: FieldCipher, trx: TenantTransaction, id: string, subjectKey: Buffer, data: ContactData): Promise<SealedContact> {
  return sealContactUnder(trx.tenantId, id, subjectKey, data, await contactIndexKeys(cipher, trx));
}

/**
 * sealContact with the index keys at hand: no I/O and no keyring, so an import's sealing thread
 * (src/modules/imports/sealing-thread.ts) seals exactly as the API does.
 *
 * Every personal value goes into one ciphertext, the contact's record (migration 0028): one seal
 * per person, where one per value made a cipher object and its buffers for each — a quarter of an
 * import's sealing. The numbers and the e-mail are also blind-indexed, each on its own.
 */
export function sealContactUnder(tenantId: string, id: string, subjectKey: Buffer, data: ContactData, indexKeys: ContactIndexKeys): SealedContact {
  const phones = [];
  for (let position = 0; position < data.phones.length; position += 1) {
    const phone = data.phones[position] as ContactData['phones'][number];
    phones.push({ position, kind: phone.kind, number_index: blindIndexUnder(indexKeys.phone, phone.e164, BLIND_INDEX_BYTES.contact) });
  }
  return {
    row: {
      id,
      external_id: data.externalId,
      record_ciphertext: encryptForSubjectKey(tenantId, at(id, RECORD_FIELD), encodeRecord(data), subjectKey),
      email_index: data.email === null ? null : blindIndexUnder(indexKeys.email, data.email, BLIND_INDEX_BYTES.contact),
      fields: JSON.stringify(data.fields),
      time_zones: data.timeZones,
      time_zone_source: data.timeZoneSource,
    },
    phones,
  };
}

/** The field a contact's record is bound to (its associated data: tenant, contacts, contact id, this). */
export const RECORD_FIELD = 'record';

/** A contact's record, version 1: JSON of its personal values, those it has not left out; phones[i] is the number at position i. */
export type RecordV1 = { v: 1; name?: string; phones?: string[]; email?: string; address?: Address; birthDate?: string; notes?: string; personal?: Record<string, CustomValue> };

function encodeRecord(data: ContactData): string {
  const record: RecordV1 = { v: 1 };
  if (data.name !== null) record.name = data.name;
  if (data.phones.length > 0) record.phones = data.phones.map((phone) => phone.e164);
  if (data.email !== null) record.email = data.email;
  if (data.address !== null) record.address = data.address;
  if (data.birthDate !== null) record.birthDate = data.birthDate;
  if (data.notes !== null) record.notes = data.notes;
  if (Object.keys(data.personalFields).length > 0) record.personal = data.personalFields;
  return JSON.stringify(record);
}
