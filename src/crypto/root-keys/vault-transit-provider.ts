import { RootKeyError, type RootKeyProvider } from './root-key-provider.ts';

/**
 * Root key held by HashiCorp Vault or OpenBao, through the transit secrets engine's HTTP API:
 *   POST /v1/<mount>/encrypt/<name>   { plaintext, associated_data } → { data: { ciphertext } }
 *   POST /v1/<mount>/decrypt/<name>   { ciphertext, associated_data } → { data: { plaintext } }
 *   POST /v1/<mount>/keys/<name>/rotate
 *   GET  /v1/<mount>/keys/<name>      → { data: { latest_version } }
 * The key never leaves Vault; Ringvakt sends the tenant key to be wrapped and the wrapping context
 * as associated data. Ciphertexts carry Vault's own version prefix ("vault:v3:…").
 */
export type VaultTransitOptions = { address: string; token: string; mount: string; keyName: string; timeoutMs?: number };

export async function createVaultTransitProvider(options: VaultTransitOptions): Promise<RootKeyProvider> {
  const base = `${options.address.replace(/\/$/, '')}/v1/${encodeURIComponent(options.mount)}`;
  const name = encodeURIComponent(options.keyName);

  const call = async <T>(method: 'GET' | 'POST', path: string, body?: unknown): Promise<T> => {
    let response: Response;
    try {
      response = await fetch(`${base}/${path}`, {
        method,
        headers: { 'X-Vault-Token': options.token, ...(body ? { 'content-type': 'application/json' } : {}) },
        ...(body ? { body: JSON.stringify(body) } : {}),
        signal: AbortSignal.timeout(options.timeoutMs ?? 10_000),
      });
    } catch {
      throw new RootKeyError(`Vault transit at ${options.address} did not answer (${method} ${options.mount}/${path.split('/')[0]})`);
    }
    if (!response.ok) {
      throw new RootKeyError(`Vault transit refused ${method} ${options.mount}/${path.split('/')[0]} with HTTP ${response.status}`);
    }
    return (await response.json().catch(() => ({}))) as T;
  };

  let latest = 0;
  const refreshVersion = async () => {
    const info = await call<{ data?: { latest_version?: number } }>('GET', `keys/${name}`);
    latest = Number(info.data?.latest_version ?? 0);
    if (!Number.isInteger(latest) || latest < 1) throw new RootKeyError(`Vault transit key ${options.keyName} has no usable version`);
  };
  await refreshVersion();

  return {
    kind: 'vault-transit',
    currentKeyId: () => `vault-transit:${options.keyName}:v${latest}`,
    async wrap(plaintextKey, context) {
      const result = await call<{ data?: { ciphertext?: string } }>('POST', `encrypt/${name}`, {
        plaintext: plaintextKey.toString('base64'),
        associated_data: context.toString('base64'),
      });
      const ciphertext = result.data?.ciphertext;
      const version = /^vault:v(\d+):/.exec(ciphertext ?? '')?.[1];
      if (!ciphertext || !version) throw new RootKeyError('Vault transit returned no ciphertext');
      return { keyId: `vault-transit:${options.keyName}:v${version}`, wrapped: Buffer.from(ciphertext, 'utf8') };
    },
    async unwrap({ wrapped }, context) {
      const result = await call<{ data?: { plaintext?: string } }>('POST', `decrypt/${name}`, {
        ciphertext: wrapped.toString('utf8'),
        associated_data: context.toString('base64'),
      });
      if (!result.data?.plaintext) throw new RootKeyError('Vault transit returned no plaintext');
      return Buffer.from(result.data.plaintext, 'base64');
    },
    async rotate() {
      await call('POST', `keys/${name}/rotate`);
      await refreshVersion();
      return `vault-transit:${options.keyName}:v${latest}`;
    },
  };
}
