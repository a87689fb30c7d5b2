import { sql } from '../../db/kysely.ts';
import type { TenantTransaction } from '../../db/tenant-db.ts';
import type { AgentState } from '../../db/schema.ts';
import { AppError } from '../../server/errors.ts';
import { publish } from '../../realtime/realtime.ts';

/**
 * Agents' states and the only transitions between them. Agents move themselves between offline,
 * available and paused; the dialer moves them through reserved → on call → wrap-up; wrap-up ends
 * when its timer runs out or the agent files the disposition. Every change is one conditional
 * UPDATE (the row must be in an allowed state), so two actors racing cannot leave an agent in a
 * state no transition leads to, and each change is kept for time-in-state reports.
 */
export const agentStates = ['offline', 'available', 'reserved', 'on_call', 'wrap_up', 'paused'] as const satisfies readonly AgentState[];

/** Allowed predecessors of each state. */
const from: Record<AgentState, readonly AgentState[]> = {
  offline: ['offline', 'available', 'paused', 'wrap_up'],
  available: ['offline', 'paused', 'wrap_up', 'reserved', 'available'],
  paused: ['available', 'wrap_up', 'paused', 'offline'],
  reserved: ['available'],
  on_call: ['reserved'],
  wrap_up: ['on_call', 'reserved'],
};

/** States an agent may choose; the others only the dialer sets. */
export const selfStates = ['offline', 'available', 'paused'] as const;

/**
 * What an agent may choose, from where: never away from a call the dialer has reserved them for
 * or put them on (only the dialer ends those), so no call is left with an agent who walked off.
 */
const fromBySelf: Record<(typeof selfStates)[number], readonly AgentState[]> = {
  offline: ['offline', 'available', 'paused', 'wrap_up'],
  available: ['offline', 'paused', 'wrap_up', 'available'],
  paused: ['available', 'wrap_up', 'paused', 'offline'],
};

export type StateChange = {
  state: AgentState;
  reason?: string | null;
  campaignId?: string | null;
  attemptId?: string | null;
  wrapUpUntil?: Date | null;
  now: Date;
};

/**
 * Moves an agent to `change.state`, or fails with invalid_transition naming the current state.
 * `by: 'agent'` is the agent's own choice (the API), held to the agent's transitions.
 */
export async function setAgentState(trx: TenantTransaction, userId: string, change: StateChange, by: 'agent' | 'system' = 'system'): Promise<void> {
  if (change.state === 'paused' && !change.reason) throw new AppError('validation_failed', 'A pause needs a reason code.');
  const allowed = by === 'agent' ? (fromBySelf[change.state as (typeof selfStates)[number]] ?? []) : from[change.state];
  const updated = await trx
    .updateTable('agent_states')
    .set({
      state: change.state,
      reason: change.state === 'paused' ? (change.reason ?? null) : null,
      ...(change.campaignId !== undefined ? { campaign_id: change.campaignId } : {}),
      attempt_id: change.attemptId ?? null,
      // Away from a call, no inbound call is in hand either.
      ...(change.state === 'available' || change.state === 'paused' || change.state === 'offline' ? { inbound_call_id: null } : {}),
      wrap_up_until: change.wrapUpUntil ?? null,
      since: change.now,
    })
    .where('user_id', '=', userId)
    .where('state', 'in', allowed)
    .returning(['user_id', 'campaign_id'])
    .executeTakeFirst();
  if (!updated) {
    const current = await trx.selectFrom('agent_states').select('state').where('user_id', '=', userId).executeTakeFirst();
    if (!current && allowed.includes('offline')) {
      await trx
        .insertInto('agent_states')
        .values({ user_id: userId, state: change.state, reason: change.state === 'paused' ? (change.reason ?? null) : null, campaign_id: change.campaignId ?? null, since: change.now })
        .execute();
    } else {
      throw new AppError('invalid_transition', `The agent is ${current?.state ?? 'offline'}; it cannot become ${change.state} from there.`);
    }
  }
  const reason = change.state === 'paused' ? (change.reason ?? null) : null;
  await trx.insertInto('agent_state_changes').values({ user_id: userId, state: change.state, reason, at: change.now }).execute();
  await publish(trx, { topic: 'agent.state', agentId: userId, state: change.state, reason, campaignId: updated?.campaign_id ?? change.campaignId ?? null, at: change.now.toISOString() });
}

/**
 * Moves the agent of one call along it (on the call, then wrap-up, or free again when the call
 * ended before it reached them) — only while the agent is still held for that very call. Returns
 * whether the agent moved; a call's record never depends on it.
 */
export async function moveAgentOfCall(trx: TenantTransaction, userId: string, attemptId: string, change: { state: 'on_call' | 'wrap_up' | 'available'; wrapUpUntil?: Date | null; now: Date }): Promise<boolean> {
  const moved = await trx
    .updateTable('agent_states')
    .set({ state: change.state, attempt_id: change.state === 'available' ? null : attemptId, wrap_up_until: change.wrapUpUntil ?? null, reason: null, since: change.now })
    .where('user_id', '=', userId)
    .where('attempt_id', '=', attemptId)
    .where('state', 'in', change.state === 'on_call' ? ['reserved'] : ['reserved', 'on_call'])
    .returning('campaign_id')
    .executeTakeFirst();
  if (!moved) return false;
  await trx.insertInto('agent_state_changes').values({ user_id: userId, state: change.state, reason: null, at: change.now }).execute();
  await publish(trx, { topic: 'agent.state', agentId: userId, state: change.state, reason: null, campaignId: moved.campaign_id, at: change.now.toISOString() });
  return true;
}

/**
 * Reserves the longest-idle available agent of a campaign for a call (SKIP LOCKED: two dialers
 * never get the same agent). Returns the agent's user id, or undefined when none is free.
 */
export async function reserveLongestIdle(trx: TenantTransaction, campaignId: string, attemptId: string, now: Date, preferredAgentId?: string): Promise<string | undefined> {
  // A personal callback goes to its agent when that agent is available; otherwise to anyone.
  // A materialised CTE: the pick runs once (a LIMIT subquery joined in the UPDATE may be rescanned,
  // and with SKIP LOCKED a rescan would pass over the agent just reserved to a second one).
  const reserved = await sql<{ user_id: string }>`
    WITH picked AS MATERIALIZED (
      SELECT user_id FROM agent_states
       WHERE campaign_id = ${campaignId} AND state = 'available'
       ORDER BY (user_id = ${preferredAgentId ?? null}::uuid) IS TRUE DESC, since, user_id LIMIT 1 FOR UPDATE SKIP LOCKED)
    UPDATE agent_states a SET state = 'reserved', attempt_id = ${attemptId}, since = ${now}
      FROM picked
     WHERE a.user_id = picked.user_id
    RETURNING a.user_id`.execute(trx);
  const userId = reserved.rows[0]?.user_id;
  // Reserved lasts the moment it takes to connect the call: kept for reports, not announced (the
  // on-call state that follows is).
  if (userId) await trx.insertInto('agent_state_changes').values({ user_id: userId, state: 'reserved', reason: null, at: now }).execute();
  return userId;
}

/** Agents whose wrap-up has run out become available; returns how many. */
export async function endExpiredWrapUps(trx: TenantTransaction, campaignId: string, now: Date): Promise<number> {
  const ended = await trx
    .updateTable('agent_states')
    .set({ state: 'available', wrap_up_until: null, attempt_id: null, since: now })
    .where('campaign_id', '=', campaignId)
    .where('state', '=', 'wrap_up')
    .where('wrap_up_until', '<=', now)
    .returning('user_id')
    .execute();
  if (ended.length > 0) await trx.insertInto('agent_state_changes').values(ended.map((agent) => ({ user_id: agent.user_id, state: 'available' as const, reason: null, at: now }))).execute();
  for (const agent of ended) await publish(trx, { topic: 'agent.state', agentId: agent.user_id, state: 'available', reason: null, campaignId, at: now.toISOString() });
  return ended.length;
}

export type FloorAgents = { logged: number; idle: number; talkingElapsedMs: number[]; wrapRemainingMs: number[] };

/** The campaign's agents as the pacer sees them. */
export async function floorAgents(trx: TenantTransaction, campaignId: string, now: number): Promise<FloorAgents> {
  const rows = await trx.selectFrom('agent_states').select(['state', 'since', 'wrap_up_until']).where('campaign_id', '=', campaignId).where('state', '<>', 'offline').execute();
  const floor: FloorAgents = { logged: 0, idle: 0, talkingElapsedMs: [], wrapRemainingMs: [] };
  for (const row of rows) {
    if (row.state === 'paused') continue;
    floor.logged += 1;
    if (row.state === 'available') floor.idle += 1;
    else if (row.state === 'on_call' || row.state === 'reserved') floor.talkingElapsedMs.push(Math.max(0, now - row.since.getTime()));
    else if (row.state === 'wrap_up') floor.wrapRemainingMs.push(Math.max(0, (row.wrap_up_until?.getTime() ?? now) - now));
  }
  return floor;
}
