import { createHash, randomBytes } from 'node:crypto';
import type { TenantTransaction } from '../../db/tenant-db.ts';
import type { FieldCipher } from '../../crypto/field-cipher.ts';
import { AppError } from '../../server/errors.ts';

/**
 * Second factors: TOTP (RFC 6238, 30 s steps, 6 digits; otplib) and one-time recovery codes.
 * The TOTP secret is field ciphertext under the tenant data key. Each code is accepted once: the
 * time step of the last accepted code is stored and no code of that step or an earlier one passes
 * again. One step of clock drift is tolerated either way.
 */
export const TOTP_ISSUER = 'Ringvakt';
/** TOTP and QR code libraries, loaded on first use, not at start-up. */
const otplib = () => import('otplib');
const qrcode = () => import('qrcode');

const TOLERANCE_SECONDS = 30;
export const RECOVERY_CODE_COUNT = 10;

const secretField = (userId: string, field: 'totp_secret' | 'totp_pending') => ({ table: 'users', recordId: userId, field });

export type TotpEnrollment = { secret: string; uri: string; qrSvg: string };

/** Starts (or restarts) enrolment: a new secret, not yet in force until a code from it is confirmed. */
export async function startTotpEnrollment(trx: TenantTransaction, cipher: FieldCipher, user: { id: string; email: string }): Promise<TotpEnrollment> {
  const { generateSecret, generateURI } = await otplib();
  const secret = generateSecret({ length: 20 });
  const uri = generateURI({ issuer: TOTP_ISSUER, label: user.email, secret });
  await trx
    .updateTable('users')
    .set({ totp_pending_ciphertext: await cipher.encrypt(trx, secretField(user.id, 'totp_pending'), secret) })
    .where('id', '=', user.id)
    .execute();
  const { default: QRCode } = await qrcode();
  const qrSvg = await QRCode.toString(uri, { type: 'svg', errorCorrectionLevel: 'M', margin: 2 });
  return { secret, uri, qrSvg };
}

const TOTP_CODE = /^\d{6}$/;

async function checkCode(secret: string, code: string, afterTimeStep: number | undefined, epoch?: number): Promise<number | undefined> {
  if (!TOTP_CODE.test(code)) return undefined;
  const { verify } = await otplib();
  try {
    const result = await verify({
      secret,
      token: code,
      epochTolerance: TOLERANCE_SECONDS,
      ...(afterTimeStep !== undefined ? { afterTimeStep } : {}),
      ...(epoch !== undefined ? { epoch } : {}),
    });
    return result.valid && 'timeStep' in result ? result.timeStep : undefined;
  } catch {
    // otplib refuses outright when every step in the window is at or before the last one used
    // (clocks of two nodes apart): that is a code we will not accept, not a failure of ours.
    return undefined;
  }
}

/**
 * Confirms enrolment with a code from the new secret; returns fresh recovery codes (shown once),
 * or undefined for a wrong code (returned, not thrown, so the caller can record the failure).
 */
export async function confirmTotpEnrollment(trx: TenantTransaction, cipher: FieldCipher, userId: string, code: string): Promise<string[] | undefined> {
  const row = await trx.selectFrom('users').select(['totp_pending_ciphertext']).where('id', '=', userId).forUpdate().executeTakeFirst();
  if (!row?.totp_pending_ciphertext) throw new AppError('conflict', 'Start enrolment first: there is no pending authenticator.');
  const secret = await cipher.decrypt(trx, secretField(userId, 'totp_pending'), row.totp_pending_ciphertext);
  const step = await checkCode(secret, code, undefined);
  if (step === undefined) return undefined;
  await trx
    .updateTable('users')
    .set({
      totp_secret_ciphertext: await cipher.encrypt(trx, secretField(userId, 'totp_secret'), secret),
      totp_pending_ciphertext: null,
      totp_last_step: step,
      updated_at: new Date(),
    })
    .where('id', '=', userId)
    .execute();
  return replaceRecoveryCodes(trx, userId);
}

/** Checks a TOTP code against the user's secret and spends it; false if wrong or already used. */
export async function verifyTotp(trx: TenantTransaction, cipher: FieldCipher, userId: string, code: string, epoch?: number): Promise<boolean> {
  const row = await trx
    .selectFrom('users')
    .select(['totp_secret_ciphertext', 'totp_last_step'])
    .where('id', '=', userId)
    .forUpdate()
    .executeTakeFirst();
  if (!row?.totp_secret_ciphertext) return false;
  const secret = await cipher.decrypt(trx, secretField(userId, 'totp_secret'), row.totp_secret_ciphertext);
  const step = await checkCode(secret, code, row.totp_last_step === null ? undefined : Number(row.totp_last_step), epoch);
  if (step === undefined) return false;
  await trx.updateTable('users').set({ totp_last_step: step }).where('id', '=', userId).execute();
  return true;
}

export async function removeTotp(trx: TenantTransaction, userId: string): Promise<void> {
  await trx
    .updateTable('users')
    .set({ totp_secret_ciphertext: null, totp_pending_ciphertext: null, totp_last_step: null, updated_at: new Date() })
    .where('id', '=', userId)
    .execute();
  // Recovery codes stay while a passkey still needs them as its fallback.
  const passkey = await trx.selectFrom('webauthn_credentials').select('id').where('user_id', '=', userId).executeTakeFirst();
  if (!passkey) await trx.deleteFrom('recovery_codes').where('user_id', '=', userId).execute();
}

const RECOVERY_ALPHABET = 'abcdefghjkmnpqrstuvwxyz23456789'; // no 0/o, 1/l/i
const RECOVERY_CODE = /^[a-z2-9]{4}(-?[a-z2-9]{4}){3}$/;

function newRecoveryCode(): string {
  // 16 characters of a 31-letter alphabet: 79 bits. Rejection sampling keeps it uniform.
  let code = '';
  while (code.length < 16) {
    for (const byte of randomBytes(32)) {
      if (byte < 248 && code.length < 16) code += RECOVERY_ALPHABET[byte % 31];
    }
  }
  return [code.slice(0, 4), code.slice(4, 8), code.slice(8, 12), code.slice(12, 16)].join('-');
}

const hashRecoveryCode = (userId: string, code: string) =>
  createHash('sha256').update(`ringvakt/recovery/v1\u0000${userId}\u0000${code.toLowerCase().replaceAll('-', '')}`).digest();

/** Replaces all of a user's recovery codes; returns the new ones (stored only as hashes). */
export async function replaceRecoveryCodes(trx: TenantTransaction, userId: string): Promise<string[]> {
  await trx.deleteFrom('recovery_codes').where('user_id', '=', userId).execute();
  const codes = Array.from({ length: RECOVERY_CODE_COUNT }, newRecoveryCode);
  await trx
    .insertInto('recovery_codes')
    .values(codes.map((code) => ({ user_id: userId, code_hash: hashRecoveryCode(userId, code) })))
    .execute();
  return codes;
}

/** Spends a recovery code; false if unknown or already used. */
export async function useRecoveryCode(trx: TenantTransaction, userId: string, code: string): Promise<boolean> {
  const normalised = code.trim().toLowerCase();
  if (!RECOVERY_CODE.test(normalised)) return false;
  const spent = await trx
    .updateTable('recovery_codes')
    .set({ used_at: new Date() })
    .where('user_id', '=', userId)
    .where('code_hash', '=', hashRecoveryCode(userId, normalised))
    .where('used_at', 'is', null)
    .executeTakeFirst();
  return Number(spent.numUpdatedRows) === 1;
}

export async function recoveryCodesLeft(trx: TenantTransaction, userId: string): Promise<number> {
  const row = await trx
    .selectFrom('recovery_codes')
    .select((eb) => eb.fn.countAll<string>().as('left'))
    .where('user_id', '=', userId)
    .where('used_at', 'is', null)
    .executeTakeFirstOrThrow();
  return Number(row.left);
}

/**
 * Failed second-factor codes are counted per user, apart from passwords, and a correct password
 * never forgives them: five free, then growing locks (30 s, 1 min, 2 min, … up to a day). Someone
 * who knows the password cannot cycle password logins to keep guessing six-digit codes.
 */
export const SECOND_FACTOR_FREE_FAILURES = 5;
const SECOND_FACTOR_BASE_MS = 30_000;
const SECOND_FACTOR_MAX_MS = 24 * 3600_000;

export type CodeCheck = { ok: true } | { ok: false; lockedUntil: Date | null };

/** Checks a code under the user's second-factor lock; the caller commits the result either way. */
export async function checkSecondFactorCode(trx: TenantTransaction, userId: string, check: () => Promise<boolean>, now = new Date()): Promise<CodeCheck> {
  const row = await trx
    .selectFrom('users')
    .select(['second_factor_failures', 'second_factor_locked_until'])
    .where('id', '=', userId)
    .forUpdate()
    .executeTakeFirst();
  if (!row) return { ok: false, lockedUntil: null };
  if (row.second_factor_locked_until && row.second_factor_locked_until > now) return { ok: false, lockedUntil: row.second_factor_locked_until };
  if (await check()) {
    if (row.second_factor_failures > 0) await trx.updateTable('users').set({ second_factor_failures: 0, second_factor_locked_until: null }).where('id', '=', userId).execute();
    return { ok: true };
  }
  const failures = row.second_factor_failures + 1;
  const lockedUntil =
    failures >= SECOND_FACTOR_FREE_FAILURES
      ? new Date(now.getTime() + Math.min(SECOND_FACTOR_MAX_MS, SECOND_FACTOR_BASE_MS * 2 ** Math.min(30, failures - SECOND_FACTOR_FREE_FAILURES)))
      : null;
  await trx.updateTable('users').set({ second_factor_failures: failures, second_factor_locked_until: lockedUntil }).where('id', '=', userId).execute();
  return { ok: false, lockedUntil };
}
