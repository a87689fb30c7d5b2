import path from 'node:path';
import type { Config } from '../../config.ts';
import { createEnvKeyProvider } from './env-key-provider.ts';
import { createLocalKeyProvider } from './local-key-provider.ts';
import type { RootKeyProvider } from './root-key-provider.ts';
import { createVaultTransitProvider } from './vault-transit-provider.ts';

/** The root key provider the configuration names (RINGVAKT_KEY_PROVIDER, default `local`). */
export async function createRootKeyProvider(config: Pick<Config, 'keys' | 'dataDir'>): Promise<RootKeyProvider> {
  switch (config.keys.provider) {
    case 'local':
      return createLocalKeyProvider(path.join(config.dataDir, 'secrets', 'root-keys.json'));
    case 'env':
      return createEnvKeyProvider(config.keys.rootKey, config.keys.previous);
    case 'vault-transit':
      return createVaultTransitProvider({
        address: config.keys.address,
        token: config.keys.token,
        mount: config.keys.mount,
        keyName: config.keys.keyName,
      });
  }
}
