import { context, open, seal, DecryptionError } from './aead.ts';

/**
 * How keys of the hierarchy (src/crypto/keyring.ts) are wrapped: the associated data each wrap is
 * bound to, and the subject-key wrap itself — pure functions, so a thread without a keyring (an
 * import's sealing thread) wraps exactly as the keyring does.
 */

export type DataKey = { version: number; key: Buffer };

export class KeyringError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'KeyringError';
  }
}

export const tenantKeyContext = (tenantId: string, purpose: string, version: number) =>
  context('ringvakt/tenant-key/v1', tenantId, purpose, version);
const subjectKeyContext = (tenantId: string, subjectId: string, dataKeyVersion: number) =>
  context('ringvakt/subject-key/v1', tenantId, subjectId, dataKeyVersion);

/**
 * A subject's key wrapped under a data key, as subject_keys stores it: no I/O, so a thread
 * without a keyring can do it with a key from dataKeyForEncryptions (the budget was counted there).
 */
export function wrapSubjectKey(tenantId: string, subjectId: string, dataKey: DataKey, key: Buffer): Buffer {
  return seal(dataKey.key, key, subjectKeyContext(tenantId, subjectId, dataKey.version));
}

/** A subject's key out of its wrap under `dataKey`; altered key material is a KeyringError. */
export function unwrapSubjectKey(tenantId: string, subjectId: string, dataKey: DataKey, wrapped: Buffer): Buffer {
  try {
    return open(dataKey.key, wrapped, subjectKeyContext(tenantId, subjectId, dataKey.version));
  } catch (error) {
    if (error instanceof DecryptionError) throw new KeyringError('A subject key does not open: altered key material');
    throw error;
  }
}

