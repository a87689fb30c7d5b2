import { sql } from '../db/kysely.ts';
import type { Logger } from '../logger.ts';
import type { TenantDb, TenantTransaction } from '../db/tenant-db.ts';
import type { ContactPurpose } from '../db/schema.ts';
import { recordAuditEvent } from '../audit/audit-event.ts';
import { publish } from '../realtime/realtime.ts';
import type { ContactsCrypto } from '../modules/contacts/contacts.service.ts';
import { loadCampaign, loadProfiles, settingsOf, windowRules, type JurisdictionProfile } from '../modules/campaigns/campaign-settings.ts';
import { endExpiredWrapUps, floorAgents } from '../modules/agents/agent-states.ts';
import type { VirtualClock, Scheduled } from '../telephony/clock.ts';
import { TelephonyError, type TelephonyProvider } from '../telephony/provider.ts';
import { admitAttempts, type DialContext } from './dial-checks.ts';
import { registerCallController } from './call-control.ts';
import { reserveDue, type ReservedAttempt } from './hopper.ts';
import { announceRequestedDials, bindRequestingAgents } from './preview.ts';
import { countCall, createCallFollower, type Call, type DialerCounters } from './call-follower.ts';
import { dialerDecisions } from '../operations/telemetry.ts';
import { DialStats } from './dial-stats.ts';
import { predictivePacer, progressivePacer, type Pacer, type PacingDecision } from './pacers.ts';

/**
 * One campaign's dialer: every tick it asks the pacer how many lines to dial, reserves that many
 * due contacts from the hopper, runs the dial-time checks on each and dials those that pass (a
 * preview campaign: exactly the calls its agents chose). Its call follower (call-follower.ts)
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
export type { DialerCounters } from './call-follower.ts';

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

/** The campaign's settings are re-read at most this often (a pause or a change takes effect within it). */
const SETUP_TTL_MS = 1_000;


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

/** Reservations checked and dialed together (one transaction each). */
const DIAL_CHUNK = 25;
/** A preview campaign's round places every call its agents asked for, up to this many. */
const PREVIEW_ROUND = 200;



export function createCampaignDialer(options: CampaignDialerOptions): CampaignDialer {
  const { tenantDb, crypto, provider, clock, campaignId, dialerId, logger } = options;
  const tickMs = options.tickMs ?? 250;
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
  const follower = createCallFollower({
    tenantDb,
    crypto,
    provider,
    clock,
    campaignId,
    dialerId,
    logger,
    stats,
    counters,
    setup: () => ({ ...(campaign ? { settings: campaign.settings } : {}), ...(profile ? { profile } : {}) }),
  });

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
    await follower.offerWaitingCallers();
    if (paused || campaign.row.state !== 'active') return;
    // Preview: no pacing; the calls are those the agents chose, each for its agent.
    if (campaign.settings.mode === 'preview') {
      await dialSome(PREVIEW_ROUND, true);
      return;
    }
    // The decision proper: the floor as it is now, and the pacer.
    const deciding = performance.now();
    const agents = await tenantDb.read((trx) => floorAgents(trx, campaignId, clock.now()));
    const outstanding = follower.outstandingAgesMs();
    const decided = pacer.decide({
      now: clock.now(),
      windowStart: windowStart(),
      agents,
      outstandingAgesMs: outstanding,
      waiting: follower.waitingCount(),
      wrapMs: campaign.settings.wrapUpMs,
      stats,
    });
    const changed = decided.explanation !== decision?.explanation;
    const previousAt = decision?.at ?? Number.NEGATIVE_INFINITY;
    decision = { ...decided, at: clock.now() };
    const decidedAfter = performance.now() - deciding;
    dialerDecisions.observe(decidedAfter / 1000);
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
        countCall(counters, 'skipped');
        continue;
      }
      const call: Call = { attemptId: attempt.id, contactId: attempt.contactId, number: verdict.number, checks: verdict.checks, dialedAt: clock.now(), abandoned: false, informationMessage: false, lastSeq: 0, chain: Promise.resolve(), ended: false };
      if (attempt.callbackAgentId) call.preferredAgentId = attempt.callbackAgentId;
      if (attempt.requestedBy) call.requestedBy = attempt.requestedBy;
      follower.follow(call);
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
        countCall(counters, 'dialed');
      } catch (error) {
        // The provider refused the dial: no call exists; the attempt ends as failed, the contact
        // returns to the hopper by the failed-call rule.
        countCall(counters, 'errors');
        logger.warn({ err: error instanceof TelephonyError ? error.code : 'provider_error', attempt: attempt.id }, 'dial refused by the telephony provider');
        await follower.refused(call, error instanceof TelephonyError ? error.code : 'provider_error');
      }
    }
    return reserved.length;
  }

  const schedule = () => {
    if (stopped) return;
    timer = clock.schedule(tickMs, () => {
      ticking = tick()
        .catch((error: unknown) => {
          countCall(counters, 'errors');
          logger.error({ err: error, campaign: campaignId }, 'dialer tick failed');
        })
        .finally(schedule);
    });
  };

  let seeded = false;
  let setupLoadedAt = Number.NEGATIVE_INFINITY;
  let unregister: (() => void) | undefined;
  async function listen(): Promise<void> {
    unsubscribe ??= provider.onEvent(follower.onEvent);
    unregister ??= registerCallController({ control: follower.control });
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
      await follower.settled();
    },
    tick,
    lastDecision: () => decision,
    counters: () => ({ ...counters }),
    callsInProgress: follower.size,
    settled: follower.settled,
  };
}
