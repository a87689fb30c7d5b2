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

/**
 * Nonces come from a pool of CSPRNG output, refilled 4 KiB at a time: one call into OpenSSL per
 * 341 nonces instead of one per encryption (the call dominated the cost of small fields). Every
 * 12-byte slice is handed out once; the pool is private to this module.
 */
const NONCE_POOL_BYTES = NONCE_BYTES * 341;
let noncePool = randomBytes(NONCE_POOL_BYTES);
let nonceOffset = 0;
function nextNonce(): Buffer {
  if (nonceOffset + NONCE_BYTES > NONCE_POOL_BYTES) {
    noncePool = randomBytes(NONCE_POOL_BYTES);
    nonceOffset = 0;
  }
  const nonce = noncePool.subarray(nonceOffset, nonceOffset + NONCE_BYTES);
  nonceOffset += NONCE_BYTES;
  return nonce;
}

/**
 * New 256-bit keys (data-subject keys, made by the thousand in a bulk import) from a pool of CSPRNG
 * output refilled 4 KiB at a time, for the same reason. Each key is a copy: the caller keeps it.
 */
const KEY_POOL_BYTES = KEY_BYTES * 128;
let keyPool = randomBytes(KEY_POOL_BYTES);
let keyOffset = 0;
export function newKey(): Buffer {
  if (keyOffset + KEY_BYTES > KEY_POOL_BYTES) {
    keyPool = randomBytes(KEY_POOL_BYTES);
    keyOffset = 0;
  }
  const key = Buffer.alloc(KEY_BYTES);
  keyPool.copy(key, 0, keyOffset, keyOffset + KEY_BYTES);
  // The pool's copy of a handed-out key is wiped: a key exists in one place only.
  keyPool.fill(0, keyOffset, keyOffset + KEY_BYTES);
  keyOffset += KEY_BYTES;
  return key;
}

function assertKey(key: Buffer): void {
  if (key.length !== KEY_BYTES) throw new Error('AES-256-GCM needs a 32-byte key');
}

/**
 * Returns [prefix ‖] nonce ‖ ciphertext ‖ tag (a prefix such as a format header costs no copy).
 * Text is encrypted as its UTF-8 bytes (handed to OpenSSL without a Buffer of its own).
 */
export function seal(key: Buffer, plaintext: Buffer | string, aad: Buffer, prefix?: Buffer): Buffer {
  assertKey(key);
  const nonce = nextNonce();
  const cipher = createCipheriv('aes-256-gcm', key, nonce, { authTagLength: TAG_BYTES });
  cipher.setAAD(aad);
  const body = typeof plaintext === 'string' ? cipher.update(plaintext, 'utf8') : cipher.update(plaintext);
  const final = cipher.final();
  const parts = [nonce, body, final, cipher.getAuthTag()];
  return Buffer.concat(prefix ? [prefix, ...parts] : parts);
}

/**
 * Opens nonce ‖ ciphertext ‖ tag, starting at `offset` of `sealed`; throws DecryptionError
 * unless key, aad and bytes all match.
 */
export function open(key: Buffer, sealed: Buffer, aad: Buffer, offset = 0): Buffer {
  assertKey(key);
  if (offset > 0) sealed = sealed.subarray(offset);
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
  return contextWithSuffix(undefined, label, ...parts);
}

/** `context(…)` followed by `suffix` in one allocation (the hot path of field encryption). */
export function contextWithSuffix(suffix: Buffer | undefined, label: string, ...parts: (string | number)[]): Buffer {
  const labelBytes = Buffer.byteLength(label, 'utf8');
  const out = encodeParts(labelBytes + 1, suffix, parts);
  out.write(label, 0, 'utf8');
  out[labelBytes] = 0;
  return out;
}

/**
 * Contexts that share their label and first parts (a tenant and a table: every field of an
 * import) encode those once: `extendContext(contextPrefix(label, a, b), suffix, c, d)` is
 * `contextWithSuffix(suffix, label, a, b, c, d)`, byte for byte.
 */
export function contextPrefix(label: string, ...parts: (string | number)[]): Buffer {
  return contextWithSuffix(undefined, label, ...parts);
}

export function extendContext(prefix: Buffer, suffix: Buffer | undefined, ...parts: (string | number)[]): Buffer {
  const out = encodeParts(prefix.length, suffix, parts);
  prefix.copy(out, 0);
  return out;
}

/** A buffer of `head` bytes left for the caller, then each part length-prefixed, then `suffix`. */
function encodeParts(head: number, suffix: Buffer | undefined, parts: readonly (string | number)[]): Buffer {
  let size = head + (suffix?.length ?? 0);
  for (const part of parts) size += 2 + Buffer.byteLength(String(part), 'utf8');
  const out = Buffer.allocUnsafe(size);
  let offset = head;
  for (const part of parts) {
    const lengthAt = offset;
    const written = out.write(String(part), offset + 2, 'utf8');
    if (written > 0xffff) throw new Error('context part too long');
    out.writeUInt16BE(written, lengthAt);
    offset += 2 + written;
  }
  if (suffix) suffix.copy(out, offset);
  return out;
}
