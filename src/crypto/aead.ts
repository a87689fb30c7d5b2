import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';

/**
 * AES-256-GCM with a random 96-bit nonce and a 128-bit tag: the one authenticated cipher the
 * project uses, for wrapping keys and for fields. Every caller binds its context through `aad`.
 */
export const KEY_BYTES = 32;
export const NONCE_BYTES = 12;
export const TAG_BYTES = 16;

export class DecryptionError extends Error {
  constructor(message = 'The ciphertext does not authenticate: wrong key, wrong context, or altered data') {
    super(message);
    this.name = 'DecryptionError';
  }
}

function assertKey(key: Buffer): void {
  if (key.length !== KEY_BYTES) throw new Error('AES-256-GCM needs a 32-byte key');
}

/** Returns nonce ‖ ciphertext ‖ tag. */
export function seal(key: Buffer, plaintext: Buffer, aad: Buffer): Buffer {
  assertKey(key);
  const nonce = randomBytes(NONCE_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key, nonce, { authTagLength: TAG_BYTES });
  cipher.setAAD(aad);
  const body = cipher.update(plaintext);
  const final = cipher.final();
  return Buffer.concat([nonce, body, final, cipher.getAuthTag()]);
}

/** Opens nonce ‖ ciphertext ‖ tag; throws DecryptionError unless key, aad and bytes all match. */
export function open(key: Buffer, sealed: Buffer, aad: Buffer): Buffer {
  assertKey(key);
  if (sealed.length < NONCE_BYTES + TAG_BYTES) throw new DecryptionError('The ciphertext is truncated');
  const nonce = sealed.subarray(0, NONCE_BYTES);
  const tag = sealed.subarray(sealed.length - TAG_BYTES);
  const body = sealed.subarray(NONCE_BYTES, sealed.length - TAG_BYTES);
  const decipher = createDecipheriv('aes-256-gcm', key, nonce, { authTagLength: TAG_BYTES });
  decipher.setAAD(aad);
  decipher.setAuthTag(tag);
  try {
    return Buffer.concat([decipher.update(body), decipher.final()]);
  } catch {
    throw new DecryptionError();
  }
}

/**
 * Unambiguous associated data: a label, then each part length-prefixed (uint16), so that no two
 * different contexts ("ab","c" and "a","bc") ever encode alike.
 */
export function context(label: string, ...parts: (string | number)[]): Buffer {
  const chunks: Buffer[] = [Buffer.from(label, 'utf8'), Buffer.from([0])];
  for (const part of parts) {
    const bytes = Buffer.from(String(part), 'utf8');
    if (bytes.length > 0xffff) throw new Error('context part too long');
    const length = Buffer.alloc(2);
    length.writeUInt16BE(bytes.length);
    chunks.push(length, bytes);
  }
  return Buffer.concat(chunks);
}
