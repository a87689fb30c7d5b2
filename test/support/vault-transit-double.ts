import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import http from 'node:http';
import { open, seal } from '../../src/crypto/aead.ts';

/**
 * TEST DOUBLE of the HashiCorp Vault / OpenBao transit engine: the documented endpoints our
 * provider calls (encrypt, decrypt, keys/<name>/rotate, read key), on loopback, with versioned
 * in-memory AES-256-GCM keys, token checking, and associated data that must match on decrypt.
 * It is not Vault; it lets the adapter be tested without the real server.
 */
export type VaultDouble = { address: string; token: string; calls: string[]; close(): Promise<void> };

export async function startVaultTransitDouble(keyName = 'ringvakt-root', mount = 'transit'): Promise<VaultDouble> {
  const token = randomBytes(16).toString('hex');
  const versions: Buffer[] = [randomBytes(32)];
  const calls: string[] = [];
  const server = http.createServer(async (request, response) => {
    let body = '';
    for await (const chunk of request) body += chunk;
    const answer = (status: number, payload: unknown) => {
      response.writeHead(status, { 'content-type': 'application/json' });
      response.end(JSON.stringify(payload));
    };
    calls.push(`${request.method} ${request.url}`);
    if (request.headers['x-vault-token'] !== token) return answer(403, { errors: ['permission denied'] });
    const prefix = `/v1/${mount}/`;
    const path = (request.url ?? '').startsWith(prefix) ? (request.url ?? '').slice(prefix.length) : '';
    const input = body ? (JSON.parse(body) as Record<string, string>) : {};
    const aad = Buffer.from(input.associated_data ?? '', 'base64');
    if (request.method === 'GET' && path === `keys/${keyName}`) {
      return answer(200, { data: { name: keyName, type: 'aes256-gcm96', latest_version: versions.length } });
    }
    if (request.method === 'POST' && path === `keys/${keyName}/rotate`) {
      versions.push(randomBytes(32));
      return answer(200, { data: { latest_version: versions.length } });
    }
    if (request.method === 'POST' && path === `encrypt/${keyName}`) {
      const sealed = seal(versions.at(-1)!, Buffer.from(input.plaintext ?? '', 'base64'), aad);
      return answer(200, { data: { ciphertext: `vault:v${versions.length}:${sealed.toString('base64')}`, key_version: versions.length } });
    }
    if (request.method === 'POST' && path === `decrypt/${keyName}`) {
      const match = /^vault:v(\d+):(.+)$/.exec(input.ciphertext ?? '');
      const key = match ? versions[Number(match[1]) - 1] : undefined;
      if (!match || !key) return answer(400, { errors: ['invalid ciphertext: unable to decrypt'] });
      try {
        return answer(200, { data: { plaintext: open(key, Buffer.from(match[2]!, 'base64'), aad).toString('base64') } });
      } catch {
        return answer(400, { errors: ['cipher: message authentication failed'] });
      }
    }
    return answer(404, { errors: [] });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  return {
    address: `http://127.0.0.1:${port}`,
    token,
    calls,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
