import { sql } from '../db/kysely.ts';
import type { TenantTransaction } from '../db/tenant-db.ts';

/**
 * The hopper: which contacts of a campaign are due, reserved exactly once. One statement picks due
 * contacts with FOR UPDATE SKIP LOCKED (a contact another dialer is reserving is passed over, not
 * waited for), marks them reserved, numbers the attempt and writes the attempt row. The attempt
 * row's key (campaign, contact, attempt number) is unique, so even a reservation that slipped past
 * the lock (a restored backup, a bug) could not produce a second attempt with the same number.
 */
export type ReservedAttempt = {
  id: string;
  contactId: string;
  attempt: number;
  dials: number;
  callbackAgentId?: string | null;
  /** Preview: the agent who chose to call this contact (the call is theirs). */
  requestedBy?: string | null;
};

/**
 * `requestedOnly` (preview campaigns): only the contacts an agent chose to call, each with that
 * agent; the others wait for an agent to see them first.
 */
export async function reserveDue(trx: TenantTransaction, campaignId: string, count: number, dialer: string, now: Date, options: { leaseOwner?: string; requestedOnly?: boolean } = {}): Promise<ReservedAttempt[]> {
  if (count <= 0) return [];
  // A dialer that runs under a lease reserves only while it holds it, with a second to spare (the
  // lease is renewed every second for three): a node that lost its campaign, or is about to,
  // stops dialing before another starts.
  const leased = options.leaseOwner === undefined
    ? sql<boolean>`true`
    : sql<boolean>`EXISTS (SELECT 1 FROM campaigns WHERE id = ${campaignId} AND dialer_owner = ${options.leaseOwner} AND dialer_lease_until > now() + interval '1 second')`;
  // Due: by its time, or (preview) because an agent asked for the call now.
  const due = options.requestedOnly === true ? sql<boolean>`dial_requested_at IS NOT NULL` : sql<boolean>`next_at <= ${now}`;
  const reserved = await sql<{ id: string; contact_id: string; attempt: number; dials: number; callback_agent_id: string | null; requested_by: string | null }>`
    WITH picked AS (
      SELECT contact_id FROM campaign_contacts
       WHERE campaign_id = ${campaignId} AND state = 'ready' AND ${due} AND ${leased}
       ORDER BY next_at, contact_id
       LIMIT ${count}
       FOR UPDATE SKIP LOCKED),
    claimed AS (
      UPDATE campaign_contacts c SET state = 'reserved', attempts = c.attempts + 1, updated_at = ${now}
        FROM picked
       WHERE c.campaign_id = ${campaignId} AND c.contact_id = picked.contact_id
      RETURNING c.contact_id, c.attempts, c.dials, c.callback_agent_id, CASE WHEN c.dial_requested_at IS NOT NULL THEN c.preview_agent_id END AS requested_by)
    INSERT INTO dial_attempts (id, campaign_id, contact_id, attempt, dialer, reserved_at, requested_by)
    SELECT gen_random_uuid(), ${campaignId}, contact_id, attempts, ${dialer}, ${now}, requested_by FROM claimed
    RETURNING id, contact_id, attempt, requested_by,
      (SELECT dials FROM claimed WHERE claimed.contact_id = dial_attempts.contact_id) AS dials,
      (SELECT callback_agent_id FROM claimed WHERE claimed.contact_id = dial_attempts.contact_id) AS callback_agent_id`.execute(trx);
  return reserved.rows.map((row) => ({ id: row.id, contactId: row.contact_id, attempt: row.attempt, dials: row.dials, callbackAgentId: row.callback_agent_id, requestedBy: row.requested_by }));
}

/** A reservation ends: the contact is due again at `nextAt`, or done with (`nextAt` null); a preview hold on it ends too. */
export async function releaseContact(
  trx: TenantTransaction,
  campaignId: string,
  contactId: string,
  result: { nextAt: Date | null; outcome: string; now: Date; callbackAgentId?: string | null },
): Promise<void> {
  await trx
    .updateTable('campaign_contacts')
    .set({
      state: result.nextAt === null ? 'done' : 'ready',
      next_at: result.nextAt ?? result.now,
      last_outcome: result.outcome,
      callback_agent_id: result.callbackAgentId ?? null,
      preview_agent_id: null,
      preview_until: null,
      dial_requested_at: null,
      updated_at: result.now,
    })
    .where('campaign_id', '=', campaignId)
    .where('contact_id', '=', contactId)
    .execute();
}
