import { randomBytes } from 'node:crypto';

/**
 * A root key wraps every tenant's keys and never enters the database. Providers: a local key file
 * (0600, created on first start), an environment variable, or HashiCorp Vault / OpenBao transit.
 * `keyId` names the root key version that wrapped a key, so rotation can rewrap old keys online.
 */
export type WrappedKey = { keyId: string; wrapped: Buffer };

export type RootKeyProvider = {
  readonly kind: 'local' | 'env' | 'vault-transit';
  currentKeyId(): string;
  wrap(plaintextKey: Buffer, context: Buffer): Promise<WrappedKey>;
  unwrap(key: WrappedKey, context: Buffer): Promise<Buffer>;
  /** Makes a new root key version current; older versions still unwrap. Returns the new id. */
  rotate(): Promise<string>;
};

/**
 * Proves the provider works now: wraps a random probe key and unwraps it again (for /readyz; with
 * vault-transit that is two requests to Vault). Throws a RootKeyError naming the problem.
 */
export async function probeRootKeys(provider: RootKeyProvider): Promise<void> {
  const probe = randomBytes(32);
  const context = Buffer.from('ringvakt-readiness-probe');
  const back = await provider.unwrap(await provider.wrap(probe, context), context);
  if (!back.equals(probe)) throw new RootKeyError('the root key provider returned a different key for the readiness probe');
}

/** Errors that name the problem, never a key. */
export class RootKeyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RootKeyError';
  }
}
