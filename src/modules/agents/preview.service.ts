import { sql } from '../../db/kysely.ts';
import type { TenantTransaction } from '../../db/tenant-db.ts';
import { AppError } from '../../server/errors.ts';
import { loadCampaign, settingsOf } from '../campaigns/campaign-settings.ts';
import { setAgentState } from './agent-states.ts';

/**
 * Preview dialing, the agent's side. An agent available on an active preview campaign is shown
 * one due contact at a time, held for them alone for HOLD_MS (two agents are never shown the same
 * person, and a personal callback is shown only to its agent). The agent then chooses:
 *
 * - **call**: the contact is marked requested and the agent is held (`reserved`) for that call; the
 *   campaign's dialer places it through the same reservation and dial-time checks as any dial
 *   (src/dialer/preview.ts), and the person, when they answer, goes to this agent;
 * - **skip**: the hold ends and the contact is due again after SKIP_DELAY_MS (not an attempt: no
 *   number was dialed);
 * - **cancel** a call asked for but not yet placed.
 *
 * Each choice locks the contact's row first (the dialer's reservation skips a locked row), then
 * acts on what it finds: a double click is answered as a repeat and changes nothing, a call the
 * dialer has already taken cannot be taken back, and a contact another agent holds by now is not
 * found. A hold that ran out stays mine until another agent is shown the contact.
 */
export const HOLD_MS = 10 * 60_000;
export const SKIP_DELAY_MS = 30 * 60_000;
/** A personal callback its agent has not taken this long after it fell due is shown to the others too. */
export const CALLBACK_GRACE_MS = 15 * 60_000;

export type Held = { campaignId: string; contactId: string; holdUntil: Date; requestedAt: Date | null; callback: boolean };

const heldColumns = ['campaign_id', 'contact_id', 'preview_until', 'dial_requested_at', 'callback_agent_id'] as const;
type HeldRow = { campaign_id: string; contact_id: string; preview_until: Date | null; dial_requested_at: Date | null; callback_agent_id: string | null };
const toHeld = (row: HeldRow): Held => ({ campaignId: row.campaign_id, contactId: row.contact_id, holdUntil: row.preview_until ?? new Date(0), requestedAt: row.dial_requested_at, callback: row.callback_agent_id !== null });

/** The contact I hold (shown to me, not yet dialed), if any. */
export async function heldBy(trx: TenantTransaction, userId: string): Promise<Held | undefined> {
  const row = await trx.selectFrom('campaign_contacts').select(heldColumns).where('preview_agent_id', '=', userId).where('state', '=', 'ready').executeTakeFirst();
  return row ? toHeld(row) : undefined;
}

/** Ends my holds that were not asked to be dialed (I paused, went offline or changed campaign). */
export async function releaseHolds(trx: TenantTransaction, userId: string, now: Date, keepCampaign?: string): Promise<void> {
  let release = trx
    .updateTable('campaign_contacts')
    .set({ preview_agent_id: null, preview_until: null, updated_at: now })
    .where('preview_agent_id', '=', userId)
    .where('state', '=', 'ready')
    .where('dial_requested_at', 'is', null);
  if (keepCampaign !== undefined) release = release.where('campaign_id', '<>', keepCampaign);
  await release.execute();
}

/**
 * The contact to show me next: the one I hold already (its hold renewed), or the next due one —
 * my personal callbacks first, then by when each is due. Undefined when nothing is due.
 */
export async function claimNext(trx: TenantTransaction, userId: string, now: Date): Promise<Held | undefined> {
  // The agent's row, locked: two claims of one agent (two tabs) run one after the other.
  const agent = await trx.selectFrom('agent_states').select(['state', 'campaign_id']).where('user_id', '=', userId).forUpdate().executeTakeFirst();
  if (!agent?.campaign_id || agent.state !== 'available') throw new AppError('invalid_transition', 'Go available on a preview campaign to be shown contacts.');
  const campaign = await loadCampaign(trx, agent.campaign_id);
  if (settingsOf(campaign).mode !== 'preview') throw new AppError('invalid_transition', 'This campaign dials by itself; its calls come to you connected.');
  if (campaign.state !== 'active') throw new AppError('invalid_transition', 'The campaign is not running.');
  const holdUntil = new Date(now.getTime() + HOLD_MS);
  const mine = await heldBy(trx, userId);
  if (mine?.campaignId === campaign.id) {
    await trx.updateTable('campaign_contacts').set({ preview_until: holdUntil }).where('campaign_id', '=', campaign.id).where('contact_id', '=', mine.contactId).execute();
    return { ...mine, holdUntil };
  }
  if (mine) await releaseHolds(trx, userId, now);
  // The pick is a materialised CTE: evaluated once. (A LIMIT subquery joined in the UPDATE may be
  // rescanned per row, and with SKIP LOCKED a rescan passes over the row just claimed to the next.)
  const claimed = await sql<HeldRow>`
    WITH picked AS MATERIALIZED (
      SELECT cc.contact_id FROM campaign_contacts cc
        JOIN contacts ct ON ct.id = cc.contact_id
       WHERE cc.campaign_id = ${campaign.id} AND cc.state = 'ready' AND cc.next_at <= ${now}
         -- Only people who may be called are shown (not restricted, not do-not-contact, not erased).
         AND ct.status = 'active'
         AND (cc.preview_agent_id IS NULL OR (cc.preview_until < ${now} AND cc.dial_requested_at IS NULL))
         AND (cc.callback_agent_id IS NULL OR cc.callback_agent_id = ${userId} OR cc.next_at < ${new Date(now.getTime() - CALLBACK_GRACE_MS)})
       ORDER BY (cc.callback_agent_id = ${userId}) IS TRUE DESC, cc.next_at, cc.contact_id
       LIMIT 1 FOR UPDATE OF cc SKIP LOCKED)
    UPDATE campaign_contacts c SET preview_agent_id = ${userId}, preview_until = ${holdUntil}, updated_at = ${now}
      FROM picked
     WHERE c.campaign_id = ${campaign.id} AND c.contact_id = picked.contact_id
    RETURNING c.campaign_id, c.contact_id, c.preview_until, c.dial_requested_at, c.callback_agent_id`.execute(trx);
  const row = claimed.rows[0];
  return row ? toHeld(row) : undefined;
}

/** The contact I hold, by id, locked; not found for anyone else's (ids cannot be probed). */
async function myHold(trx: TenantTransaction, userId: string, contactId: string): Promise<HeldRow & { state: string }> {
  const row = await trx
    .selectFrom('campaign_contacts')
    .select([...heldColumns, 'state'])
    .where('contact_id', '=', contactId)
    .where('preview_agent_id', '=', userId)
    .forUpdate()
    .executeTakeFirst();
  if (!row) throw new AppError('not_found', 'No contact of yours with this id: it may have been shown to another agent.');
  return row;
}

/** I choose to call the contact I hold: it is requested, and I am held for the call. A repeat changes nothing. */
export async function requestDial(trx: TenantTransaction, userId: string, contactId: string, now: Date): Promise<{ campaignId: string; repeated: boolean }> {
  const row = await myHold(trx, userId, contactId);
  if (row.dial_requested_at !== null || row.state !== 'ready') return { campaignId: row.campaign_id, repeated: true };
  // Only on the running preview campaign I am on: a request nobody would place would hold me for nothing.
  const campaign = await loadCampaign(trx, row.campaign_id);
  const agent = await trx.selectFrom('agent_states').select('campaign_id').where('user_id', '=', userId).executeTakeFirst();
  if (campaign.state !== 'active' || settingsOf(campaign).mode !== 'preview' || agent?.campaign_id !== campaign.id) {
    throw new AppError('invalid_transition', 'Calls are placed only on the running preview campaign you are available on.');
  }
  await trx
    .updateTable('campaign_contacts')
    .set({ dial_requested_at: now, next_at: now, preview_until: new Date(now.getTime() + HOLD_MS), updated_at: now })
    .where('campaign_id', '=', row.campaign_id)
    .where('contact_id', '=', contactId)
    .execute();
  // From available only: an agent on a call, in wrap-up or paused cannot start another.
  await setAgentState(trx, userId, { state: 'reserved', campaignId: row.campaign_id, now });
  return { campaignId: row.campaign_id, repeated: false };
}

/** I take back a call I asked for that the dialer has not placed yet; I am available again. */
export async function cancelDial(trx: TenantTransaction, userId: string, contactId: string, now: Date): Promise<{ campaignId: string; repeated?: boolean }> {
  const row = await myHold(trx, userId, contactId);
  if (row.state !== 'ready') throw new AppError('invalid_transition', 'The call is already being dialed; hang up to end it.');
  if (row.dial_requested_at === null) return { campaignId: row.campaign_id, repeated: true };
  await trx
    .updateTable('campaign_contacts')
    .set({ dial_requested_at: null, updated_at: now })
    .where('campaign_id', '=', row.campaign_id)
    .where('contact_id', '=', contactId)
    .where('state', '=', 'ready')
    .execute();
  const freed = await trx.selectFrom('agent_states').select('state').where('user_id', '=', userId).where('state', '=', 'reserved').where('attempt_id', 'is', null).executeTakeFirst();
  if (freed) await setAgentState(trx, userId, { state: 'available', now });
  return { campaignId: row.campaign_id };
}

/** I pass the contact I hold over: no call, and it is due again after SKIP_DELAY_MS. */
export async function skipContact(trx: TenantTransaction, userId: string, contactId: string, now: Date): Promise<{ campaignId: string }> {
  const row = await myHold(trx, userId, contactId);
  if (row.state !== 'ready' || row.dial_requested_at !== null) throw new AppError('invalid_transition', 'A call was asked for this contact; cancel it first.');
  await trx
    .updateTable('campaign_contacts')
    .set({ preview_agent_id: null, preview_until: null, next_at: new Date(now.getTime() + SKIP_DELAY_MS), last_outcome: 'preview_skipped', updated_at: now })
    .where('campaign_id', '=', row.campaign_id)
    .where('contact_id', '=', contactId)
    .execute();
  return { campaignId: row.campaign_id };
}

/**
 * What became of the last call I chose that did not reach me (the desktop says it once the preview
 * moves on): refused at dial time and why, or unanswered. Only the last few minutes.
 */
export async function lastUnconnectedDial(trx: TenantTransaction, userId: string, now: Date): Promise<{ attemptId: string; contactId: string | null; outcome: string | null; reason: string | null; at: Date } | undefined> {
  const row = await trx
    .selectFrom('dial_attempts')
    .select(['id', 'contact_id', 'outcome', 'skip_reason', 'ended_at', 'connect_ms'])
    .where('requested_by', '=', userId)
    .where('reserved_at', '>', new Date(now.getTime() - 10 * 60_000))
    .orderBy('reserved_at', 'desc')
    .limit(1)
    .executeTakeFirst();
  if (!row || row.ended_at === null || row.connect_ms !== null) return undefined;
  return { attemptId: row.id, contactId: row.contact_id, outcome: row.outcome, reason: row.skip_reason, at: row.ended_at };
}

/**
 * A campaign paused (or no longer in preview): calls asked for and not yet placed are not placed;
 * their agents are available again and the contacts stay shown to them.
 */
export async function dropRequests(trx: TenantTransaction, campaignId: string, now: Date): Promise<number> {
  const dropped = await trx
    .updateTable('campaign_contacts')
    .set({ dial_requested_at: null, updated_at: now })
    .where('campaign_id', '=', campaignId)
    .where('state', '=', 'ready')
    .where('dial_requested_at', 'is not', null)
    .returning('preview_agent_id')
    .execute();
  for (const { preview_agent_id: agentId } of dropped) {
    if (!agentId) continue;
    const waiting = await trx.selectFrom('agent_states').select('user_id').where('user_id', '=', agentId).where('state', '=', 'reserved').where('attempt_id', 'is', null).executeTakeFirst();
    if (waiting) await setAgentState(trx, agentId, { state: 'available', now });
  }
  return dropped.length;
}
