import { randomUUID } from 'node:crypto';
import { sql } from '../db/kysely.ts';
import type { Logger } from '../logger.ts';
import type { TenantDb, TenantTransaction } from '../db/tenant-db.ts';
import type { AttemptOutcome, ContactPurpose } from '../db/schema.ts';
import { recordAuditEvent } from '../audit/audit-event.ts';
import { publish } from '../realtime/realtime.ts';
import type { ContactsCrypto } from '../modules/contacts/contacts.service.ts';
import { loadCampaign, loadProfiles, settingsOf, windowRules, type JurisdictionProfile } from '../modules/campaigns/campaign-settings.ts';
import { endExpiredWrapUps, floorAgents, moveAgentOfCall, reserveLongestIdle } from '../modules/agents/agent-states.ts';
import type { VirtualClock, Scheduled } from '../telephony/clock.ts';
import { FINAL_EVENTS, TelephonyError, type TelephonyEvent, type TelephonyProvider } from '../telephony/provider.ts';
import { admitAttempts, type DialContext } from './dial-checks.ts';
import { registerCallController, type CallControl } from './call-control.ts';
import { reserveDue, type ReservedAttempt } from './hopper.ts';
import { announceRequestedDials, bindRequestingAgents } from './preview.ts';
import { recordCallEnd, type EndedCall } from './call-record.ts';
import { recordingPaused, recordingSaved, recordingStarted } from './call-recording.ts';
import { DialStats } from './dial-stats.ts';
import { predictivePacer, progressivePacer, type Pacer, type PacingDecision } from './pacers.ts';

/**
 * One campaign's dialer: every tick it asks the pacer how many lines to dial, reserves that many
 * due contacts from the hopper, runs the dial-time checks on each and dials those that pass. It
 * follows every call through the provider's events: a person (as answered, or as the detector
 * judged) goes to the longest-idle available agent; when none is free within the profile's
 * connect limit the information message plays and the call is recorded as abandoned (and, where
 * the law says so, the number is locked out). Each call ends with its compliance record in the
 * audit ledger: when it was dialed, how long it rang, the detector's verdict, how long the person
 * waited for an agent, whether the message played, and which checks it passed.
 *
 * Time is the clock's (real time in the product, virtual in tests and benchmarks); every stored
 * timestamp comes from it, so an accelerated run writes the times its calls had.
 */
export type CampaignDialerOptions = {
  tenantDb: TenantDb;
  crypto: ContactsCrypto;
  provider: TelephonyProvider;
  clock: VirtualClock;
  campaignId: string;
  /** This process's name on its reservations. */
  dialerId: string;
  logger: Logger;
  /** How often pacing runs (ms of the clock). */
  tickMs?: number;
  /** Overrides the campaign mode's pacer (benchmarks). */
  pacer?: Pacer;
  /** When the dialer runs under a campaign lease (the dialer service), it reserves only while it holds it. */
  leaseOwner?: string;
  /** Told after every pacing round: how long the decision took (floor read + pacer) and the whole round (with wrap-ups, waiting callers and its dials). */
  onRound?: (round: { decisionMs: number; roundMs: number; dialed: number }) => void;
};

/** A call in progress: what its record will hold (EndedCall), and the dialer's own bookkeeping. */
type Call = EndedCall & {
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

/** The campaign's settings are re-read at most this often (a pause or a change takes effect within it). */
const SETUP_TTL_MS = 1_000;

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

export type CampaignDialer = {
  /** Follows the provider's events and loads the campaign, without pacing on a timer (tests step it with tick). */
  listen(): Promise<void>;
  /** listen, then a pacing round every tickMs of the clock. */
  start(): Promise<void>;
  /** No more dials; calls in progress are still followed to their end (stop once none is left). */
  pause(): void;
  stop(): Promise<void>;
  /** One pacing round now (tests drive it; the product's timer calls it every tickMs). */
  tick(): Promise<void>;
  lastDecision(): (PacingDecision & { at: number }) | undefined;
  counters(): DialerCounters;
  callsInProgress(): number;
  /** Resolves when every event received so far has been handled. */
  settled(): Promise<void>;
};

const INFORMATION_MESSAGE = 'information-message';
/** Reservations checked and dialed together (one transaction each). */
const DIAL_CHUNK = 25;
/** A preview campaign's round places every call its agents asked for, up to this many. */
const PREVIEW_ROUND = 200;


const outcomeFor: Partial<Record<TelephonyEvent['type'], AttemptOutcome>> = { busy: 'busy', 'no-answer': 'no_answer', failed: 'failed', cancelled: 'cancelled' };

export function createCampaignDialer(options: CampaignDialerOptions): CampaignDialer {
  const { tenantDb, crypto, provider, clock, campaignId, dialerId, logger } = options;
  const tickMs = options.tickMs ?? 250;
  const calls = new Map<string, Call>();
  const waiting: Call[] = [];
  const counters: DialerCounters = { dialed: 0, skipped: 0, connected: 0, abandoned: 0, ended: 0, unknownEvents: 0, duplicateEvents: 0, errors: 0 };
  let decision: (PacingDecision & { at: number }) | undefined;
  let unsubscribe: (() => void) | undefined;
  let timer: Scheduled | undefined;
  let ticking: Promise<void> | undefined;
  let stopped = false;
  let paused = false;
  let pacer: Pacer | undefined = options.pacer;
  let profile: JurisdictionProfile | undefined;
  let campaign: Awaited<ReturnType<typeof loadSetup>> | undefined;

  const now = () => new Date(clock.now());
  const inTenant = <T>(work: (trx: TenantTransaction) => Promise<T>) => tenantDb.transaction(work);

  async function loadSetup() {
    return tenantDb.read(async (trx) => {
      const row = await loadCampaign(trx, campaignId);
      const settings = settingsOf(row);
      const [found] = settings.jurisdiction === null ? [] : await loadProfiles(trx, settings.jurisdiction);
      return { row, settings, profile: found, startedAt: row.started_at?.getTime() ?? clock.now() };
    });
  }

  const stats = new DialStats({ liveShare: 0.3, readyAfterMs: 12_000, talkMedianMs: 90_000, talkSigma: 0.6 });

  function dialContext(): DialContext {
    if (!campaign || !profile) throw new Error('the dialer has not loaded its campaign');
    return {
      campaignId,
      purpose: campaign.row.purpose as ContactPurpose,
      maxAttempts: campaign.settings.maxAttempts,
      windows: windowRules(profile, campaign.settings),
      requiresLawfulBasis: profile.requiresLawfulBasis,
    };
  }

  /** The start of the legal measurement window the campaign is in now. */
  function windowStart(): number {
    if (!campaign || !profile) return clock.now();
    const elapsed = clock.now() - campaign.startedAt;
    return campaign.startedAt + Math.floor(Math.max(0, elapsed) / profile.abandonWindowMs) * profile.abandonWindowMs;
  }

  async function tick(): Promise<void> {
    if (stopped) return;
    const began = performance.now();
    if (!campaign || performance.now() - setupLoadedAt >= SETUP_TTL_MS) {
      campaign = await loadSetup();
      setupLoadedAt = performance.now();
    }
    profile = campaign.profile;
    if (!profile) return;
    pacer ??= campaign.settings.mode === 'predictive' ? predictivePacer({ cap: profile.abandonCap, margin: 0.01 }) : progressivePacer();
    const at = now();
    await inTenant((trx) => endExpiredWrapUps(trx, campaignId, at));
    await offerWaitingCallers();
    if (paused || campaign.row.state !== 'active') return;
    // Preview: no pacing; the calls are those the agents chose, each for its agent.
    if (campaign.settings.mode === 'preview') {
      await dialSome(PREVIEW_ROUND, true);
      return;
    }
    // The decision proper: the floor as it is now, and the pacer.
    const deciding = performance.now();
    const agents = await tenantDb.read((trx) => floorAgents(trx, campaignId, clock.now()));
    const outstanding: number[] = [];
    for (const call of calls.values()) if (call.readyAt === undefined && !call.ended) outstanding.push(clock.now() - call.dialedAt);
    const decided = pacer.decide({
      now: clock.now(),
      windowStart: windowStart(),
      agents,
      outstandingAgesMs: outstanding,
      waiting: waiting.length,
      wrapMs: campaign.settings.wrapUpMs,
      stats,
    });
    const changed = decided.explanation !== decision?.explanation;
    const previousAt = decision?.at ?? Number.NEGATIVE_INFINITY;
    decision = { ...decided, at: clock.now() };
    const decidedAfter = performance.now() - deciding;
    // What the supervisor reads: the newest decision, written at most once a second.
    if (changed && clock.now() - previousAt >= 1_000) await savePacing(pacer.name, decided);
    const dialedBefore = counters.dialed;
    if (decided.dial > 0) await dialSome(decided.dial);
    options.onRound?.({ decisionMs: decidedAfter, roundMs: performance.now() - began, dialed: counters.dialed - dialedBefore });
  }

  async function savePacing(pacerName: string, decided: PacingDecision): Promise<void> {
    const row = { campaign_id: campaignId, decided_at: now(), dialer: dialerId, pacer: pacerName, lines: decided.dial, explanation: decided.explanation.slice(0, 2000) };
    await inTenant(async (trx) => {
      await trx
        .insertInto('campaign_pacing')
        .values(row)
        .onConflict((conflict) => conflict.columns(['tenant_id', 'campaign_id']).doUpdateSet({ decided_at: row.decided_at, dialer: row.dialer, pacer: row.pacer, lines: row.lines, explanation: row.explanation }))
        .execute();
      await publish(trx, { topic: 'campaign.pacing', campaignId, lines: row.lines, explanation: row.explanation, at: row.decided_at.toISOString() });
    });
  }

  /**
   * Dials `count` lines, in chunks of at most DIAL_CHUNK: each chunk is one reservation and one
   * admission transaction, and between chunks the calls in progress get the event loop (a large
   * round never holds up the people already on the line).
   */
  async function dialSome(count: number, requestedOnly = false): Promise<void> {
    for (let left = count; left > 0 && !paused && !stopped; left -= DIAL_CHUNK) {
      const dialed = await dialChunk(Math.min(DIAL_CHUNK, left), requestedOnly);
      if (dialed === 0) return;
      await new Promise((resolve) => setImmediate(resolve));
    }
  }

  async function dialChunk(count: number, requestedOnly: boolean): Promise<number> {
    if (!campaign || !profile) return 0;
    const context = dialContext();
    const at = now();
    // A preview call's agent is bound to its attempt in the reservation's own transaction: from
    // then on a takeover that settles the attempt frees the agent too.
    let admissible: ReservedAttempt[] = [];
    const reserved = await inTenant(async (trx) => {
      const taken = await reserveDue(trx, campaignId, count, dialerId, at, { requestedOnly, ...(options.leaseOwner === undefined ? {} : { leaseOwner: options.leaseOwner }) });
      admissible = requestedOnly ? await bindRequestingAgents(trx, campaignId, taken, at) : taken;
      return taken;
    });
    if (reserved.length === 0) return 0;
    // The chunk's reservations are checked together, in one transaction.
    const verdicts = await inTenant(async (trx) => {
      const results = await admitAttempts(trx, crypto, context, admissible, at);
      await announceRequestedDials(trx, campaignId, admissible, results, at);
      for (const attempt of admissible) {
        const result = results.get(attempt.id);
        if (!result) continue;
        // A dial is not announced on its own (the pacing decision says how many are dialed); its
        // connection and its end are.
        if (result.ok) continue;
        await recordAuditEvent(trx, {
          action: 'call.compliance',
          outcome: 'denied',
          actor: { type: 'system', id: `dialer:${dialerId}` },
          target: { type: 'dial_attempt', id: attempt.id },
          details: { campaign: campaignId, contact: attempt.contactId, attempt: attempt.attempt, skipped: result.reason, checksPassed: result.checks.join(','), retryAt: result.retryAt?.toISOString() ?? null },
          occurredAt: at,
        });
      }
      return results;
    });
    for (const attempt of reserved) {
      const verdict = verdicts.get(attempt.id);
      if (!verdict?.ok) {
        counters.skipped += 1;
        continue;
      }
      const call: Call = { attemptId: attempt.id, contactId: attempt.contactId, number: verdict.number, checks: verdict.checks, dialedAt: clock.now(), abandoned: false, informationMessage: false, lastSeq: 0, chain: Promise.resolve(), ended: false };
      if (attempt.callbackAgentId) call.preferredAgentId = attempt.callbackAgentId;
      if (attempt.requestedBy) call.requestedBy = attempt.requestedBy;
      calls.set(attempt.id, call);
      try {
        await provider.send({
          kind: 'dial',
          commandId: `dial:${attempt.id}`,
          legId: attempt.id,
          to: verdict.number,
          from: campaign.settings.callerId ?? '',
          ringTimeoutMs: Math.max(campaign.settings.ringTimeoutMs, profile.minRingMs),
          amd: campaign.settings.amd ? 'detect' : 'off',
        });
        counters.dialed += 1;
      } catch (error) {
        // The provider refused the dial: no call exists; the attempt ends as failed, the contact
        // returns to the hopper by the failed-call rule.
        counters.errors += 1;
        logger.warn({ err: error instanceof TelephonyError ? error.code : 'provider_error', attempt: attempt.id }, 'dial refused by the telephony provider');
        call.ended = true;
        calls.delete(attempt.id);
        await finish(call, 'failed', { sipStatus: 0, q850: 0, reason: error instanceof TelephonyError ? error.code : 'provider_error' }, 0);
      }
    }
    return reserved.length;
  }

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
      counters.errors += 1;
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
        if (!campaign?.settings.amd) await personReady(call, event.at);
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
        counters.connected += 1;
        if (call.agentId) {
          const agentId = call.agentId;
          // The recording starts with the conversation, before anything is written.
          const recording = campaign?.settings.recordCalls === true;
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
    const limit = profile?.connectLimitMs ?? 2_000;
    call.connectLimit = clock.schedule(limit - (clock.now() - at), () => {
      call.chain = call.chain.then(() => abandon(call)).catch((error: unknown) => {
        counters.errors += 1;
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
    counters.abandoned += 1;
    stats.liveAnswer(clock.now(), true);
    if (profile?.informationMessageRequired) {
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
    counters.ended += 1;
    if (talkMs > 0) stats.talked(talkMs);
    const kept = await inTenant((trx) =>
      recordCallEnd(trx, crypto, { call, outcome, raw, talkMs, endedAtMs, campaignId, dialerId, ...(campaign ? { settings: campaign.settings } : {}), ...(profile ? { profile } : {}) }),
    );
    if (!kept) logger.warn({ attempt: call.attemptId }, 'a call ended after its attempt was settled elsewhere; its record was kept as settled');
  }

  const schedule = () => {
    if (stopped) return;
    timer = clock.schedule(tickMs, () => {
      ticking = tick()
        .catch((error: unknown) => {
          counters.errors += 1;
          logger.error({ err: error, campaign: campaignId }, 'dialer tick failed');
        })
        .finally(schedule);
    });
  };

  let seeded = false;
  let setupLoadedAt = Number.NEGATIVE_INFINITY;
  let unregister: (() => void) | undefined;
  async function listen(): Promise<void> {
    unsubscribe ??= provider.onEvent(onEvent);
    unregister ??= registerCallController({ control });
    campaign = await loadSetup();
    profile = campaign.profile;
    if (!seeded && profile) {
      seeded = true;
      // Under the UK measure, people the detector hung up on count as abandoned: the pacer holds
      // the rate with them estimated in.
      if (profile.abandonMeasure === 'live_answers_with_amd_estimate' && campaign.settings.amd) stats.countMistakenMachines(provider.capabilities().amdAccuracy ?? null);
      // The legal window's history so far (this dialer may be a restart or a takeover).
      const since = new Date(windowStart());
      const history = await tenantDb.read((trx) =>
        sql<{ minute: string; live: string; abandoned: string; human: string; machine: string }>`
          SELECT floor(extract(epoch FROM dialed_at) / 60)::bigint AS minute,
                 count(*) FILTER (WHERE outcome = 'abandoned' OR connect_ms IS NOT NULL) AS live,
                 count(*) FILTER (WHERE outcome = 'abandoned') AS abandoned,
                 count(*) FILTER (WHERE amd_result IN ('human', 'unknown')) AS human,
                 count(*) FILTER (WHERE amd_result = 'machine') AS machine
            FROM dial_attempts WHERE campaign_id = ${campaignId} AND dialed_at >= ${since} AND state = 'ended'
           GROUP BY 1`.execute(trx),
      );
      for (const row of history.rows) stats.seedMinute(Number(row.minute), { live: Number(row.live), abandoned: Number(row.abandoned), human: Number(row.human), machine: Number(row.machine) });
    }
  }

  return {
    listen,
    async start() {
      await listen();
      schedule();
    },
    pause() {
      paused = true;
    },
    async stop() {
      stopped = true;
      unregister?.();
      timer?.cancel();
      await ticking;
      unsubscribe?.();
      await Promise.all([...calls.values()].map((call) => call.chain));
    },
    tick,
    lastDecision: () => decision,
    counters: () => ({ ...counters }),
    callsInProgress: () => calls.size,
    async settled() {
      await Promise.all([...calls.values()].map((call) => call.chain));
    },
  };
}
