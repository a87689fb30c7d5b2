import { hash, verify } from '@node-rs/argon2';
import { AppError } from '../../server/errors.ts';

/** argon2id with OWASP's minimum: 19 MiB of memory, two passes, one lane. (2 = Algorithm.Argon2id, a const enum.) */
const ARGON2ID = { algorithm: 2, memoryCost: 19 * 1024, timeCost: 2, parallelism: 1 } as const;

export const PASSWORD_MIN_LENGTH = 12;
export const PASSWORD_MAX_LENGTH = 256;

/** The policy of NIST SP 800-63B: length over composition rules. Issue 4 adds breached-password checks. */
export function assertPasswordAcceptable(password: string, context: { email: string }): void {
  const length = [...password].length;
  if (length < PASSWORD_MIN_LENGTH || length > PASSWORD_MAX_LENGTH) {
    throw new AppError(
      'password_too_weak',
      `Use between ${PASSWORD_MIN_LENGTH} and ${PASSWORD_MAX_LENGTH} characters.`,
    );
  }
  if (new Set(password).size < 4) {
    throw new AppError('password_too_weak', 'Use more than three different characters.');
  }
  const localPart = context.email.split('@')[0] ?? '';
  if (localPart.length >= 4 && password.toLowerCase().includes(localPart.toLowerCase())) {
    throw new AppError('password_too_weak', 'Do not build the password from your e-mail address.');
  }
}

export function hashPassword(password: string): Promise<string> {
  return hash(password, ARGON2ID);
}

export function verifyPassword(passwordHash: string, password: string): Promise<boolean> {
  return verify(passwordHash, password);
}
