import { sql } from '../db/kysely.ts';
import type { TenantTransaction } from '../db/tenant-db.ts';
import { moveAgentOfCall } from '../modules/agents/agent-states.ts';
import { publish } from '../realtime/realtime.ts';
import type { DialVerdict } from './dial-checks.ts';
import { releaseContact, type ReservedAttempt } from './hopper.ts';

/**
 * The dialer's side of preview dialing. An agent saw a contact and chose to call it (that agent is
 * then `reserved`, held for this one call, with no attempt yet); the campaign's dialer reserves the
 * contact like any other and, in the same transaction, binds each attempt to its agent (the agent's
 * row names the attempt, so every later step of the call — connect, wrap-up, release, a takeover
 * by another node that settles the attempt — finds the agent as for a dialer-chosen one). An agent
 * no longer waiting for it (the request was taken back as the dialer reserved) is not dialed for:
 * that attempt is settled as skipped and its contact is due again at once.
 */
export async function bindRequestingAgents(trx: TenantTransaction, campaignId: string, attempts: readonly ReservedAttempt[], now: Date): Promise<ReservedAttempt[]> {
  const requested = attempts.filter((attempt) => attempt.requestedBy);
  if (requested.length === 0) return [...attempts];
  const bound = await sql<{ attempt_id: string }>`
    UPDATE agent_states a SET attempt_id = v.attempt_id
      FROM unnest(${requested.map((attempt) => attempt.id)}::uuid[], ${requested.map((attempt) => attempt.requestedBy)}::uuid[]) AS v(attempt_id, user_id)
     WHERE a.user_id = v.user_id AND a.campaign_id = ${campaignId} AND a.state = 'reserved' AND a.attempt_id IS NULL
    RETURNING a.attempt_id`.execute(trx);
  const ready = new Set(bound.rows.map((row) => row.attempt_id));
  for (const attempt of requested) {
    if (ready.has(attempt.id)) continue;
    await trx.updateTable('dial_attempts').set({ state: 'skipped', outcome: 'skipped', skip_reason: 'agent_gone', ended_at: now }).where('id', '=', attempt.id).execute();
    await releaseContact(trx, campaignId, attempt.contactId, { nextAt: now, outcome: 'skipped:agent_gone', now });
  }
  return attempts.filter((attempt) => !attempt.requestedBy || ready.has(attempt.id));
}

/**
 * Tells each requesting agent what became of their choice, in the admission transaction: a dial
 * that passed its checks is announced as dialing (the desktop shows the call from then on); one the
 * checks refused frees the agent, and the refusal (its reason) is what the desktop shows next.
 */
export async function announceRequestedDials(trx: TenantTransaction, campaignId: string, attempts: readonly ReservedAttempt[], verdicts: ReadonlyMap<string, DialVerdict>, now: Date): Promise<void> {
  for (const attempt of attempts) {
    const agentId = attempt.requestedBy;
    const verdict = verdicts.get(attempt.id);
    if (!agentId || !verdict) continue;
    if (!verdict.ok) await moveAgentOfCall(trx, agentId, attempt.id, { state: 'available', now });
    await publish(trx, { topic: 'call', attemptId: attempt.id, campaignId, agentId, state: verdict.ok ? 'dialing' : 'skipped', outcome: verdict.ok ? null : `skipped:${verdict.reason}`, at: now.toISOString() });
  }
}
