import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { context } from '../src/crypto/aead.ts';
import { createEnvKeyProvider } from '../src/crypto/root-keys/env-key-provider.ts';
import { createLocalKeyProvider } from '../src/crypto/root-keys/local-key-provider.ts';
import type { RootKeyProvider } from '../src/crypto/root-keys/root-key-provider.ts';
import { createVaultTransitProvider } from '../src/crypto/root-keys/vault-transit-provider.ts';
import { startVaultTransitDouble, type VaultDouble } from './support/vault-transit-double.ts';

const folder = mkdtempSync(path.join(os.tmpdir(), 'rv-rootkeys-'));
afterAll(() => rmSync(folder, { recursive: true, force: true }));

/** What every provider must do, whatever holds the root key. */
function behavesAsRootKeyProvider(name: string, make: () => Promise<RootKeyProvider>, rotates: boolean) {
  describe(`${name} root key provider`, () => {
    it('wraps and unwraps a tenant key, bound to its context', async () => {
      const provider = await make();
      const tenantKey = randomBytes(32);
      const where = context('ringvakt/tenant-key/v1', 'tenant-a', 'data', 1);
      const wrapped = await provider.wrap(tenantKey, where);
      expect(wrapped.keyId).toBe(provider.currentKeyId());
      expect(wrapped.wrapped.includes(tenantKey)).toBe(false);
      expect(await provider.unwrap(wrapped, where)).toEqual(tenantKey);
      await expect(provider.unwrap(wrapped, context('ringvakt/tenant-key/v1', 'tenant-b', 'data', 1))).rejects.toThrow();
      const altered = Buffer.from(wrapped.wrapped);
      altered.writeUInt8(altered.readUInt8(altered.length - 1) ^ 1, altered.length - 1);
      await expect(provider.unwrap({ ...wrapped, wrapped: altered }, where)).rejects.toThrow();
    });

    if (rotates) it('rotates: new wraps use the new version, old ones still unwrap', async () => {
      const provider = await make();
      const key = randomBytes(32);
      const where = context('x', 1);
      const before = await provider.wrap(key, where);
      const newId = await provider.rotate();
      expect(newId).not.toBe(before.keyId);
      expect(provider.currentKeyId()).toBe(newId);
      const after = await provider.wrap(key, where);
      expect(after.keyId).toBe(newId);
      expect(await provider.unwrap(before, where)).toEqual(key);
      expect(await provider.unwrap(after, where)).toEqual(key);
    });
  });
}

const localFile = path.join(folder, 'secrets', 'root-keys.json');
behavesAsRootKeyProvider('local', async () => createLocalKeyProvider(localFile), true);

const envKey = randomBytes(32).toString('base64');
behavesAsRootKeyProvider('env', async () => createEnvKeyProvider(envKey, undefined), false);

let vault: VaultDouble;
beforeAll(async () => {
  vault = await startVaultTransitDouble();
});
afterAll(async () => vault?.close());
behavesAsRootKeyProvider(
  'vault-transit (against a test double of the transit API)',
  async () => createVaultTransitProvider({ address: vault.address, token: vault.token, mount: 'transit', keyName: 'ringvakt-root' }),
  true,
);

describe('root key providers refuse unsafe or wrong set-ups, naming the problem and never the key', () => {
  it('local: creates the key file 0600 and refuses it once others can read it', () => {
    const file = path.join(folder, 'strict', 'root-keys.json');
    createLocalKeyProvider(file);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    chmodSync(file, 0o644);
    const content = readFileSync(file, 'utf8');
    let message = '';
    try {
      createLocalKeyProvider(file);
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message).toMatch(/readable or writable by others \(mode 644\)/);
    const key = (JSON.parse(content) as { keys: Record<string, string> }).keys['1']!;
    expect(message).not.toContain(key);
  });

  it('local: a wrong root key file cannot open what another wrapped', async () => {
    const first = createLocalKeyProvider(path.join(folder, 'one', 'root-keys.json'));
    const second = createLocalKeyProvider(path.join(folder, 'two', 'root-keys.json'));
    const wrapped = await first.wrap(randomBytes(32), context('x'));
    await expect(second.unwrap(wrapped, context('x'))).rejects.toThrow(/does not open with the local root key file: wrong root key/);
  });

  it('env: rejects a key that is not 32 bytes of base64, and unknown key ids', async () => {
    expect(() => createEnvKeyProvider(undefined, undefined)).toThrow(/needs RINGVAKT_ROOT_KEY/);
    expect(() => createEnvKeyProvider('c2hvcnQ=', undefined)).toThrow(/exactly 32 random bytes/);
    const old = randomBytes(32).toString('base64');
    const before = await createEnvKeyProvider(old, undefined).wrap(randomBytes(32), context('x'));
    await expect(createEnvKeyProvider(envKey, undefined).unwrap(before, context('x'))).rejects.toThrow(/neither RINGVAKT_ROOT_KEY nor in RINGVAKT_ROOT_KEY_PREVIOUS/);
    await expect(createEnvKeyProvider(envKey, old).unwrap(before, context('x'))).resolves.toHaveLength(32);
  });

  it('vault-transit: a wrong token or an unreachable server is a clear error without the token', async () => {
    const wrongToken = 'hvs.wrong-token-value';
    await expect(createVaultTransitProvider({ address: vault.address, token: wrongToken, mount: 'transit', keyName: 'ringvakt-root' })).rejects.toThrow(/refused GET transit\/keys with HTTP 403/);
    await expect(createVaultTransitProvider({ address: 'http://127.0.0.1:9', token: vault.token, mount: 'transit', keyName: 'k' })).rejects.toThrow(/did not answer/);
  });
});
