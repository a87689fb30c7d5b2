import { sql } from 'kysely';
import type { TenantTransaction } from '../db/tenant-db.ts';
import type { ContactPurpose } from '../db/schema.ts';
import type { ContactsCrypto } from '../modules/contacts/contacts.service.ts';
import { contactFieldAt } from '../modules/contacts/contact-record.ts';
import { findMatches, recordMatches } from '../modules/suppression/suppression.service.ts';
import { isCallable, nextCallable, type WindowRule } from './calling-window.ts';
import { releaseContact, type ReservedAttempt } from './hopper.ts';

/**
 * The checks every automatic dial passes just before it is placed, in the transaction that marks
 * the attempt as dialing — not when the contact entered the hopper, so a number suppressed a
 * second ago, a consent withdrawn, a contact restricted or a window closed since then stops the
 * dial. Each check that passed is written on the attempt (the compliance record lists them); the
 * one that failed names why the contact was not called and when, if ever, it may be.
 */
export type DialCheck = 'status' | 'attempts' | 'window' | 'consent' | 'number' | 'suppression';

export type DialContext = {
  campaignId: string;
  purpose: ContactPurpose;
  maxAttempts: number;
  windows: readonly WindowRule[];
  requiresLawfulBasis: boolean;
};

export type DialPermit = { ok: true; number: string; position: number; checks: DialCheck[] };
export type DialRefusal = { ok: false; reason: DialCheck | 'window_never'; checks: DialCheck[]; retryAt: Date | null };

/** The contact's numbers (decrypted) and what the checks need, nothing else of its record. */
async function loadTarget(trx: TenantTransaction, crypto: ContactsCrypto, contactId: string) {
  const [contact, phones, keys, consent] = await Promise.all([
    trx.selectFrom('contacts').select(['status', 'time_zones']).where('id', '=', contactId).executeTakeFirst(),
    trx.selectFrom('contact_phones').select(['position', 'number_ciphertext']).where('contact_id', '=', contactId).orderBy('position').execute(),
    crypto.keyring.subjectKeys(trx, [contactId]),
    trx
      .selectFrom('consent_events')
      .select(['purpose', 'action'])
      .where('contact_id', '=', contactId)
      .orderBy('recorded_at', 'desc')
      .limit(50)
      .execute(),
  ]);
  const key = keys.get(contactId) ?? null;
  const numbers =
    key === null ? [] : phones.map((phone) => ({ position: phone.position, e164: crypto.cipher.decryptForSubject(trx.tenantId, contactFieldAt(contactId, `phone.${phone.position}`), phone.number_ciphertext, key) }));
  return { contact, numbers, consent };
}

export async function checkAtDialTime(trx: TenantTransaction, crypto: ContactsCrypto, context: DialContext, attempt: ReservedAttempt, now: Date): Promise<DialPermit | DialRefusal> {
  const checks: DialCheck[] = [];
  const refuse = (reason: DialRefusal['reason'], retryAt: Date | null = null): DialRefusal => ({ ok: false, reason, checks, retryAt });
  const { contact, numbers, consent } = await loadTarget(trx, crypto, attempt.contactId);
  if (!contact || contact.status !== 'active') return refuse('status');
  checks.push('status');
  if (attempt.dials >= context.maxAttempts) return refuse('attempts');
  checks.push('attempts');
  if (!isCallable(now, contact.time_zones, context.windows)) {
    const next = nextCallable(now, contact.time_zones, context.windows);
    return next ? refuse('window', next) : refuse('window_never');
  }
  checks.push('window');
  // The newest entry for the campaign's purpose is in force: a withdrawal or an objection stops
  // the dial; where the profile requires a lawful basis, a grant must be in force.
  const inForce = consent.find((entry) => entry.purpose === context.purpose);
  if (inForce && inForce.action !== 'grant') return refuse('consent');
  if (context.requiresLawfulBasis && inForce?.action !== 'grant') return refuse('consent');
  checks.push('consent');
  if (numbers.length === 0) return refuse('number');
  checks.push('number');
  // Numbers in turn, from the one after the last dialed: the first that no suppression matches.
  // A number held only by an expiring entry (recently abandoned: 72 h) comes back when it expires.
  let comesBack: Date | null = null;
  for (let offset = 0; offset < numbers.length; offset += 1) {
    const candidate = numbers[(attempt.dials + offset) % numbers.length] as { position: number; e164: string };
    const matches = await findMatches(trx, crypto, 'phone', candidate.e164, { campaignId: context.campaignId });
    if (matches.length === 0) {
      checks.push('suppression');
      return { ok: true, number: candidate.e164, position: candidate.position, checks };
    }
    await recordMatches(trx, matches.map((match) => match.id), { context: 'dial', contactId: attempt.contactId, campaignId: context.campaignId });
    const expiries = matches.map((match) => match.expiresAt);
    if (expiries.every((expiry): expiry is Date => expiry !== null)) {
      const free = new Date(Math.max(...expiries.map((expiry) => expiry.getTime())));
      if (comesBack === null || free < comesBack) comesBack = free;
    }
  }
  return refuse('suppression', comesBack);
}

/**
 * Runs the checks for a reserved attempt and records their result: the attempt becomes `dialing`
 * (the caller then sends the dial) or `skipped`, and a skipped contact returns to the hopper when a
 * retry can help (a window that opens later, an expiring suppression) or is done with.
 */
export async function admitAttempt(trx: TenantTransaction, crypto: ContactsCrypto, context: DialContext, attempt: ReservedAttempt, now: Date): Promise<DialPermit | DialRefusal> {
  const verdict = await checkAtDialTime(trx, crypto, context, attempt, now);
  if (verdict.ok) {
    await trx
      .updateTable('dial_attempts')
      .set({ state: 'dialing', checks: verdict.checks, phone_position: verdict.position, dialed_at: now })
      .where('id', '=', attempt.id)
      .execute();
    await trx
      .updateTable('campaign_contacts')
      .set({ dials: sql<number>`dials + 1`, updated_at: now })
      .where('campaign_id', '=', context.campaignId)
      .where('contact_id', '=', attempt.contactId)
      .execute();
    return verdict;
  }
  await trx
    .updateTable('dial_attempts')
    .set({ state: 'skipped', outcome: 'skipped', checks: verdict.checks, skip_reason: verdict.reason, ended_at: now })
    .where('id', '=', attempt.id)
    .execute();
  await releaseContact(trx, context.campaignId, attempt.contactId, { nextAt: verdict.retryAt, outcome: `skipped:${verdict.reason}`, now });
  return verdict;
}
