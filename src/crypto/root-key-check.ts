import type { SystemDb } from '../db/system-db.ts';
import { context } from './aead.ts';
import { RootKeyError, type RootKeyProvider } from './root-keys/root-key-provider.ts';

const CHECK_PLAINTEXT = Buffer.alloc(32);
const CHECK_CONTEXT = context('ringvakt/root-key-check/v1');

/**
 * Refuses to start with a wrong root key, before anything is written: every root key version
 * that wraps tenant keys, and the current one, must open its stored check value. A version seen
 * for the first time gets its check value stored.
 */
export async function verifyRootKey(systemDb: SystemDb, provider: RootKeyProvider): Promise<void> {
  const currentId = provider.currentKeyId();
  const inUse = await systemDb.rootKeyIdsInUse();
  for (const keyId of new Set([...inUse, currentId])) {
    const stored = await systemDb.rootKeyCheck(keyId);
    if (!stored) {
      if (keyId !== currentId) {
        throw new RootKeyError(
          `Tenant keys are wrapped under root key ${keyId}, which this database has no check value for and the configured key provider does not hold. Nothing was changed.`,
        );
      }
      const wrapped = await provider.wrap(CHECK_PLAINTEXT, CHECK_CONTEXT);
      await systemDb.saveRootKeyCheck(wrapped.keyId, wrapped.wrapped);
      continue;
    }
    let opened: Buffer;
    try {
      opened = await provider.unwrap({ keyId, wrapped: stored }, CHECK_CONTEXT);
    } catch {
      throw new RootKeyError(
        `The configured root key does not match root key ${keyId}, which this database's tenant keys need ` +
          '(wrong key file, RINGVAKT_ROOT_KEY or Vault key). Ringvakt did not start; nothing was changed.',
      );
    }
    if (!opened.equals(CHECK_PLAINTEXT)) throw new RootKeyError(`The check value of root key ${keyId} is wrong`);
  }
}
