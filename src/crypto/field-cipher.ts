import { createHmac, createSecretKey, hkdfSync, type KeyObject } from 'node:crypto';
import type { TenantTransaction } from '../db/tenant-db.ts';
import { onCommit } from '../db/tenant-db.ts';
import { contextPrefix, extendContext, open, seal, DecryptionError } from './aead.ts';
import { SubjectErasedError, type Keyring } from './keyring.ts';

/**
 * Field-level encryption and blind indexes, used by repositories through the tenant handle.
 *
 * Ciphertext format, version 1 (self-describing, stored as bytea):
 *   0–1  "RV"                 magic
 *   2    0x01                 format version
 *   3    key kind             0x01 tenant data key, 0x02 data-subject key
 *   4–7  key version          uint32 big-endian (the tenant data key version; 0 for subject keys)
 *   8–   nonce ‖ ciphertext ‖ tag   (AES-256-GCM, src/crypto/aead.ts)
 * Associated data binds the tenant, table, record id, field and the 8-byte header, so a value
 * moved to another record, field or tenant — or relabelled to another key — fails to decrypt
 * instead of yielding a wrong plaintext.
 */
export type FieldLocation = { table: string; recordId: string; field: string };

export class FieldCipherError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'FieldCipherError';
  }
}

const MAGIC_0 = 0x52; // R
const MAGIC_1 = 0x56; // V
const FORMAT_1 = 0x01;
const KIND_TENANT = 0x01;
const KIND_SUBJECT = 0x02;
const HEADER_BYTES = 8;

const headers = new Map<number, Buffer>();

/** The 8-byte header; immutable, so one buffer per key kind and version serves every call. */
function header(kind: number, version: number): Buffer {
  const cacheKey = kind * 0x1_0000_0000 + version;
  const known = headers.get(cacheKey);
  if (known) return known;
  const bytes = Buffer.alloc(HEADER_BYTES);
  bytes.writeUInt8(MAGIC_0, 0);
  bytes.writeUInt8(MAGIC_1, 1);
  bytes.writeUInt8(FORMAT_1, 2);
  bytes.writeUInt8(kind, 3);
  bytes.writeUInt32BE(version, 4);
  if (headers.size < 10_000) headers.set(cacheKey, bytes);
  return bytes;
}

/** Tenant → table → the encoded start of its field contexts, made once (an import seals millions). */
const fieldContextPrefixes = new Map<string, Map<string, Buffer>>();

function fieldContext(tenantId: string, where: FieldLocation, head: Buffer): Buffer {
  let tables = fieldContextPrefixes.get(tenantId);
  if (!tables) {
    if (fieldContextPrefixes.size >= 10_000) fieldContextPrefixes.clear();
    tables = new Map();
    fieldContextPrefixes.set(tenantId, tables);
  }
  let prefix = tables.get(where.table);
  if (!prefix) {
    prefix = contextPrefix('ringvakt/field/v1', tenantId, where.table);
    tables.set(where.table, prefix);
  }
  return extendContext(prefix, head, where.recordId, where.field);
}

/**
 * Blind-index lengths. An index leaks equality; truncating it makes distinct values share index
 * values, so an observer of the table learns less, at the cost of a few false candidates per
 * lookup, which are decrypted and re-checked. 16 bits (users' e-mail): at 1,000,000 values a
 * lookup returns about 15 candidates. 24 bits (contacts' phones and e-mail, suppressions): tables
 * of millions, where imports and dial-time checks look up every number — at 1,000,000 contacts
 * 0.06 false candidates per lookup, and each index value still stands for about six numbers of a
 * national plan of 10^8 (hundreds across all plans).
 */
export const BLIND_INDEX_BYTES = { default: 2, contact: 3 } as const;

export type FieldCipher = {
  encrypt(trx: TenantTransaction, where: FieldLocation, plaintext: string, subjectId?: string): Promise<Buffer>;
  /** The same format for bytes that are not text (file chunks); no subject key. */
  encryptBytes(trx: TenantTransaction, where: FieldLocation, plaintext: Buffer): Promise<Buffer>;
  decryptBytes(trx: TenantTransaction, where: FieldLocation, ciphertext: Buffer): Promise<Buffer>;
  decrypt(trx: TenantTransaction, where: FieldLocation, ciphertext: Buffer, subjectId?: string): Promise<string>;
  /** Encrypts under a data-subject key the caller already holds (Keyring.subjectKeys): no query. */
  encryptForSubject(tenantId: string, where: FieldLocation, plaintext: string, subjectKey: Buffer): Buffer;
  decryptForSubject(tenantId: string, where: FieldLocation, ciphertext: Buffer, subjectKey: Buffer): string;
  /** Bytes (a call recording) under a data-subject key the caller holds. */
  encryptBytesForSubject(tenantId: string, where: FieldLocation, plaintext: Buffer, subjectKey: Buffer): Buffer;
  decryptBytesForSubject(tenantId: string, where: FieldLocation, ciphertext: Buffer, subjectKey: Buffer): Buffer;
  /** Keyed HMAC-SHA256 of an already normalised value (E.164 phone, lower-cased e-mail), truncated. */
  blindIndex(trx: TenantTransaction, indexName: string, normalised: string, bytes?: number): Promise<Buffer>;
  /**
   * The key of one blind index, for blindIndexUnder in a thread of this process that has no
   * keyring (an import's sealing thread). A KeyObject: it crosses to that thread by postMessage
   * without its bytes ever being a JavaScript value.
   */
  blindIndexKey(trx: TenantTransaction, indexName: string): Promise<KeyObject>;
};

/** A blind index under a key from FieldCipher.blindIndexKey (what FieldCipher.blindIndex computes). */
export function blindIndexUnder(indexKey: KeyObject, normalised: string, bytes: number = BLIND_INDEX_BYTES.default): Buffer {
  if (!Number.isInteger(bytes) || bytes < 1 || bytes > 32) throw new FieldCipherError('Blind index length must be 1–32 bytes');
  return createHmac('sha256', indexKey).update(normalised, 'utf8').digest().subarray(0, bytes);
}

/** FieldCipher.encryptForSubject without a cipher object: all it needs is the subject's key. */
export function encryptForSubjectKey(tenantId: string, where: FieldLocation, plaintext: string | Buffer, subjectKey: Buffer): Buffer {
  return seal(subjectKey, plaintext, fieldContext(tenantId, where, subjectHeader), subjectHeader);
}

const subjectHeader = header(KIND_SUBJECT, 0);

function openOrExplain(key: Buffer, ciphertext: Buffer, context: Buffer): string {
  try {
    return open(key, ciphertext, context, HEADER_BYTES).toString('utf8');
  } catch (error) {
    if (error instanceof DecryptionError) {
      throw new FieldCipherError('The field does not decrypt here: it was altered, or belongs to another record, field or tenant');
    }
    throw error;
  }
}

function checkHeader(ciphertext: Buffer): void {
  if (ciphertext.length < HEADER_BYTES || ciphertext[0] !== MAGIC_0 || ciphertext[1] !== MAGIC_1) {
    throw new FieldCipherError('Not a Ringvakt field ciphertext');
  }
  if (ciphertext[2] !== FORMAT_1) throw new FieldCipherError(`Unsupported field ciphertext format ${ciphertext[2]}`);
}

export function createFieldCipher(keyring: Keyring): FieldCipher {
  const indexKeys = new Map<string, KeyObject>();
  // Index keys derived in a transaction not yet committed: reused within it (a bulk import derives
  // thousands of indexes in one), shared with the process only once it commits.
  const uncommittedIndexKeys = new WeakMap<TenantTransaction, Map<string, KeyObject>>();

  const blindIndexKey = async (trx: TenantTransaction, indexName: string): Promise<KeyObject> => {
    const cacheKey = `${trx.tenantId}/${indexName}`;
    const known = indexKeys.get(cacheKey) ?? uncommittedIndexKeys.get(trx)?.get(indexName);
    if (known) return known;
    const tenantIndexKey = await keyring.indexKey(trx);
    // One key per index (HKDF), so equal values in two indexes do not match each other.
    // Held as a KeyObject: HMAC with it skips importing raw key bytes on every call.
    const derived = createSecretKey(Buffer.from(hkdfSync('sha256', tenantIndexKey, 'ringvakt/blind-index/v1', indexName, 32)));
    const inTransaction = uncommittedIndexKeys.get(trx) ?? new Map<string, KeyObject>();
    inTransaction.set(indexName, derived);
    uncommittedIndexKeys.set(trx, inTransaction);
    // Cached once committed: an index key created by a transaction that rolls back is forgotten.
    onCommit(trx, () => {
      if (indexKeys.size >= 20_000) indexKeys.delete(indexKeys.keys().next().value as string);
      indexKeys.set(cacheKey, derived);
    });
    return derived;
  };

  return {
    async encrypt(trx, where, plaintext, subjectId) {
      let head: Buffer;
      let key: Buffer;
      if (subjectId) {
        const subjectKey = await keyring.subjectKey(trx, subjectId, { create: true });
        if (!subjectKey) throw new SubjectErasedError();
        head = header(KIND_SUBJECT, 0);
        key = subjectKey;
      } else {
        const dataKey = keyring.reservedDataKey(trx.tenantId) ?? (await keyring.dataKeyForEncryption(trx));
        head = header(KIND_TENANT, dataKey.version);
        key = dataKey.key;
      }
      return seal(key, plaintext, fieldContext(trx.tenantId, where, head), head);
    },

    async encryptBytes(trx, where, plaintext) {
      const dataKey = keyring.reservedDataKey(trx.tenantId) ?? (await keyring.dataKeyForEncryption(trx));
      const head = header(KIND_TENANT, dataKey.version);
      return seal(dataKey.key, plaintext, fieldContext(trx.tenantId, where, head), head);
    },

    async decryptBytes(trx, where, ciphertext) {
      checkHeader(ciphertext);
      if (ciphertext[3] !== KIND_TENANT) throw new FieldCipherError('This ciphertext is not under a tenant data key');
      const head = ciphertext.subarray(0, HEADER_BYTES);
      const version = head.readUInt32BE(4);
      if (version < 1 || version > 0x7fffffff) throw new FieldCipherError(`Unknown data key version ${version} in field ciphertext`);
      const key = keyring.cachedDataKey(trx.tenantId, version) ?? (await keyring.dataKey(trx, version));
      try {
        return open(key, ciphertext, fieldContext(trx.tenantId, where, head), HEADER_BYTES);
      } catch (error) {
        if (error instanceof DecryptionError) throw new FieldCipherError('The field does not decrypt here: it was altered, or belongs to another record, field or tenant');
        throw error;
      }
    },

    encryptForSubject: encryptForSubjectKey,
    encryptBytesForSubject: encryptForSubjectKey,

    decryptBytesForSubject(tenantId, where, ciphertext, subjectKey) {
      checkHeader(ciphertext);
      if (ciphertext[3] !== KIND_SUBJECT) throw new FieldCipherError('This field is not encrypted under a data-subject key');
      try {
        return open(subjectKey, ciphertext, fieldContext(tenantId, where, subjectHeader), HEADER_BYTES);
      } catch (error) {
        if (error instanceof DecryptionError) throw new FieldCipherError('The field does not decrypt here: it was altered, or belongs to another record, field or tenant');
        throw error;
      }
    },

    decryptForSubject(tenantId, where, ciphertext, subjectKey) {
      checkHeader(ciphertext);
      if (ciphertext[3] !== KIND_SUBJECT) throw new FieldCipherError('This field is not encrypted under a data-subject key');
      return openOrExplain(subjectKey, ciphertext, fieldContext(tenantId, where, subjectHeader));
    },

    async decrypt(trx, where, ciphertext, subjectId) {
      checkHeader(ciphertext);
      const head = ciphertext.subarray(0, HEADER_BYTES);
      const kind = ciphertext[3];
      let key: Buffer;
      if (kind === KIND_SUBJECT) {
        if (!subjectId) throw new FieldCipherError('This field is encrypted under a data-subject key; the subject is needed');
        const subjectKey = await keyring.subjectKey(trx, subjectId, { create: false });
        if (!subjectKey) throw new FieldCipherError('No key exists for this data subject');
        key = subjectKey;
      } else if (kind === KIND_TENANT) {
        const version = head.readUInt32BE(4);
        if (version < 1 || version > 0x7fffffff) throw new FieldCipherError(`Unknown data key version ${version} in field ciphertext`);
        key = keyring.cachedDataKey(trx.tenantId, version) ?? (await keyring.dataKey(trx, version));
      } else {
        throw new FieldCipherError(`Unknown key kind ${kind} in field ciphertext`);
      }
      return openOrExplain(key, ciphertext, fieldContext(trx.tenantId, where, head));
    },

    async blindIndex(trx, indexName, normalised, bytes = BLIND_INDEX_BYTES.default) {
      return blindIndexUnder(await blindIndexKey(trx, indexName), normalised, bytes);
    },

    blindIndexKey,
  };
}
