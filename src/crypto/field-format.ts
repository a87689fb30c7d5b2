import { createHmac, type KeyObject } from 'node:crypto';
import { contextPrefix, DecryptionError, extendContext, open, seal } from './aead.ts';

/**
 * The field ciphertext format, and the parts of field encryption and blind indexes that need no
 * keyring and no database (field-cipher.ts is the service over them): what an import's sealing
 * thread loads, and nothing more.
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
export const KIND_TENANT = 0x01;
export const KIND_SUBJECT = 0x02;
export const HEADER_BYTES = 8;

const headers = new Map<number, Buffer>();

/** The 8-byte header; immutable, so one buffer per key kind and version serves every call. */
export function header(kind: number, version: number): Buffer {
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

export function fieldContext(tenantId: string, where: FieldLocation, head: Buffer): Buffer {
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

/** A blind index under a key from FieldCipher.blindIndexKey (what FieldCipher.blindIndex computes). */
export function blindIndexUnder(indexKey: KeyObject, normalised: string, bytes: number = BLIND_INDEX_BYTES.default): Buffer {
  if (!Number.isInteger(bytes) || bytes < 1 || bytes > 32) throw new FieldCipherError('Blind index length must be 1–32 bytes');
  // The digest as a binary (latin1) string, and its first bytes into a Buffer from Node's pool: a digest
  // returned as a Buffer gets memory of its own from OpenSSL's side, which costs the collector more
  // than the HMAC itself (an import computes two per row; measured 1.8 µs per index against 3.9).
  return Buffer.from(createHmac('sha256', indexKey).update(normalised, 'utf8').digest('binary').slice(0, bytes), 'latin1');
}

/** FieldCipher.encryptForSubject without a cipher object: all it needs is the subject's key. */
export function encryptForSubjectKey(tenantId: string, where: FieldLocation, plaintext: string | Buffer, subjectKey: Buffer): Buffer {
  return seal(subjectKey, plaintext, fieldContext(tenantId, where, subjectHeader), subjectHeader);
}

export const subjectHeader = header(KIND_SUBJECT, 0);

export function openOrExplain(key: Buffer, ciphertext: Buffer, context: Buffer): string {
  try {
    return open(key, ciphertext, context, HEADER_BYTES).toString('utf8');
  } catch (error) {
    if (error instanceof DecryptionError) {
      throw new FieldCipherError('The field does not decrypt here: it was altered, or belongs to another record, field or tenant');
    }
    throw error;
  }
}

export function checkHeader(ciphertext: Buffer): void {
  if (ciphertext.length < HEADER_BYTES || ciphertext[0] !== MAGIC_0 || ciphertext[1] !== MAGIC_1) {
    throw new FieldCipherError('Not a Ringvakt field ciphertext');
  }
  if (ciphertext[2] !== FORMAT_1) throw new FieldCipherError(`Unsupported field ciphertext format ${ciphertext[2]}`);
}
