import { randomUUID } from 'node:crypto';
import { sql, type Selectable } from '../db/kysely.ts';
import type { TenantTransaction } from '../db/tenant-db.ts';
import type { PrivacyRequestKind, PrivacyRequestsTable, RequestChannel, VerificationMethod } from '../db/schema.ts';
import { AppError } from '../server/errors.ts';
import { isUniqueViolation, tenantDefaultRegion, type ContactsCrypto } from '../modules/contacts/contacts.service.ts';
import { findContactIdsByEmail, findContactIdsByPhone } from '../modules/contacts/contact-search.ts';
import { normaliseEmail, normalisePhone } from '../modules/contacts/phone.ts';

/**
 * Data-subject requests as cases (Art. 12, 15–21): intake, a recorded identity check, the
 * one-month deadline (extended by up to two further months, with a reason), the officer in charge,
 * a timeline, and the subjects found.
 *
 * Nothing about whether the subject exists is disclosed before the requester's identity is
 * verified: intake answers the same either way, and the search through the blind indexes runs at
 * verification. The requester's details and the identifiers they gave are personal data, sealed
 * under the tenant data key; the duplicate check uses a keyed hash of them.
 */

export type Requester = { name: string; email?: string | undefined; phone?: string | undefined; address?: string | undefined };
export type Identifiers = { phone?: string | undefined; region?: string | undefined; email?: string | undefined; externalId?: string | undefined };
type Sealed = { requester: Requester; identifiers: { phone?: string; email?: string; externalId?: string } };

export type NewRequest = {
  kind: PrivacyRequestKind;
  channel: RequestChannel;
  requester: Requester;
  identifiers: Identifiers;
  receivedAt: Date;
  officerId?: string | undefined;
};

export type RequestRow = Selectable<PrivacyRequestsTable>;

/** `months` calendar months after `from`, on the same day or the month's last (31 Jan + 1 → 28/29 Feb). */
export function addMonths(from: Date, months: number): Date {
  const target = new Date(Date.UTC(from.getUTCFullYear(), from.getUTCMonth() + months, 1, from.getUTCHours(), from.getUTCMinutes(), from.getUTCSeconds(), from.getUTCMilliseconds()));
  const lastDay = new Date(Date.UTC(target.getUTCFullYear(), target.getUTCMonth() + 1, 0)).getUTCDate();
  target.setUTCDate(Math.min(from.getUTCDate(), lastDay));
  return target;
}

const requesterAt = (id: string) => ({ table: 'privacy_requests', recordId: id, field: 'requester' });

/** The identifiers normalised (E.164, lower-cased e-mail); a clear error for one that is not valid. */
async function normaliseIdentifiers(trx: TenantTransaction, identifiers: Identifiers): Promise<Sealed['identifiers']> {
  const out: Sealed['identifiers'] = {};
  if (identifiers.phone !== undefined) {
    const phone = normalisePhone(identifiers.phone, identifiers.region ?? (await tenantDefaultRegion(trx)));
    if (typeof phone === 'string') throw new AppError('phone_invalid', undefined, [{ path: 'body/identifiers/phone', message: phone }]);
    out.phone = phone.e164;
  }
  if (identifiers.email !== undefined) {
    const email = normaliseEmail(identifiers.email);
    if (!email) throw new AppError('email_invalid', undefined, [{ path: 'body/identifiers/email', message: 'not an e-mail address' }]);
    out.email = email;
  }
  if (identifiers.externalId !== undefined) out.externalId = identifiers.externalId.trim();
  if (Object.keys(out).length === 0) throw new AppError('validation_failed', 'Give at least one identifier of the subject: phone, email or externalId.', [{ path: 'body/identifiers', message: 'at least one of phone, email, externalId' }]);
  return out;
}

async function nextReference(trx: TenantTransaction, prefix: 'DSR' | 'BR' | 'INC', table: 'privacy_requests' | 'breaches' | 'incidents', at: Date): Promise<string> {
  const year = at.getUTCFullYear();
  // One writer at a time per tenant and register, so two intakes never take the same number.
  await sql`SELECT pg_advisory_xact_lock(hashtext(${`${trx.tenantId}:${table}`}))`.execute(trx);
  const pattern = `${prefix}-${year}-%`;
  const last = await sql<{ n: number | null }>`SELECT max(split_part(reference, '-', 3)::int) AS n FROM ${sql.table(table)} WHERE reference LIKE ${pattern}`.execute(trx);
  const next = (last.rows[0]?.n ?? 0) + 1;
  return `${prefix}-${year}-${String(next).padStart(prefix === 'DSR' ? 4 : 3, '0')}`;
}

export async function nextBreachReference(trx: TenantTransaction, at: Date): Promise<string> {
  return nextReference(trx, 'BR', 'breaches', at);
}

/** The next security incident reference of the year (INC-2026-001). */
export async function nextIncidentReference(trx: TenantTransaction, at: Date): Promise<string> {
  return nextReference(trx, 'INC', 'incidents', at);
}

export async function addRequestEvent(trx: TenantTransaction, requestId: string, actor: string, step: string, details: Record<string, unknown> = {}): Promise<void> {
  await trx.insertInto('privacy_request_events').values({ request_id: requestId, actor, step, details: JSON.stringify(details) }).execute();
}

export async function createRequest(trx: TenantTransaction, crypto: ContactsCrypto, request: NewRequest, actor: string): Promise<RequestRow> {
  const identifiers = await normaliseIdentifiers(trx, request.identifiers);
  const duplicateKey = await crypto.cipher.blindIndex(trx, 'privacy-request', JSON.stringify([request.kind, identifiers.phone ?? null, identifiers.email ?? null, identifiers.externalId ?? null]), 32);
  const open = await trx.selectFrom('privacy_requests').select('reference').where('duplicate_key', '=', duplicateKey).where('status', 'in', ['received', 'verified']).executeTakeFirst();
  if (open) throw new AppError('request_duplicate', `Request ${open.reference} already asks for this and is still open.`);
  if (request.officerId) await requirePrivacyOfficer(trx, request.officerId);
  const id = randomUUID();
  const sealed: Sealed = { requester: request.requester, identifiers };
  const ciphertext = await crypto.cipher.encrypt(trx, requesterAt(id), JSON.stringify(sealed));
  const reference = await nextReference(trx, 'DSR', 'privacy_requests', request.receivedAt);
  try {
    const row = await trx
      .insertInto('privacy_requests')
      .values({
        id,
        reference,
        kind: request.kind,
        channel: request.channel,
        requester_ciphertext: ciphertext,
        duplicate_key: duplicateKey,
        officer_id: request.officerId ?? null,
        received_at: request.receivedAt,
        due_at: addMonths(request.receivedAt, 1),
      })
      .returningAll()
      .executeTakeFirstOrThrow();
    await addRequestEvent(trx, id, actor, 'received', { kind: request.kind, channel: request.channel });
    return row;
  } catch (error) {
    if (isUniqueViolation(error, 'privacy_requests_open_duplicate')) throw new AppError('request_duplicate', 'An open request already asks for this.');
    throw error;
  }
}

async function requirePrivacyOfficer(trx: TenantTransaction, userId: string): Promise<void> {
  const user = await trx.selectFrom('users').select(['role', 'status']).where('id', '=', userId).executeTakeFirst();
  if (!user || user.status !== 'active' || (user.role !== 'privacy_officer' && user.role !== 'owner')) {
    throw new AppError('validation_failed', 'The officer in charge must be an active privacy officer (or the owner).', [{ path: 'body/officerId', message: 'not an active privacy officer' }]);
  }
}

export async function loadRequest(trx: TenantTransaction, id: string, options: { forUpdate?: boolean } = {}): Promise<RequestRow> {
  let query = trx.selectFrom('privacy_requests').selectAll().where('id', '=', id);
  if (options.forUpdate) query = query.forUpdate();
  const row = await query.executeTakeFirst();
  if (!row) throw new AppError('not_found');
  return row;
}

/** The officer's note of how the identity was proved, if one was given. */
export async function openVerificationNote(trx: TenantTransaction, crypto: ContactsCrypto, row: RequestRow): Promise<string | null> {
  if (!row.verification_note_ciphertext) return null;
  return crypto.cipher.decrypt(trx, { table: 'privacy_requests', recordId: row.id, field: 'verification_note' }, row.verification_note_ciphertext);
}

export async function openRequester(trx: TenantTransaction, crypto: ContactsCrypto, row: RequestRow): Promise<Sealed> {
  return JSON.parse(await crypto.cipher.decrypt(trx, requesterAt(row.id), row.requester_ciphertext)) as Sealed;
}

const isOpen = (row: RequestRow) => row.status === 'received' || row.status === 'verified';

function requireOpen(row: RequestRow): void {
  if (!isOpen(row)) throw new AppError('invalid_transition', `Request ${row.reference} is ${row.status}.`);
}

export function requireVerified(row: RequestRow): void {
  requireOpen(row);
  if (row.status !== 'verified') throw new AppError('request_not_verified', 'Record how the requester proved who they are first.');
}

/**
 * Records the identity check, then finds the subject: every contact matching any identifier
 * given (phone and e-mail through their blind indexes, the external id directly). Returns the
 * number of subjects found (zero is an answer too: "we hold no data about you").
 */
export async function verifyRequest(trx: TenantTransaction, crypto: ContactsCrypto, id: string, check: { method: VerificationMethod; note?: string | undefined }, actor: string): Promise<RequestRow> {
  const row = await loadRequest(trx, id, { forUpdate: true });
  requireOpen(row);
  if (row.status === 'verified') throw new AppError('invalid_transition', 'The identity is already verified.');
  const { identifiers } = await openRequester(trx, crypto, row);
  const found = new Set<string>();
  if (identifiers.phone) for (const contactId of await findContactIdsByPhone(trx, crypto, identifiers.phone, 100)) found.add(contactId);
  if (identifiers.email) for (const contactId of await findContactIdsByEmail(trx, crypto, identifiers.email, 100)) found.add(contactId);
  if (identifiers.externalId) {
    const byExternal = await trx.selectFrom('contacts').select('id').where('external_id', '=', identifiers.externalId).executeTakeFirst();
    if (byExternal) found.add(byExternal.id);
  }
  const subjects = [...found].sort();
  const note = check.note === undefined ? null : await crypto.cipher.encrypt(trx, { table: 'privacy_requests', recordId: id, field: 'verification_note' }, check.note);
  const updated = await trx
    .updateTable('privacy_requests')
    .set({ status: 'verified', verified_at: new Date(), verified_by: actor, verification_method: check.method, verification_note_ciphertext: note, subject_ids: subjects })
    .where('id', '=', id)
    .returningAll()
    .executeTakeFirstOrThrow();
  await addRequestEvent(trx, id, actor, 'verified', { method: check.method, noted: check.note !== undefined, subjectsFound: subjects.length });
  return updated;
}

/** Extends the deadline by one or two further months (Art. 12(3)), with the reason the requester is told. */
export async function extendRequest(trx: TenantTransaction, id: string, months: 1 | 2, reason: string, actor: string): Promise<RequestRow> {
  const row = await loadRequest(trx, id, { forUpdate: true });
  requireOpen(row);
  const total = row.extension_months + months;
  if (total > 2) throw new AppError('invalid_transition', `The deadline can be extended by two further months at most; ${row.extension_months} already taken.`);
  const now = new Date();
  // The requester must be told within the first month: extending after it is too late.
  if (now.getTime() > addMonths(row.received_at, 1).getTime()) throw new AppError('invalid_transition', 'An extension must be decided within the first month of the request.');
  const updated = await trx
    .updateTable('privacy_requests')
    .set({ extension_months: total, extension_reason: reason, due_at: addMonths(row.received_at, 1 + total) })
    .where('id', '=', id)
    .returningAll()
    .executeTakeFirstOrThrow();
  await addRequestEvent(trx, id, actor, 'extended', { months, total });
  return updated;
}

export async function assignRequest(trx: TenantTransaction, id: string, officerId: string, actor: string): Promise<RequestRow> {
  const row = await loadRequest(trx, id, { forUpdate: true });
  requireOpen(row);
  await requirePrivacyOfficer(trx, officerId);
  const updated = await trx.updateTable('privacy_requests').set({ officer_id: officerId }).where('id', '=', id).returningAll().executeTakeFirstOrThrow();
  await addRequestEvent(trx, id, actor, 'assigned', { officerId });
  return updated;
}

export async function closeRequest(trx: TenantTransaction, id: string, status: 'completed' | 'rejected', outcome: string, actor: string): Promise<RequestRow> {
  const row = await loadRequest(trx, id, { forUpdate: true });
  requireOpen(row);
  if (status === 'completed' && row.status !== 'verified') throw new AppError('request_not_verified', 'A request is completed only for a verified requester; reject it otherwise, with the reason.');
  const updated = await trx.updateTable('privacy_requests').set({ status, outcome, closed_at: new Date() }).where('id', '=', id).returningAll().executeTakeFirstOrThrow();
  await addRequestEvent(trx, id, actor, status, {});
  return updated;
}

/** Where the case stands against its deadline. */
export function deadlineOf(row: RequestRow, now = new Date()): { dueAt: string; overdue: boolean; daysLeft: number } {
  const closedOrNow = row.closed_at ?? now;
  const overdue = closedOrNow.getTime() > row.due_at.getTime();
  return { dueAt: row.due_at.toISOString(), overdue, daysLeft: Math.ceil((row.due_at.getTime() - now.getTime()) / 86_400_000) };
}
