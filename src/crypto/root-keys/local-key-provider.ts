import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { KEY_BYTES, open, seal, DecryptionError } from '../aead.ts';
import { readSecretFile, writeSecretFile } from '../../secret-files.ts';
import { RootKeyError, type RootKeyProvider } from './root-key-provider.ts';

type KeyringFile = { format: 1; current: number; keys: Record<string, string> };

/**
 * Root keys in a local file (`<data>/secrets/root-keys.json`, mode 0600), created on first start.
 * Start is refused if anyone but the owner can read it. Rotation appends a version; old versions
 * stay so that keys they wrapped still open until `keys rotate-root` has rewrapped them.
 */
export function createLocalKeyProvider(file: string): RootKeyProvider {
  let keyring: KeyringFile;
  if (existsSync(file)) {
    const text = readSecretFile(file, 'The local root key file');
    try {
      keyring = JSON.parse(text) as KeyringFile;
    } catch {
      throw new RootKeyError(`The local root key file ${file} is not valid JSON`);
    }
    const valid =
      keyring.format === 1 &&
      Number.isInteger(keyring.current) &&
      Object.values(keyring.keys ?? {}).every((key) => Buffer.from(key, 'base64').length === KEY_BYTES) &&
      typeof keyring.keys[String(keyring.current)] === 'string';
    if (!valid) throw new RootKeyError(`The local root key file ${file} is malformed`);
  } else {
    keyring = { format: 1, current: 1, keys: { '1': randomBytes(KEY_BYTES).toString('base64') } };
    writeSecretFile(file, JSON.stringify(keyring));
  }

  const keyFor = (keyId: string): Buffer => {
    const version = /^local:v(\d+)$/.exec(keyId)?.[1];
    const encoded = version === undefined ? undefined : keyring.keys[version];
    if (!encoded) throw new RootKeyError(`The local root key file has no key ${keyId}`);
    return Buffer.from(encoded, 'base64');
  };

  return {
    kind: 'local',
    currentKeyId: () => `local:v${keyring.current}`,
    async wrap(plaintextKey, context) {
      const keyId = `local:v${keyring.current}`;
      return { keyId, wrapped: seal(keyFor(keyId), plaintextKey, context) };
    },
    async unwrap({ keyId, wrapped }, context) {
      try {
        return open(keyFor(keyId), wrapped, context);
      } catch (error) {
        if (error instanceof DecryptionError) {
          throw new RootKeyError(`A key wrapped under ${keyId} does not open with the local root key file: wrong root key or altered data`);
        }
        throw error;
      }
    },
    async rotate() {
      const next = Math.max(...Object.keys(keyring.keys).map(Number)) + 1;
      keyring = { ...keyring, current: next, keys: { ...keyring.keys, [String(next)]: randomBytes(KEY_BYTES).toString('base64') } };
      writeSecretFile(file, JSON.stringify(keyring));
      return `local:v${next}`;
    },
  };
}
