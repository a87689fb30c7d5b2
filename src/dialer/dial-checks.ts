import { binaryArray } from '../db/binary-array.ts';
import { sql } from '../db/kysely.ts';
import { sendTogether, type TenantTransaction } from '../db/tenant-db.ts';
import type { ContactPurpose } from '../db/schema.ts';
import type { ContactsCrypto } from '../modules/contacts/contacts.service.ts';
import { openNumbers, rowsByContact } from '../modules/contacts/open-contact.ts';
import { matchPhonesInBulk, recordMatches } from '../modules/suppression/suppression.service.ts';
import { isCallable, nextCallable, type WindowRule } from './calling-window.ts';
import { releaseContact, type ReservedAttempt } from './hopper.ts';

/**
 * The checks every automatic dial passes just before it is placed, in the transaction that marks
 * the attempt as dialing — not when the contact entered the hopper, so a number suppressed a
 * second ago, a consent withdrawn, a contact restricted or a window closed since then stops the
 * dial. Each check that passed is written on the attempt (the compliance record lists them); the
 * one that failed names why the contact was not called and when, if ever, it may be.
 *
 * A pacing round's reservations are checked together: one query per kind of fact (contacts,
 * numbers, subject keys, consent, suppressions) for the whole batch, then each attempt in memory.
 */
/** Every check, in the order they run; a placed call has passed them all. */
export const DIAL_CHECKS = ['status', 'attempts', 'window', 'consent', 'number', 'suppression'] as const;
export type DialCheck = (typeof DIAL_CHECKS)[number];

export type DialContext = {
  campaignId: string;
  purpose: ContactPurpose;
  maxAttempts: number;
  windows: readonly WindowRule[];
  requiresLawfulBasis: boolean;
};

export type DialPermit = { ok: true; number: string; position: number; checks: DialCheck[] };
export type DialRefusal = { ok: false; reason: DialCheck | 'window_never'; checks: DialCheck[]; retryAt: Date | null };
export type DialVerdict = DialPermit | DialRefusal;

type Target = { status: string; zones: string[]; numbers: { position: number; e164: string }[]; consent: string | undefined };

/** The contacts' numbers (decrypted) and what the checks need, nothing else of their records. */
async function loadTargets(trx: TenantTransaction, crypto: ContactsCrypto, contactIds: readonly string[], purpose: ContactPurpose): Promise<Map<string, Target>> {
  const wanted = binaryArray('uuid', contactIds);
  // Three queries sent together, one round trip: the contacts with their subject keys, their
  // phones, and the newest consent entry per contact for the campaign's purpose (the one in force).
  const [contacts = [], phones = [], consent = []] = (await sendTogether(trx, [
    sql`SELECT c.id, c.status, c.time_zones, c.record_ciphertext, k.tenant_key_version, k.wrapped_key
          FROM contacts c LEFT JOIN subject_keys k ON k.tenant_id = c.tenant_id AND k.subject_id = c.id
         WHERE c.id = ANY(${wanted}::uuid[])`.compile(trx),
    sql`SELECT contact_id, position, number_ciphertext FROM contact_phones
         WHERE contact_id = ANY(${wanted}::uuid[])
         ORDER BY contact_id, position`.compile(trx),
    sql`SELECT DISTINCT ON (contact_id) contact_id, action FROM consent_events
         WHERE contact_id = ANY(${wanted}::uuid[]) AND purpose = ${purpose}
         ORDER BY contact_id, recorded_at DESC, id`.compile(trx),
  ])) as [
    { id: string; status: string; time_zones: string[]; record_ciphertext: Buffer | null; tenant_key_version: number | null; wrapped_key: Buffer | null }[],
    { contact_id: string; position: number; number_ciphertext: Buffer | null }[],
    { contact_id: string; action: string }[],
  ];
  const keys = new Map<string, Buffer>();
  for (const contact of contacts) {
    if (contact.wrapped_key !== null && contact.tenant_key_version !== null) keys.set(contact.id, await crypto.keyring.openSubjectKey(trx, contact.id, contact.tenant_key_version, contact.wrapped_key));
  }
  const consentOf = new Map(consent.map((row) => [row.contact_id, row.action]));
  const phonesOf = rowsByContact(phones);
  const targets = new Map<string, Target>();
  for (const contact of contacts) {
    const key = keys.get(contact.id);
    // A contact's record is opened once for all its numbers; without a key, it has none to dial.
    const numbers = key ? openNumbers(crypto.cipher, trx.tenantId, contact.id, key, contact.record_ciphertext, phonesOf.get(contact.id) ?? []) : [];
    targets.set(contact.id, { status: contact.status, zones: contact.time_zones, numbers, consent: consentOf.get(contact.id) });
  }
  return targets;
}

/** Every check for every attempt of a batch; suppression matches are recorded as dial-time matches. */
export async function checkAtDialTime(trx: TenantTransaction, crypto: ContactsCrypto, context: DialContext, attempts: readonly ReservedAttempt[], now: Date): Promise<Map<string, DialVerdict>> {
  const verdicts = new Map<string, DialVerdict>();
  if (attempts.length === 0) return verdicts;
  const targets = await loadTargets(trx, crypto, [...new Set(attempts.map((attempt) => attempt.contactId))], context.purpose);
  const pending: { attempt: ReservedAttempt; target: Target; checks: DialCheck[] }[] = [];
  for (const attempt of attempts) {
    const checks: DialCheck[] = [];
    const refuse = (reason: DialRefusal['reason'], retryAt: Date | null = null) => verdicts.set(attempt.id, { ok: false, reason, checks, retryAt });
    const target = targets.get(attempt.contactId);
    if (!target || target.status !== 'active') {
      refuse('status');
      continue;
    }
    checks.push('status');
    if (attempt.dials >= context.maxAttempts) {
      refuse('attempts');
      continue;
    }
    checks.push('attempts');
    if (!isCallable(now, target.zones, context.windows)) {
      const next = nextCallable(now, target.zones, context.windows);
      if (next) refuse('window', next);
      else refuse('window_never');
      continue;
    }
    checks.push('window');
    // A withdrawal or an objection stops the dial; where the profile requires a lawful basis, a
    // grant must be in force.
    if ((target.consent !== undefined && target.consent !== 'grant') || (context.requiresLawfulBasis && target.consent !== 'grant')) {
      refuse('consent');
      continue;
    }
    checks.push('consent');
    if (target.numbers.length === 0) {
      refuse('number');
      continue;
    }
    checks.push('number');
    pending.push({ attempt, target, checks });
  }
  if (pending.length === 0) return verdicts;

  // Every number of the batch against every suppression in force, in one query.
  const suppressed = await matchPhonesInBulk(trx, crypto, pending.flatMap((entry) => entry.target.numbers.map((number) => number.e164)), context.campaignId);
  const matchedIds = [...new Set([...suppressed.values()].flat())];
  const expiries = new Map<string, Date | null>();
  if (matchedIds.length > 0) {
    const rows = await trx.selectFrom('suppressions').select(['id', 'expires_at']).where('id', 'in', matchedIds).execute();
    for (const row of rows) expiries.set(row.id, row.expires_at);
  }
  for (const { attempt, target, checks } of pending) {
    // Numbers in turn, from the one after the last dialed: the first that no suppression matches.
    // A number held only by expiring entries (recently abandoned: 72 h) comes back when they expire.
    let comesBack: Date | null = null;
    let permit: DialPermit | undefined;
    const matchedHere: string[] = [];
    for (let offset = 0; offset < target.numbers.length && !permit; offset += 1) {
      const candidate = target.numbers[(attempt.dials + offset) % target.numbers.length] as { position: number; e164: string };
      const matches = suppressed.get(candidate.e164) ?? [];
      if (matches.length === 0) {
        permit = { ok: true, number: candidate.e164, position: candidate.position, checks: [...checks, 'suppression'] };
        break;
      }
      matchedHere.push(...matches);
      const ends = matches.map((id) => expiries.get(id) ?? null);
      if (ends.every((end): end is Date => end !== null)) {
        const free = new Date(Math.max(...ends.map((end) => end.getTime())));
        if (comesBack === null || free < comesBack) comesBack = free;
      }
    }
    if (matchedHere.length > 0) await recordMatches(trx, [...new Set(matchedHere)], { context: 'dial', contactId: attempt.contactId, campaignId: context.campaignId });
    verdicts.set(attempt.id, permit ?? { ok: false, reason: 'suppression', checks, retryAt: comesBack });
  }
  return verdicts;
}

/**
 * Runs the checks for a round's reserved attempts and records their results: each attempt becomes
 * `dialing` (the caller then sends the dial) or `skipped`, and a skipped contact returns to the
 * hopper when a retry can help (a window that opens later, an expiring suppression) or is done.
 */
export async function admitAttempts(trx: TenantTransaction, crypto: ContactsCrypto, context: DialContext, attempts: readonly ReservedAttempt[], now: Date): Promise<Map<string, DialVerdict>> {
  const verdicts = await checkAtDialTime(trx, crypto, context, attempts, now);
  const admitted = attempts.filter((attempt) => verdicts.get(attempt.id)?.ok);
  if (admitted.length > 0) {
    const positions = admitted.map((attempt) => (verdicts.get(attempt.id) as DialPermit).position);
    const checks = (verdicts.get((admitted[0] as ReservedAttempt).id) as DialPermit).checks;
    await sql`
      UPDATE dial_attempts d SET state = 'dialing', checks = ${checks}::text[], phone_position = v.position, dialed_at = ${now}
        FROM unnest(${admitted.map((attempt) => attempt.id)}::uuid[], ${positions}::smallint[]) AS v(id, position)
       WHERE d.id = v.id`.execute(trx);
    await trx
      .updateTable('campaign_contacts')
      .set({ dials: sql<number>`dials + 1`, updated_at: now })
      .where('campaign_id', '=', context.campaignId)
      .where('contact_id', 'in', admitted.map((attempt) => attempt.contactId))
      .execute();
  }
  for (const attempt of attempts) {
    const verdict = verdicts.get(attempt.id);
    if (!verdict || verdict.ok) continue;
    await trx
      .updateTable('dial_attempts')
      .set({ state: 'skipped', outcome: 'skipped', checks: verdict.checks, skip_reason: verdict.reason, ended_at: now })
      .where('id', '=', attempt.id)
      .execute();
    await releaseContact(trx, context.campaignId, attempt.contactId, { nextAt: verdict.retryAt, outcome: `skipped:${verdict.reason}`, now });
  }
  return verdicts;
}
