import { randomBytes } from 'node:crypto';
import { hash, verify } from '@node-rs/argon2';
import { createRequire } from 'node:module';
import { AppError } from '../../server/errors.ts';

/**
 * Password hashing and policy.
 *
 * argon2id with 64 MiB of memory, three passes, one lane (2 = Algorithm.Argon2id, a const enum):
 * above OWASP's minimum (19 MiB, t=2, p=1) and about 45 ms per hash on the reference 2-core
 * machine, so 20 logins a second use under half of it (bench/login.bench.ts). These are the
 * recorded parameters; a stored hash made with weaker ones is replaced at the next successful
 * login (`needsRehash`).
 */
export const ARGON2ID = { algorithm: 2, memoryCost: 64 * 1024, timeCost: 3, parallelism: 1 } as const;

export const PASSWORD_MIN_LENGTH = 12;
export const PASSWORD_MAX_LENGTH = 256;

/**
 * Common and breached passwords: the ~49,000 most common passwords of the public breach corpora
 * shipped in @zxcvbn-ts/language-common, lower-cased. A password is refused when it is one of
 * them, or one of them with digits and symbols around it ("Password2024!"), or a single character
 * or short pattern repeated.
 */
let common: Set<string> | undefined;
/** Read with the first password checked (not at start-up: it is ~49,000 words). */
function commonPasswords(): Set<string> {
  if (!common) {
    const { dictionary } = createRequire(import.meta.url)('@zxcvbn-ts/language-common') as { dictionary: { 'passwords-common': string[] } };
    common = new Set(dictionary['passwords-common'].map((word) => word.toLowerCase()));
  }
  return common;
}

/** The form a password is checked and hashed in: Unicode NFKC, so visually equal input matches. */
export function normalisePassword(password: string): string {
  return password.normalize('NFKC');
}

function isCommon(lowered: string): boolean {
  const known = commonPasswords();
  if (known.has(lowered)) return true;
  const core = lowered.replace(/^[\d\W_]+|[\d\W_]+$/gu, '');
  if (core.length >= 4 && core !== lowered && known.has(core)) return true;
  // A short pattern repeated ("abcabcabcabc", "aaaaaaaaaaaa").
  return /^(.{1,4})\1+$/su.test(lowered);
}

/** The policy of NIST SP 800-63B: length over composition rules, and no known passwords. */
export function assertPasswordAcceptable(password: string, context: { email: string }): void {
  const normalised = normalisePassword(password);
  const length = [...normalised].length;
  if (length < PASSWORD_MIN_LENGTH || length > PASSWORD_MAX_LENGTH) {
    throw new AppError('password_too_weak', `Use between ${PASSWORD_MIN_LENGTH} and ${PASSWORD_MAX_LENGTH} characters.`);
  }
  const lowered = normalised.toLowerCase();
  if (isCommon(lowered)) {
    throw new AppError('password_too_weak', 'This password is among the most common or breached passwords. Choose another.');
  }
  const localPart = context.email.split('@')[0] ?? '';
  if (localPart.length >= 4 && lowered.includes(localPart.toLowerCase())) {
    throw new AppError('password_too_weak', 'Do not build the password from your e-mail address.');
  }
}

/**
 * At most four hashes run at once (one per libuv worker thread), at most 1,000 wait: a flood of
 * logins queues instead of taking every core and all memory (64 MiB each), and beyond the queue
 * it is refused outright.
 */
const MAX_RUNNING = 4;
const MAX_WAITING = 1_000;
let running = 0;
const waiting: (() => void)[] = [];

async function limited<T>(work: () => Promise<T>): Promise<T> {
  if (running >= MAX_RUNNING) {
    if (waiting.length >= MAX_WAITING) throw new AppError('rate_limited', 'Too many sign-ins at once. Try again in a moment.');
    await new Promise<void>((resolve) => waiting.push(resolve));
  } else {
    running += 1;
  }
  try {
    return await work();
  } finally {
    const next = waiting.shift();
    if (next) next();
    else running -= 1;
  }
}

export function hashPassword(password: string): Promise<string> {
  return limited(() => hash(normalisePassword(password), ARGON2ID));
}

export async function verifyPassword(passwordHash: string, password: string): Promise<boolean> {
  try {
    return await limited(() => verify(passwordHash, normalisePassword(password)));
  } catch (error) {
    if (error instanceof AppError) throw error;
    return false; // a malformed stored hash never lets anyone in
  }
}

/** A hash made with weaker parameters than today's (or another algorithm) is due for replacement. */
export function needsRehash(passwordHash: string): boolean {
  const match = /^\$argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$/.exec(passwordHash);
  if (!match) return true;
  const [memory, time, lanes] = [Number(match[1]), Number(match[2]), Number(match[3])];
  return memory < ARGON2ID.memoryCost || time < ARGON2ID.timeCost || lanes < ARGON2ID.parallelism;
}

/**
 * A hash of a random password with today's parameters: verified against when the account does not
 * exist or is locked, so those answers cost what a wrong password costs.
 */
let decoy: Promise<string> | undefined;
export function decoyPasswordHash(): Promise<string> {
  decoy ??= hash(randomBytes(24).toString('base64url'), ARGON2ID);
  return decoy;
}
