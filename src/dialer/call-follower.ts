import { randomUUID } from 'node:crypto';
import type { TenantTransaction } from '../db/tenant-db.ts';
import type { AttemptOutcome } from '../db/schema.ts';
import { publish } from '../realtime/realtime.ts';
import type { JurisdictionProfile, settingsOf } from '../modules/campaigns/campaign-settings.ts';
import { moveAgentOfCall, reserveLongestIdle } from '../modules/agents/agent-states.ts';
import type { Scheduled } from '../telephony/clock.ts';
import { FINAL_EVENTS, TelephonyError, type TelephonyEvent } from '../telephony/provider.ts';
import type { CallControl } from './call-control.ts';
import { recordCallEnd, type EndedCall } from './call-record.ts';
import { recordingPaused, recordingSaved, recordingStarted } from './call-recording.ts';
import type { DialStats } from './dial-stats.ts';
import type { CampaignDialerOptions } from './campaign-dialer.ts';
import { dialerCalls } from '../operations/telemetry.ts';

/**
 * Following a campaign's calls once they are dialed: each call's provider events, in order and
 * once (duplicates and strays ignored and counted); a person (as answered, or as the detector
 * judged) goes to the longest-idle available agent — or, for a preview call, to the agent who
 * chose it — within the profile's connect limit, or hears the information message and the call is
 * recorded as abandoned; recordings follow the provider; each call ends with its record
 * (call-record.ts). The campaign dialer (campaign-dialer.ts) paces and dials; this follows.
 */
/** A call in progress: what its record will hold (EndedCall), and the dialer's own bookkeeping. */
export type Call = EndedCall & {
  answerStored?: boolean;
  /** A personal callback's agent, offered the call first. */
  preferredAgentId?: string;
  abandoned: boolean;
  connectLimit?: Scheduled;
  lastSeq: number;
  /** Events of one call are handled one after another. */
  chain: Promise<void>;
  ended: boolean;
};


export type DialerCounters = {
  dialed: number;
  skipped: number;
  connected: number;
  abandoned: number;
  ended: number;
  /** Events for calls this dialer does not know (another dialer's, or forgotten): ignored. */
  unknownEvents: number;
  /** Events seen twice (same leg, same sequence number): ignored. */
  duplicateEvents: number;
  errors: number;
};

/**
 * Counts a call event on this dialer's own counters and on the process's metric
 * (ringvakt_dialer_calls_total), which outlives any one dialer.
 */
export function countCall(counters: DialerCounters, event: 'dialed' | 'skipped' | 'connected' | 'abandoned' | 'ended' | 'errors'): void {
  counters[event] += 1;
  dialerCalls.inc({ event: event === 'errors' ? 'error' : event });
}

/** What the follower reads of the campaign as the dialer last loaded it. */
export type CallSetup = { settings?: ReturnType<typeof settingsOf>; profile?: JurisdictionProfile };

/** What the campaign's dialer shares with its follower, and the follower's own parts. */
export type CallFollowerOptions = Pick<CampaignDialerOptions, 'tenantDb' | 'crypto' | 'provider' | 'clock' | 'campaignId' | 'dialerId' | 'logger'> & {
  stats: DialStats;
  counters: DialerCounters;
  setup: () => CallSetup;
};

const INFORMATION_MESSAGE = 'information-message';

const outcomeFor: Partial<Record<TelephonyEvent['type'], AttemptOutcome>> = { busy: 'busy', 'no-answer': 'no_answer', failed: 'failed', cancelled: 'cancelled' };

export type CallFollower = ReturnType<typeof createCallFollower>;

export function createCallFollower(options: CallFollowerOptions) {
  const { tenantDb, crypto, provider, clock, campaignId, dialerId, logger, stats, counters, setup } = options;
  const calls = new Map<string, Call>();
  const waiting: Call[] = [];
  const now = () => new Date(clock.now());
  const inTenant = <T>(work: (trx: TenantTransaction) => Promise<T>) => tenantDb.transaction(work);

  function onEvent(event: TelephonyEvent): void {
    const call = calls.get(event.legId);
    if (!call) {
      counters.unknownEvents += 1;
      return;
    }
    if (event.seq <= call.lastSeq) {
      counters.duplicateEvents += 1;
      return;
    }
    call.lastSeq = event.seq;
    call.chain = call.chain.then(() => handle(call, event)).catch((error: unknown) => {
      countCall(counters, 'errors');
      logger.error({ err: error, attempt: call.attemptId, event: event.type }, 'dialer failed to handle a call event');
    });
  }

  async function handle(call: Call, event: TelephonyEvent): Promise<void> {
    if (call.ended) return;
    switch (event.type) {
      case 'ringing':
        call.ringingAt ??= event.at;
        return;
      case 'answered':
        // Stored with the first connect attempt (personReady), or at the end for a machine.
        call.answeredAt = event.at;
        if (!setup().settings?.amd) await personReady(call, event.at);
        return;
      case 'machine-detected':
        if (!event.final) return;
        call.amd = event.result;
        stats.verdict(event.at, event.result);
        if (event.result === 'machine') {
          stats.dialResolved(false);
          await provider.send({ kind: 'hangup', commandId: `hangup:${call.attemptId}`, legId: call.attemptId }).catch(() => undefined);
        } else {
          await personReady(call, event.at);
        }
        return;
      case 'bridged':
        call.connectedAt = event.at;
        countCall(counters, 'connected');
        if (call.agentId) {
          const agentId = call.agentId;
          // The recording starts with the conversation, before anything is written.
          const recording = setup().settings?.recordCalls === true;
          if (recording) {
            await provider.send({ kind: 'record-start', commandId: `record:${call.attemptId}`, legId: call.attemptId, recordingId: call.attemptId }).catch((error: unknown) => {
              logger.warn({ err: error instanceof TelephonyError ? error.code : 'provider_error', attempt: call.attemptId }, 'recording did not start');
            });
          }
          await inTenant(async (trx) => {
            await moveAgentOfCall(trx, agentId, call.attemptId, { state: 'on_call', now: new Date(event.at) });
            await trx
              .updateTable('dial_attempts')
              .set({ state: 'connected', agent_id: agentId, connect_ms: Math.round(Math.max(0, event.at - (call.readyAt ?? event.at))) })
              .where('id', '=', call.attemptId)
              .execute();
            await publish(trx, { topic: 'call', attemptId: call.attemptId, campaignId, agentId, state: 'connected', outcome: null, at: new Date(event.at).toISOString() });
            if (recording) await recordingStarted(trx, { attemptId: call.attemptId, campaignId, contactId: call.contactId, at: new Date(event.at) });
          });
        }
        return;
      case 'recording-state':
        await onRecordingState(call, event);
        return;
      case 'play-finished':
        if (call.abandoned) await provider.send({ kind: 'hangup', commandId: `hangup:${call.attemptId}`, legId: call.attemptId }).catch(() => undefined);
        return;
      default:
        break;
    }
    if (!FINAL_EVENTS.has(event.type)) return;
    call.ended = true;
    call.connectLimit?.cancel();
    const index = waiting.indexOf(call);
    if (index >= 0) waiting.splice(index, 1);
    calls.delete(call.attemptId);
    const raw = 'raw' in event ? event.raw : { sipStatus: 0, q850: 0, reason: '' };
    let outcome: AttemptOutcome = outcomeFor[event.type] ?? 'failed';
    let talkMs = 0;
    if (event.type === 'completed') {
      if (call.abandoned) outcome = 'abandoned';
      else if (call.amd === 'machine') outcome = 'machine';
      else if (call.answeredAt !== undefined) outcome = 'live';
      if (call.connectedAt !== undefined) talkMs = Math.max(0, event.at - call.connectedAt);
    }
    if (call.answeredAt === undefined) stats.dialResolved(false);
    await finish(call, outcome, raw, talkMs, event.at);
  }

  /** The recording's row follows the provider: paused and resumed (counted), then saved — sealed under the contact's key. */
  async function onRecordingState(call: Call, event: Extract<TelephonyEvent, { type: 'recording-state' }>): Promise<void> {
    if (event.state === 'paused' || event.state === 'resumed') {
      await inTenant((trx) => recordingPaused(trx, call.attemptId, event.state === 'paused'));
      return;
    }
    if (event.state !== 'saved') return;
    const audio = await provider.fetchRecording(event.recordingId).catch(() => undefined);
    await inTenant((trx) => recordingSaved(trx, crypto, { attemptId: call.attemptId, contactId: call.contactId, audio, at: new Date(event.at), durationMs: event.durationMs ?? null }));
  }

  /** A command on one of this dialer's calls (pause / resume the recording), from any process's API. */
  async function control(command: CallControl): Promise<boolean> {
    if (command.tenantId !== tenantDb.tenantId) return false;
    const call = calls.get(command.attemptId);
    if (!call || call.ended) return false;
    const commandId = `${command.action}:${command.requestId}`;
    // A person who answered and has not reached the agent yet is not simply hung up on: that is an
    // abandoned call (information message, lockout, counted against the cap).
    if (command.action === 'hangup' && call.answeredAt !== undefined && call.agentId === undefined) {
      call.connectLimit?.cancel();
      call.chain = call.chain.then(() => abandon(call));
      await call.chain;
    } else if (command.action === 'hangup') await provider.send({ kind: 'hangup', commandId: `hangup:${call.attemptId}`, legId: call.attemptId });
    else if (command.action === 'pause') await provider.send({ kind: 'record-pause', commandId, recordingId: call.attemptId, behavior: 'skip' });
    else await provider.send({ kind: 'record-resume', commandId, recordingId: call.attemptId });
    return true;
  }

  /** A person is on the line: to the longest-idle agent now, or wait up to the connect limit. */
  async function personReady(call: Call, at: number): Promise<void> {
    call.readyAt = at;
    stats.dialResolved(true);
    stats.personReady(at - call.dialedAt);
    if (await connect(call)) return;
    if (call.ended) return;
    waiting.push(call);
    const limit = setup().profile?.connectLimitMs ?? 2_000;
    call.connectLimit = clock.schedule(limit - (clock.now() - at), () => {
      call.chain = call.chain.then(() => abandon(call)).catch((error: unknown) => {
        countCall(counters, 'errors');
        logger.error({ err: error, attempt: call.attemptId }, 'dialer failed to abandon a call');
      });
    });
  }

  /**
   * Gives the person on `call` to the longest-idle available agent (a personal callback's agent
   * first). Runs on the call's own chain only, so it never races the connect limit's abandonment.
   */
  async function connect(call: Call): Promise<boolean> {
    if (call.ended || call.abandoned || call.agentId !== undefined) return call.agentId !== undefined;
    const agentId = await inTenant(async (trx) => {
      // The person is on the line: the answer is on the record from the first connect attempt on
      // (reports count a call in progress as a live answer).
      if (call.answeredAt !== undefined && !call.answerStored) {
        call.answerStored = true;
        await trx.updateTable('dial_attempts').set({ state: 'answered', answered_at: new Date(call.answeredAt) }).where('id', '=', call.attemptId).where('state', '=', 'dialing').execute();
      }
      // Preview: the agent who chose the call, held for it since the dial — if still held for it
      // (a takeover that settled the attempt freed them).
      if (call.requestedBy) {
        const held = await trx.selectFrom('agent_states').select('user_id').where('user_id', '=', call.requestedBy).where('attempt_id', '=', call.attemptId).where('state', '=', 'reserved').executeTakeFirst();
        return held?.user_id;
      }
      return reserveLongestIdle(trx, campaignId, call.attemptId, now(), call.preferredAgentId);
    });
    if (!agentId) return false;
    if (call.ended || call.abandoned) {
      // The call ended (or was given up) while the agent was being reserved: free the agent.
      await inTenant((trx) => moveAgentOfCall(trx, agentId, call.attemptId, { state: 'available', now: now() }));
      return false;
    }
    call.agentId = agentId;
    try {
      await provider.send({ kind: 'connect-to-agent', commandId: `connect:${call.attemptId}`, legId: call.attemptId, agentEndpoint: `agent:${agentId}` });
    } catch (error) {
      // The provider refused (the person hung up meanwhile, or a transient fault): the agent is
      // free again and the person, if still there, keeps waiting within the connect limit.
      if (!(error instanceof TelephonyError)) throw error;
      if (!call.requestedBy) await inTenant((trx) => moveAgentOfCall(trx, agentId, call.attemptId, { state: 'available', now: now() }));
      call.agentId = undefined;
      return false;
    }
    call.connectLimit?.cancel();
    stats.liveAnswer(clock.now(), false);
    const index = waiting.indexOf(call);
    if (index >= 0) waiting.splice(index, 1);
    return true;
  }

  /** Callers waiting for an agent get the agents that became free, oldest caller first, each on its own chain. */
  async function offerWaitingCallers(): Promise<void> {
    for (const call of [...waiting]) {
      if (call.ended || call.abandoned) {
        const index = waiting.indexOf(call);
        if (index >= 0) waiting.splice(index, 1);
        continue;
      }
      let taken = false;
      call.chain = call.chain.then(async () => {
        taken = await connect(call);
      });
      await call.chain.catch(() => undefined);
      if (!taken) return;
    }
  }

  async function abandon(call: Call): Promise<void> {
    if (call.ended || call.abandoned || call.agentId !== undefined) return;
    const index = waiting.indexOf(call);
    if (index >= 0) waiting.splice(index, 1);
    call.abandoned = true;
    countCall(counters, 'abandoned');
    stats.liveAnswer(clock.now(), true);
    if (setup().profile?.informationMessageRequired) {
      call.informationMessage = true;
      await provider.send({ kind: 'play', commandId: `play:${call.attemptId}`, legId: call.attemptId, playbackId: randomUUID(), media: INFORMATION_MESSAGE }).catch(async () => {
        call.informationMessage = false;
        await provider.send({ kind: 'hangup', commandId: `hangup:${call.attemptId}`, legId: call.attemptId }).catch(() => undefined);
      });
    } else {
      await provider.send({ kind: 'hangup', commandId: `hangup:${call.attemptId}`, legId: call.attemptId }).catch(() => undefined);
    }
  }

  async function finish(call: Call, outcome: AttemptOutcome, raw: { sipStatus: number; q850: number; reason: string }, talkMs: number, endedAtMs = clock.now()): Promise<void> {
    countCall(counters, 'ended');
    if (talkMs > 0) stats.talked(talkMs);
    const kept = await inTenant((trx) =>
      recordCallEnd(trx, crypto, { call, outcome, raw, talkMs, endedAtMs, campaignId, dialerId, ...setup() }),
    );
    if (!kept) logger.warn({ attempt: call.attemptId }, 'a call ended after its attempt was settled elsewhere; its record was kept as settled');
  }

  return {
    /** A call just dialed, to follow from its first event. */
    follow: (call: Call) => void calls.set(call.attemptId, call),
    /** A dial the provider refused: no call exists; its attempt ends as failed. */
    async refused(call: Call, reason: string): Promise<void> {
      call.ended = true;
      calls.delete(call.attemptId);
      await finish(call, 'failed', { sipStatus: 0, q850: 0, reason }, 0);
    },
    onEvent,
    control,
    offerWaitingCallers,
    /** How long each dialed call not yet answered has been out (the pacer's view). */
    outstandingAgesMs(): number[] {
      const ages: number[] = [];
      for (const call of calls.values()) if (call.readyAt === undefined && !call.ended) ages.push(clock.now() - call.dialedAt);
      return ages;
    },
    waitingCount: () => waiting.length,
    size: () => calls.size,
    /** Resolves when every event received so far has been handled. */
    async settled(): Promise<void> {
      await Promise.all([...calls.values()].map((call) => call.chain));
    },
  };
}
