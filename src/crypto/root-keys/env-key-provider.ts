import { createHash } from 'node:crypto';
import { KEY_BYTES, open, seal, DecryptionError } from '../aead.ts';
import { RootKeyError, type RootKeyProvider } from './root-key-provider.ts';

/**
 * Root key from the environment: RINGVAKT_ROOT_KEY (base64 of 32 bytes), and while a rotation is
 * under way RINGVAKT_ROOT_KEY_PREVIOUS (comma-separated) with the keys being replaced. A key is
 * named by a fingerprint (the first 8 bytes of SHA-256 over a label and the key), never by value.
 */
function decodeKey(value: string, name: string): Buffer {
  const key = Buffer.from(value.trim(), 'base64');
  if (key.length !== KEY_BYTES || key.toString('base64') !== value.trim()) {
    throw new RootKeyError(`${name} must be the base64 encoding of exactly 32 random bytes`);
  }
  return key;
}

const fingerprint = (key: Buffer) =>
  `env:${createHash('sha256').update('ringvakt root key fingerprint\0').update(key).digest('hex').slice(0, 16)}`;

export function createEnvKeyProvider(current: string | undefined, previous: string | undefined): RootKeyProvider {
  if (!current) throw new RootKeyError('RINGVAKT_KEY_PROVIDER=env needs RINGVAKT_ROOT_KEY (base64 of 32 random bytes)');
  const currentKey = decodeKey(current, 'RINGVAKT_ROOT_KEY');
  const keys = new Map<string, Buffer>([[fingerprint(currentKey), currentKey]]);
  for (const old of (previous ?? '').split(',').filter((part) => part.trim() !== '')) {
    const key = decodeKey(old, 'RINGVAKT_ROOT_KEY_PREVIOUS');
    keys.set(fingerprint(key), key);
  }
  const currentId = fingerprint(currentKey);
  return {
    kind: 'env',
    currentKeyId: () => currentId,
    async wrap(plaintextKey, context) {
      return { keyId: currentId, wrapped: seal(currentKey, plaintextKey, context) };
    },
    async unwrap({ keyId, wrapped }, context) {
      const key = keys.get(keyId);
      if (!key) {
        throw new RootKeyError(`A key is wrapped under root key ${keyId}, which is neither RINGVAKT_ROOT_KEY nor in RINGVAKT_ROOT_KEY_PREVIOUS`);
      }
      try {
        return open(key, wrapped, context);
      } catch (error) {
        if (error instanceof DecryptionError) throw new RootKeyError(`A key wrapped under ${keyId} does not open: altered data`);
        throw error;
      }
    },
    async rotate() {
      throw new RootKeyError(
        'With RINGVAKT_KEY_PROVIDER=env, rotate by setting RINGVAKT_ROOT_KEY to a new key and RINGVAKT_ROOT_KEY_PREVIOUS to the old one, then run `ringvakt keys rotate-root`',
      );
    },
  };
}
