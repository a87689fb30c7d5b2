import type { TenantTransaction } from '../db/tenant-db.ts';
import type { AttemptOutcome } from '../db/schema.ts';
import { recordAuditEvent } from '../audit/audit-event.ts';
import { publish } from '../realtime/realtime.ts';
import type { ContactsCrypto } from '../modules/contacts/contacts.service.ts';
import { addSuppression } from '../modules/suppression/suppression.service.ts';
import { moveAgentOfCall } from '../modules/agents/agent-states.ts';
import type { CampaignSettings, JurisdictionProfile, RetryOutcome, RetryRule } from '../modules/campaigns/campaign-settings.ts';
import { releaseContact } from './hopper.ts';

/** What the dialer knows of a call when it ends (times in provider milliseconds). */
export type EndedCall = {
  attemptId: string;
  contactId: string;
  /** The number dialed: used only for the abandon lockout, never written in clear. */
  number: string;
  checks: string[];
  dialedAt: number;
  ringingAt?: number;
  answeredAt?: number;
  amd?: 'human' | 'machine' | 'unknown';
  /** When the person became ready for an agent (answer, or the detector's "human"). */
  readyAt?: number;
  agentId?: string;
  /** Preview: the agent who chose to dial, held for the call from the dial on. */
  requestedBy?: string;
  connectedAt?: number;
  informationMessage: boolean;
};

export type CallEnd = {
  call: EndedCall;
  outcome: AttemptOutcome;
  raw: { sipStatus: number; q850: number; reason: string };
  talkMs: number;
  endedAtMs: number;
  campaignId: string;
  dialerId: string;
  settings?: Pick<CampaignSettings, 'wrapUpMs'> & { retryRules: Record<RetryOutcome, RetryRule> };
  profile?: JurisdictionProfile;
};

/**
 * Everything a call's end writes, in the caller's transaction: the attempt's record, the agent's
 * wrap-up (or release), when the contact is due again, the abandon lockout, the realtime event,
 * and the compliance record in the audit ledger. Returns false, writing nothing, when the attempt
 * was already settled (by a node that took the campaign over): that record stands.
 */
export async function recordCallEnd(trx: TenantTransaction, crypto: ContactsCrypto, end: CallEnd): Promise<boolean> {
  const { call, outcome, raw, endedAtMs, campaignId, dialerId, settings, profile } = end;
  const endedAt = new Date(endedAtMs);
  // Provider times may carry fractions of a millisecond; the record keeps whole milliseconds.
  const ringMs = Math.round(Math.max(0, (call.answeredAt ?? endedAtMs) - (call.ringingAt ?? call.dialedAt)));
  const connectMs = call.connectedAt !== undefined && call.readyAt !== undefined ? Math.round(call.connectedAt - call.readyAt) : null;
  const reachedAgent = call.connectedAt !== undefined;
  const updated = await trx
    .updateTable('dial_attempts')
    .set({
      state: 'ended',
      outcome,
      answered_at: call.answeredAt === undefined ? null : new Date(call.answeredAt),
      ring_ms: ringMs,
      amd_result: call.amd ?? null,
      agent_id: reachedAgent ? (call.agentId ?? null) : null,
      connect_ms: connectMs,
      information_message: call.informationMessage,
      raw_cause: JSON.stringify(raw),
      ended_at: endedAt,
      talk_ms: Math.round(end.talkMs),
    })
    .where('id', '=', call.attemptId)
    .where('state', '<>', 'ended')
    .returning('id')
    .executeTakeFirst();
  if (!updated) return false;
  // The agent who took the call wraps up; one reserved for a call that ended before it was
  // bridged is free again.
  const heldAgent = call.agentId ?? call.requestedBy;
  if (heldAgent) {
    if (reachedAgent) await moveAgentOfCall(trx, heldAgent, call.attemptId, { state: 'wrap_up', wrapUpUntil: new Date(endedAtMs + (settings?.wrapUpMs ?? 0)), now: endedAt });
    else await moveAgentOfCall(trx, heldAgent, call.attemptId, { state: 'available', now: endedAt });
  }
  // A live call waits for the agent's disposition to decide what comes next; the rest follow the
  // campaign's retry rules. A person who never reached an agent (hung up within the connect limit,
  // a refused connect) is tried again like an unanswered call.
  // A preview call its agent ended while it rang is retried as unanswered (the person never picked up).
  const ruleOutcome: RetryOutcome | undefined =
    outcome === 'live' ? (reachedAgent ? undefined : 'no_answer') : outcome === 'cancelled' ? (call.requestedBy ? 'no_answer' : undefined) : (outcome as RetryOutcome);
  const rule = ruleOutcome === undefined ? undefined : settings?.retryRules[ruleOutcome];
  const nextAt = rule?.retry ? new Date(endedAtMs + rule.afterMinutes * 60_000) : null;
  await releaseContact(trx, campaignId, call.contactId, { nextAt, outcome, now: endedAt });
  if (outcome === 'abandoned' && profile?.abandonLockoutMs) {
    await addSuppression(trx, crypto, {
      channel: 'phone',
      value: call.number,
      scope: 'tenant',
      reason: 'abandoned',
      source: `abandoned call ${call.attemptId}`,
      contactId: call.contactId,
      expiresAt: new Date(endedAtMs + profile.abandonLockoutMs),
      createdBy: `dialer:${dialerId}`,
    });
  }
  // The agent who talked, or (preview) the one who chose the call, hears how it ended.
  await publish(trx, { topic: 'call', attemptId: call.attemptId, campaignId, agentId: reachedAgent ? (call.agentId ?? null) : (call.requestedBy ?? null), state: 'ended', outcome, at: endedAt.toISOString() });
  await recordAuditEvent(trx, {
    action: 'call.compliance',
    outcome: 'success',
    actor: { type: 'system', id: `dialer:${dialerId}` },
    target: { type: 'dial_attempt', id: call.attemptId },
    occurredAt: endedAt,
    details: {
      campaign: campaignId,
      contact: call.contactId,
      jurisdiction: profile?.code ?? null,
      dialedAt: new Date(call.dialedAt).toISOString(),
      ringMs,
      answered: call.answeredAt !== undefined,
      amd: call.amd ?? null,
      agentConnectMs: connectMs,
      connectLimitMs: profile?.connectLimitMs ?? null,
      abandoned: outcome === 'abandoned',
      informationMessage: call.informationMessage,
      outcome,
      cause: `${raw.sipStatus}/${raw.q850}`,
      checksPassed: call.checks.join(','),
    },
  });
  return true;
}
