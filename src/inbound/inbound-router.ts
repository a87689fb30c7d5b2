import { randomUUID } from 'node:crypto';
import { sql } from '../db/kysely.ts';
import type { Logger } from '../logger.ts';
import type { TenantDb, TenantTransaction } from '../db/tenant-db.ts';
import type { ContactsCrypto } from '../modules/contacts/contacts.service.ts';
import { phoneIndex } from '../modules/contacts/contact-record.ts';
import { moveAgentOfCall } from '../modules/agents/agent-states.ts';
import { publish } from '../realtime/realtime.ts';
import { isCallable, type CallingWindow } from '../dialer/calling-window.ts';
import type { Scheduled, VirtualClock } from '../telephony/clock.ts';
import { FINAL_EVENTS, TelephonyError, type TelephonyEvent, type TelephonyProvider } from '../telephony/provider.ts';

/**
 * Inbound queues (automatic call distribution) for one tenant. A call to a queue's number waits —
 * ringing, so a caller who gives up simply hangs up — until an agent with every skill the queue
 * needs is available; the longest-idle such agent takes it. Calls of higher-priority queues are
 * served first, then the longest wait. A caller still waiting after the queue's maximum moves to
 * its overflow queue; outside the queue's hours (in its own time zone) the caller hears the closed
 * message. Blended agents (available for a campaign and taking inbound) get inbound calls first:
 * this router reserves an agent the moment one is free, the dialer only when a person answers.
 */
export type InboundRouterOptions = {
  tenantDb: TenantDb;
  crypto: ContactsCrypto;
  provider: TelephonyProvider;
  clock: VirtualClock;
  logger: Logger;
  tickMs?: number;
};

type Queue = {
  id: string;
  number: string;
  skills: string[];
  priority: number;
  maxWaitMs: number;
  overflowQueueId: string | null;
  hours: CallingWindow[];
  timeZone: string;
};

type Waiting = { id: string; queueId: string; offeredAt: number; queuedAt: number; agentId?: string; connectedAt?: number; closed: boolean; ended: boolean; chain: Promise<void> };

export type InboundCounters = { offered: number; answered: number; abandoned: number; closed: number; overflowed: number; unknownNumber: number; errors: number };

const CLOSED_MESSAGE = 'closed-message';
const QUEUES_TTL_MS = 5_000;

export function createInboundRouter(options: InboundRouterOptions) {
  const { tenantDb, crypto, provider, clock, logger } = options;
  const tickMs = options.tickMs ?? 250;
  const calls = new Map<string, Waiting>();
  let queues = new Map<string, Queue>();
  let byNumber = new Map<string, Queue>();
  const counters: InboundCounters = { offered: 0, answered: 0, abandoned: 0, closed: 0, overflowed: 0, unknownNumber: 0, errors: 0 };
  let unsubscribe: (() => void) | undefined;
  let timer: Scheduled | undefined;
  let stopped = false;
  const now = () => new Date(clock.now());
  const inTenant = <T>(work: (trx: TenantTransaction) => Promise<T>) => tenantDb.transaction(work);

  let queuesLoadedAt = Number.NEGATIVE_INFINITY;
  async function loadQueues(): Promise<void> {
    queuesLoadedAt = performance.now();
    const rows = await tenantDb.read((trx) =>
      trx.selectFrom('queues').select(['id', 'number', 'skills', 'priority', 'max_wait_seconds', 'overflow_queue_id', 'hours', 'time_zone']).execute(),
    );
    queues = new Map(
      rows.map((row) => [
        row.id,
        { id: row.id, number: row.number, skills: row.skills, priority: row.priority, maxWaitMs: row.max_wait_seconds * 1000, overflowQueueId: row.overflow_queue_id, hours: row.hours as CallingWindow[], timeZone: row.time_zone },
      ]),
    );
    byNumber = new Map([...queues.values()].map((queue) => [queue.number, queue]));
  }

  const onChain = (call: Waiting, work: () => Promise<void>) => {
    call.chain = call.chain.then(work).catch((error: unknown) => {
      counters.errors += 1;
      logger.error({ err: error, call: call.id }, 'inbound router failed on a call');
    });
    return call.chain;
  };

  function onEvent(event: TelephonyEvent): void {
    if (event.type === 'initiated') {
      if (event.direction !== 'inbound') return;
      const queue = byNumber.get(event.to);
      if (!queue) {
        counters.unknownNumber += 1;
        return;
      }
      const call: Waiting = { id: event.legId, queueId: queue.id, offeredAt: event.at, queuedAt: event.at, closed: false, ended: false, chain: Promise.resolve() };
      calls.set(call.id, call);
      counters.offered += 1;
      void onChain(call, () => offered(call, queue, event.from));
      return;
    }
    const call = calls.get(event.legId);
    if (!call) return;
    void onChain(call, () => handle(call, event));
  }

  async function offered(call: Waiting, queue: Queue, from: string): Promise<void> {
    const open = queue.hours.length === 0 || isCallable(new Date(call.offeredAt), [queue.timeZone], [queue.hours]);
    await inTenant(async (trx) => {
      // The caller's number is kept only as its blind index (to find their calls later), never in clear.
      const callerIndex = /^\+[1-9]\d{6,14}$/.test(from) ? await phoneIndex(crypto.cipher, trx, from) : null;
      await trx.insertInto('inbound_calls').values({ id: call.id, queue_id: queue.id, first_queue_id: queue.id, caller_index: callerIndex, offered_at: new Date(call.offeredAt) }).execute();
      await publish(trx, { topic: 'inbound.call', callId: call.id, queueId: queue.id, agentId: null, state: 'queued', outcome: null, at: new Date(call.offeredAt).toISOString() });
    });
    if (open) return;
    call.closed = true;
    counters.closed += 1;
    await provider.send({ kind: 'answer', commandId: `answer:${call.id}`, legId: call.id });
    await provider.send({ kind: 'play', commandId: `closed:${call.id}`, legId: call.id, playbackId: randomUUID(), media: CLOSED_MESSAGE });
  }

  async function handle(call: Waiting, event: TelephonyEvent): Promise<void> {
    if (call.ended) return;
    if (event.type === 'play-finished' && call.closed) {
      await provider.send({ kind: 'hangup', commandId: `hangup:${call.id}`, legId: call.id }).catch(() => undefined);
      return;
    }
    if (event.type === 'bridged') {
      call.connectedAt = event.at;
      if (call.agentId) {
        const agentId = call.agentId;
        await inTenant(async (trx) => {
          await moveAgentOfCall(trx, agentId, call.id, { state: 'on_call', now: new Date(event.at) });
          await trx.updateTable('inbound_calls').set({ state: 'connected' }).where('id', '=', call.id).execute();
        });
      }
      return;
    }
    if (!FINAL_EVENTS.has(event.type)) return;
    call.ended = true;
    calls.delete(call.id);
    const endedAt = new Date(event.at);
    const outcome = call.closed ? 'closed' : call.connectedAt !== undefined ? 'answered' : 'abandoned';
    if (outcome === 'abandoned') counters.abandoned += 1;
    await inTenant(async (trx) => {
      await trx
        .updateTable('inbound_calls')
        .set({
          state: 'ended',
          outcome,
          ended_at: endedAt,
          wait_ms: Math.round((call.connectedAt ?? event.at) - call.offeredAt),
          talk_ms: call.connectedAt === undefined ? null : Math.round(event.at - call.connectedAt),
        })
        .where('id', '=', call.id)
        .where('state', '<>', 'ended')
        .execute();
      if (call.agentId) {
        if (call.connectedAt !== undefined) await moveAgentOfCall(trx, call.agentId, call.id, { state: 'wrap_up', wrapUpUntil: new Date(event.at + 10_000), now: endedAt });
        else await moveAgentOfCall(trx, call.agentId, call.id, { state: 'available', now: endedAt });
      }
      await publish(trx, { topic: 'inbound.call', callId: call.id, queueId: call.queueId, agentId: call.connectedAt === undefined ? null : (call.agentId ?? null), state: 'ended', outcome, at: endedAt.toISOString() });
    });
  }

  /** Reserves the longest-idle available agent who takes inbound calls and has every skill. */
  async function reserveAgent(trx: TenantTransaction, call: Waiting, skills: string[]): Promise<string | undefined> {
    const reserved = await sql<{ user_id: string; campaign_id: string | null }>`
      WITH picked AS MATERIALIZED (
        SELECT user_id FROM agent_states
         WHERE state = 'available' AND takes_inbound AND skills @> ${skills}::text[]
         ORDER BY since, user_id LIMIT 1 FOR UPDATE SKIP LOCKED)
      UPDATE agent_states a SET state = 'reserved', attempt_id = ${call.id}, inbound_call_id = ${call.id}, since = ${now()}
        FROM picked
       WHERE a.user_id = picked.user_id
      RETURNING a.user_id, a.campaign_id`.execute(trx);
    const agent = reserved.rows[0];
    if (!agent) return undefined;
    await trx.insertInto('agent_state_changes').values({ user_id: agent.user_id, state: 'reserved', reason: null, at: now() }).execute();
    return agent.user_id;
  }

  async function assign(call: Waiting): Promise<void> {
    if (call.ended || call.agentId || call.closed) return;
    const queue = queues.get(call.queueId);
    if (!queue) return;
    const agentId = await inTenant((trx) => reserveAgent(trx, call, queue.skills));
    if (!agentId) return;
    if (call.ended) {
      await inTenant((trx) => moveAgentOfCall(trx, agentId, call.id, { state: 'available', now: now() }));
      return;
    }
    call.agentId = agentId;
    try {
      await provider.send({ kind: 'answer', commandId: `answer:${call.id}`, legId: call.id });
      await provider.send({ kind: 'connect-to-agent', commandId: `connect:${call.id}`, legId: call.id, agentEndpoint: `agent:${agentId}` });
    } catch (error) {
      if (!(error instanceof TelephonyError)) throw error;
      // The caller hung up as the agent was found: the agent is free again.
      await inTenant((trx) => moveAgentOfCall(trx, agentId, call.id, { state: 'available', now: now() }));
      call.agentId = undefined;
      return;
    }
    counters.answered += 1;
    await inTenant(async (trx) => {
      await trx.updateTable('inbound_calls').set({ answered_at: now(), agent_id: agentId }).where('id', '=', call.id).execute();
      await publish(trx, { topic: 'inbound.call', callId: call.id, queueId: call.queueId, agentId, state: 'connected', outcome: null, at: now().toISOString() });
    });
  }

  async function tick(): Promise<void> {
    if (stopped) return;
    // Queues change rarely: re-read every few seconds, not every round.
    if (performance.now() - queuesLoadedAt >= QUEUES_TTL_MS) await loadQueues();
    const at = now();
    // Wrap-ups of inbound calls that ran out.
    await inTenant(async (trx) => {
      const ended = await trx
        .updateTable('agent_states')
        .set({ state: 'available', wrap_up_until: null, attempt_id: null, inbound_call_id: null, since: at })
        .where('state', '=', 'wrap_up')
        .where('inbound_call_id', 'is not', null)
        .where('wrap_up_until', '<=', at)
        .returning('user_id')
        .execute();
      if (ended.length > 0) await trx.insertInto('agent_state_changes').values(ended.map((agent) => ({ user_id: agent.user_id, state: 'available' as const, reason: null, at }))).execute();
    });
    const waiting = [...calls.values()].filter((call) => !call.ended && !call.closed && call.agentId === undefined);
    // Overflow: past its queue's maximum wait, a caller moves on (and waits anew there).
    for (const call of waiting) {
      const queue = queues.get(call.queueId);
      if (!queue?.overflowQueueId || clock.now() - call.queuedAt < queue.maxWaitMs) continue;
      const next = queues.get(queue.overflowQueueId);
      if (!next) continue;
      call.queueId = next.id;
      call.queuedAt = clock.now();
      counters.overflowed += 1;
      await inTenant((trx) => trx.updateTable('inbound_calls').set({ queue_id: next.id }).where('id', '=', call.id).execute());
    }
    // Higher priority first, then the longest wait.
    waiting.sort((a, b) => (queues.get(b.queueId)?.priority ?? 0) - (queues.get(a.queueId)?.priority ?? 0) || a.offeredAt - b.offeredAt);
    for (const call of waiting) await onChain(call, () => assign(call));
  }

  const schedule = () => {
    if (stopped) return;
    timer = clock.schedule(tickMs, () => {
      void tick()
        .catch((error: unknown) => {
          counters.errors += 1;
          logger.error({ err: error }, 'inbound router tick failed');
        })
        .finally(schedule);
    });
  };

  return {
    /** Follows the provider's inbound calls (tests then step with tick). */
    async listen() {
      await loadQueues();
      unsubscribe ??= provider.onEvent(onEvent);
    },
    async start() {
      await this.listen();
      schedule();
    },
    tick,
    async stop() {
      stopped = true;
      timer?.cancel();
      unsubscribe?.();
      await Promise.all([...calls.values()].map((call) => call.chain));
    },
    counters: () => ({ ...counters }),
    async settled() {
      await Promise.all([...calls.values()].map((call) => call.chain));
    },
  };
}

export type InboundRouter = ReturnType<typeof createInboundRouter>;
