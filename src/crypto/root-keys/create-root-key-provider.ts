import path from 'node:path';
import type { Config } from '../../config.ts';
import { createEnvKeyProvider } from './env-key-provider.ts';
import { createLocalKeyProvider } from './local-key-provider.ts';
import type { RootKeyProvider } from './root-key-provider.ts';
import { createVaultTransitProvider } from './vault-transit-provider.ts';
import { keyProviderErrors } from '../../operations/telemetry.ts';
import { noteKeyProviderError } from '../../security/installation-alerts.ts';

/** The root key provider the configuration names (RINGVAKT_KEY_PROVIDER, default `local`), its failures counted. */
export async function createRootKeyProvider(config: Pick<Config, 'keys' | 'dataDir'>): Promise<RootKeyProvider> {
  return counted(await configuredProvider(config));
}

/**
 * Every failed wrap or unwrap is counted (`ringvakt_key_provider_errors_total`) and noted for the
 * installation's security detections: a provider that keeps failing is an incident (nothing new can
 * be encrypted), whether Vault is down or someone is tampering with the key file.
 */
function counted(provider: RootKeyProvider): RootKeyProvider {
  const note = (operation: 'wrap' | 'unwrap') => (error: unknown) => {
    keyProviderErrors.inc({ operation });
    noteKeyProviderError();
    throw error;
  };
  return {
    kind: provider.kind,
    currentKeyId: () => provider.currentKeyId(),
    wrap: (plaintextKey, context) => provider.wrap(plaintextKey, context).catch(note('wrap')),
    unwrap: (key, context) => provider.unwrap(key, context).catch(note('unwrap')),
    rotate: () => provider.rotate(),
  };
}

async function configuredProvider(config: Pick<Config, 'keys' | 'dataDir'>): Promise<RootKeyProvider> {
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
