import { createSecretKey, hkdfSync, type KeyObject } from 'node:crypto';
import type { TenantTransaction } from '../db/tenant-db.ts';
import { onCommit } from '../db/tenant-db.ts';
import { DecryptionError, open, seal } from './aead.ts';
import {
  BLIND_INDEX_BYTES,
  blindIndexUnder,
  checkHeader,
  encryptForSubjectKey,
  fieldContext,
  FieldCipherError,
  header,
  HEADER_BYTES,
  KIND_SUBJECT,
  KIND_TENANT,
  openOrExplain,
  subjectHeader,
  type FieldLocation,
} from './field-format.ts';
import { SubjectErasedError, type Keyring } from './keyring.ts';

/**
 * Field-level encryption and blind indexes, used by repositories through the tenant handle: the
 * ciphertext format and the functions that need no keyring are in field-format.ts (an import's
 * sealing thread loads that module alone).
 */
export { BLIND_INDEX_BYTES, blindIndexUnder, encryptForSubjectKey, FieldCipherError, type FieldLocation } from './field-format.ts';

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
