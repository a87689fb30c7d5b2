import type {
  AuthenticationResponseJSON,
  PublicKeyCredentialCreationOptionsJSON,
  PublicKeyCredentialRequestOptionsJSON,
  RegistrationResponseJSON,
} from '@simplewebauthn/server';
import { randomBytes } from 'node:crypto';
import type { TenantTransaction } from '../../db/tenant-db.ts';
import { AppError } from '../../server/errors.ts';
import { announceAuthChange } from '../access/auth-changes.ts';

/** The WebAuthn library, loaded on the first passkey ceremony (it is the heaviest import at start-up). */
const webauthn = () => import('@simplewebauthn/server');

/**
 * WebAuthn passkeys (@simplewebauthn/server): as a second factor after the password, and as a
 * passwordless login on their own (a discoverable credential with user verification is two
 * factors in one: the device, and the PIN or biometric that unlocks it).
 *
 * Challenges are random, stored, bound to their purpose (and session), spent on first use and
 * valid 5 minutes. The relying party is RINGVAKT_PUBLIC_URL: its host name is the RP ID and its
 * origin the only one accepted, so a passkey cannot be phished through another site.
 */
export type RelyingParty = { id: string; name: string; origin: string };

export function relyingPartyFor(publicUrl: string): RelyingParty {
  const url = new URL(publicUrl);
  return { id: url.hostname, name: 'Ringvakt', origin: url.origin };
}

const CHALLENGE_MS = 5 * 60_000;
type Purpose = 'registration' | 'mfa' | 'login';

/** A new challenge: the bytes for the options (which base64url-encode them), stored as that text. */
async function newChallenge(trx: TenantTransaction, purpose: Purpose, sessionId: string | null): Promise<Uint8Array<ArrayBuffer>> {
  const bytes = new Uint8Array(randomBytes(32));
  const challenge = Buffer.from(bytes).toString('base64url');
  await trx.deleteFrom('webauthn_challenges').where('expires_at', '<', new Date()).execute();
  await trx
    .insertInto('webauthn_challenges')
    .values({ challenge, purpose, session_id: sessionId, expires_at: new Date(Date.now() + CHALLENGE_MS) })
    .execute();
  return bytes;
}

/** The challenge a browser signed, read from its client data (verification checks it again). */
function challengeOf(clientDataJSON: string): string | undefined {
  try {
    const data = JSON.parse(Buffer.from(clientDataJSON, 'base64url').toString('utf8')) as { challenge?: unknown };
    return typeof data.challenge === 'string' && /^[A-Za-z0-9_-]{32,128}$/.test(data.challenge) ? data.challenge : undefined;
  } catch {
    return undefined;
  }
}

/** Spends a challenge: true only once, for its purpose and session, before it expires. */
async function spendChallenge(trx: TenantTransaction, challenge: string | undefined, purpose: Purpose, sessionId: string | null): Promise<boolean> {
  if (!challenge) return false;
  let query = trx
    .deleteFrom('webauthn_challenges')
    .where('challenge', '=', challenge)
    .where('purpose', '=', purpose)
    .where('expires_at', '>', new Date());
  query = sessionId === null ? query.where('session_id', 'is', null) : query.where('session_id', '=', sessionId);
  const spent = await query.executeTakeFirst();
  return Number(spent.numDeletedRows) === 1;
}

export async function registrationOptions(
  trx: TenantTransaction,
  rp: RelyingParty,
  user: { id: string; email: string; displayName: string },
  sessionId: string,
): Promise<PublicKeyCredentialCreationOptionsJSON> {
  const existing = await trx.selectFrom('webauthn_credentials').select(['credential_id', 'transports']).where('user_id', '=', user.id).execute();
  const { generateRegistrationOptions } = await webauthn();
  return generateRegistrationOptions({
    rpName: rp.name,
    rpID: rp.id,
    userName: user.email,
    userDisplayName: user.displayName,
    userID: Buffer.from(user.id.replaceAll('-', ''), 'hex'),
    challenge: await newChallenge(trx, 'registration', sessionId),
    attestationType: 'none',
    excludeCredentials: existing.map((row) => ({ id: row.credential_id, transports: row.transports })),
    authenticatorSelection: { residentKey: 'required', userVerification: 'required' },
  });
}

export async function registerPasskey(
  trx: TenantTransaction,
  rp: RelyingParty,
  input: { userId: string; sessionId: string; name: string; response: RegistrationResponseJSON },
): Promise<{ id: string } | { refused: AppError }> {
  // A refusal is returned, not thrown, so that the spent challenge stays spent (the caller commits).
  const challenge = challengeOf(input.response.response.clientDataJSON);
  if (!(await spendChallenge(trx, challenge, 'registration', input.sessionId))) {
    return { refused: new AppError('passkey_invalid', 'The passkey challenge is unknown, used or expired. Start again.') };
  }
  let verified;
  try {
    const { verifyRegistrationResponse } = await webauthn();
    verified = await verifyRegistrationResponse({
      response: input.response,
      expectedChallenge: challenge ?? '',
      expectedOrigin: rp.origin,
      expectedRPID: rp.id,
      requireUserVerification: true,
    });
  } catch {
    return { refused: new AppError('passkey_invalid') };
  }
  if (!verified.verified) return { refused: new AppError('passkey_invalid') };
  const { credential, credentialBackedUp } = verified.registrationInfo;
  const taken = await trx.selectFrom('webauthn_credentials').select('id').where('credential_id', '=', credential.id).executeTakeFirst();
  if (taken) return { refused: new AppError('conflict', 'This passkey is registered already.') };
  const row = await trx
    .insertInto('webauthn_credentials')
    .values({
      user_id: input.userId,
      credential_id: credential.id,
      public_key: Buffer.from(credential.publicKey),
      counter: credential.counter,
      transports: (credential.transports ?? []).slice(0, 10),
      name: input.name,
      backed_up: credentialBackedUp,
    })
    .returning('id')
    .executeTakeFirstOrThrow();
  announceAuthChange(trx);
  return row;
}

/** Options for a second-factor check (the user's own passkeys) or a passwordless login (any). */
export async function authenticationOptions(
  trx: TenantTransaction,
  rp: RelyingParty,
  input: { purpose: 'mfa'; userId: string; sessionId: string } | { purpose: 'login' },
): Promise<PublicKeyCredentialRequestOptionsJSON> {
  const allow =
    input.purpose === 'mfa'
      ? await trx.selectFrom('webauthn_credentials').select(['credential_id', 'transports']).where('user_id', '=', input.userId).execute()
      : [];
  if (input.purpose === 'mfa' && allow.length === 0) throw new AppError('conflict', 'You have no passkey.');
  const { generateAuthenticationOptions } = await webauthn();
  return generateAuthenticationOptions({
    rpID: rp.id,
    challenge: await newChallenge(trx, input.purpose, input.purpose === 'mfa' ? input.sessionId : null),
    userVerification: 'required',
    allowCredentials: allow.map((row) => ({ id: row.credential_id, transports: row.transports })),
  });
}

/**
 * Verifies a passkey assertion; returns its user. For 'mfa' the passkey must be the session
 * user's; for 'login' it names its user. The signature counter must move forward (a cloned
 * authenticator is refused) unless the authenticator keeps none (0).
 */
export async function verifyPasskey(
  trx: TenantTransaction,
  rp: RelyingParty,
  input: { purpose: 'mfa'; userId: string; sessionId: string; response: AuthenticationResponseJSON } | { purpose: 'login'; response: AuthenticationResponseJSON },
): Promise<{ userId: string } | undefined> {
  const challenge = challengeOf(input.response.response.clientDataJSON);
  if (!(await spendChallenge(trx, challenge, input.purpose, input.purpose === 'mfa' ? input.sessionId : null))) return undefined;
  const stored = await trx
    .selectFrom('webauthn_credentials')
    .select(['id', 'user_id', 'credential_id', 'public_key', 'counter', 'transports'])
    .where('credential_id', '=', input.response.id)
    .forUpdate()
    .executeTakeFirst();
  if (!stored || (input.purpose === 'mfa' && stored.user_id !== input.userId)) return undefined;
  let verified;
  try {
    const { verifyAuthenticationResponse } = await webauthn();
    verified = await verifyAuthenticationResponse({
      response: input.response,
      expectedChallenge: challenge ?? '',
      expectedOrigin: rp.origin,
      expectedRPID: rp.id,
      requireUserVerification: true,
      credential: { id: stored.credential_id, publicKey: new Uint8Array(stored.public_key), counter: Number(stored.counter), transports: stored.transports },
    });
  } catch {
    return undefined;
  }
  if (!verified.verified) return undefined;
  await trx
    .updateTable('webauthn_credentials')
    .set({ counter: verified.authenticationInfo.newCounter, last_used_at: new Date() })
    .where('id', '=', stored.id)
    .execute();
  return { userId: stored.user_id };
}

export type PasskeyView = { id: string; name: string; createdAt: Date; lastUsedAt: Date | null; backedUp: boolean };

export async function listPasskeys(trx: TenantTransaction, userId: string): Promise<PasskeyView[]> {
  const rows = await trx
    .selectFrom('webauthn_credentials')
    .select(['id', 'name', 'created_at', 'last_used_at', 'backed_up'])
    .where('user_id', '=', userId)
    .orderBy('created_at')
    .execute();
  return rows.map((row) => ({ id: row.id, name: row.name, createdAt: row.created_at, lastUsedAt: row.last_used_at, backedUp: row.backed_up }));
}
