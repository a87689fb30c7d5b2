import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';
import { context } from '../crypto/aead.ts';
import type { SystemDb } from '../db/system-db.ts';
import type { RootKeyProvider } from '../crypto/root-keys/root-key-provider.ts';

/**
 * The Ed25519 key that signs audit tree heads, one per deployment. Its private half is stored
 * wrapped by the root key provider, like every other key; its public half is exported with every
 * checkpoint, so a witness can check signatures without Ringvakt.
 */
export type SigningKey = { keyId: string; publicKey: KeyObject; privateKey: KeyObject };

const wrapContext = (keyId: string) => context('ringvakt/audit-signing-key/v1', keyId);

/** Loads the newest signing key, creating one on first use. */
export async function loadSigningKey(systemDb: SystemDb, root: RootKeyProvider): Promise<SigningKey> {
  const [newest] = await systemDb.auditSigningKeys();
  if (newest) {
    const der = await root.unwrap({ keyId: newest.rootKeyId, wrapped: newest.wrappedPrivateKey }, wrapContext(newest.keyId));
    return {
      keyId: newest.keyId,
      publicKey: createPublicKey({ key: newest.publicKey, format: 'der', type: 'spki' }),
      privateKey: createPrivateKey({ key: der, format: 'der', type: 'pkcs8' }),
    };
  }
  await createSigningKey(systemDb, root);
  return loadSigningKey(systemDb, root);
}

/**
 * Makes a new signing key, wrapped under the current root key; it signs from now on. Old keys stay
 * (append-only) so the checkpoints they signed still verify by their public halves.
 */
export async function createSigningKey(systemDb: SystemDb, root: RootKeyProvider): Promise<string> {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  const spki = publicKey.export({ format: 'der', type: 'spki' });
  const keyId = `ed25519:${createHash('sha256').update(spki).digest('hex').slice(0, 16)}`;
  const wrapped = await root.wrap(privateKey.export({ format: 'der', type: 'pkcs8' }), wrapContext(keyId));
  await systemDb.saveAuditSigningKey({ keyId, publicKey: spki, rootKeyId: wrapped.keyId, wrappedPrivateKey: wrapped.wrapped });
  return keyId;
}

export async function publicKeys(systemDb: SystemDb): Promise<Map<string, KeyObject>> {
  const keys = await systemDb.auditSigningKeys();
  return new Map(keys.map((key) => [key.keyId, createPublicKey({ key: key.publicKey, format: 'der', type: 'spki' })]));
}

export type TreeHead = { tenantId: string; treeSize: number; rootHash: Buffer; signedAt: Date };

/** The exact bytes a checkpoint signature covers. */
export function checkpointMessage(head: TreeHead): Buffer {
  return Buffer.from(
    `ringvakt-audit-checkpoint/v1\n${head.tenantId}\n${head.treeSize}\n${head.rootHash.toString('hex')}\n${head.signedAt.toISOString()}\n`,
    'utf8',
  );
}

export function signTreeHead(key: SigningKey, head: TreeHead): Buffer {
  return sign(null, checkpointMessage(head), key.privateKey);
}

export function verifyTreeHead(publicKey: KeyObject, head: TreeHead, signature: Buffer): boolean {
  return verify(null, checkpointMessage(head), publicKey, signature);
}
