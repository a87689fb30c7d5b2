import { sql } from '../db/kysely.ts';
import { runEvery } from '../background-task.ts';
import type { Logger } from '../logger.ts';
import type { SystemDb } from '../db/system-db.ts';
import type { TenantTransaction } from '../db/tenant-db.ts';
import type { ContactsCrypto } from '../modules/contacts/contacts.service.ts';
import { recordAuditEvent } from '../audit/audit-event.ts';
import { publish } from '../realtime/realtime.ts';
import type { VirtualClock } from '../telephony/clock.ts';
import type { TelephonyProvider } from '../telephony/provider.ts';
import { createCampaignDialer, type CampaignDialer } from './campaign-dialer.ts';
import { createInboundRouter, type InboundRouter } from '../inbound/inbound-router.ts';
import { ownerIsGone, type NodePresence } from '../operations/node-presence.ts';

/**
 * The dialers of one server process. Every node runs this service; each active campaign is paced
 * by one node at a time, the holder of its lease (campaigns.dialer_owner / dialer_lease_until),
 * renewed every round. A node that dies stops renewing and loses its presence lock
 * (src/operations/node-presence.ts); once the lease lapses another node takes the campaign over
 * (at once if the node is gone, after a long grace if it is alive but slow) and first settles what the dead one left open: its attempts end as
 * `cancelled` (the calls died with it), their contacts return to the hopper, and agents it had
 * reserved are freed — no agent stays stuck and no attempt stays open. Even while two nodes
 * overlap, the hopper reserves each contact once (hopper.ts).
 */
export type DialerServiceOptions = {
  systemDb: SystemDb;
  crypto: () => Promise<ContactsCrypto>;
  provider: TelephonyProvider;
  clock: VirtualClock;
  nodeId: string;
  logger: Logger;
  roundMs?: number;
  leaseMs?: number;
  /**
   * This node's presence (node-presence.ts). Without it, or until it has settled, a lapsed lease
   * is taken over only after the long grace: a node that cannot trust its view of the others'
   * locks never takes a campaign early.
   */
  presence?: Pick<NodePresence, 'settled'>;
};

type Running = { tenantId: string; dialer: CampaignDialer; winding: boolean };

/**
 * A campaign's lease: renewed every round (1 s), it lapses this long after its node's last round.
 * A lapsed lease whose node is gone — its presence lock free (src/operations/node-presence.ts) —
 * is taken over at once: a dead node's campaigns move within about LEASE_MS + one round.
 */
const LEASE_MS = 3_000;
const ROUND_MS = 1_000;
/**
 * A lapsed lease whose node still holds its presence lock belongs to a node that is alive but
 * slow (or cut off from its calls): taken over only after this much longer grace.
 */
const TAKEOVER_GRACE_SECONDS = 30;
/** Rounds between looks for attempts left open by a dead node that had handed its campaign over. */
const SETTLE_LOST_EVERY_ROUNDS = 5;
/** How long after a takeover the contacts of calls that were already ringing, or answered, are due again. */
const RINGING_CALL_RETRY_MS = 2 * 60_000;
const ANSWERED_CALL_RETRY_MS = 4 * 3_600_000;

/**
 * Settles the attempts another (dead) dialer of this campaign left open — the previous lease
 * holder's (`takenFrom`), and those of any dialer whose node is gone — and returns how many. A
 * reservation never dialed returns its contact at once; a call that was ringing comes back in
 * 2 minutes, one that was answered in 4 hours (the person may have been talking when the node
 * died: never ring them again at once). Agents held for those calls are freed.
 */
export async function recoverOrphanedAttempts(trx: TenantTransaction, campaignId: string, dialerId: string, now: Date, takenFrom?: string, options: { presenceSettled?: boolean } = {}): Promise<number> {
  const orphans = await trx
    .updateTable('dial_attempts')
    .set((eb) => ({
      state: 'ended',
      outcome: eb.case().when('state', '=', 'reserved').then(sql<'skipped'>`'skipped'`).else(sql<'cancelled'>`'cancelled'`).end(),
      skip_reason: 'dialer_lost',
      ended_at: now,
    }))
    .where('campaign_id', '=', campaignId)
    .where('dialer', '<>', dialerId)
    .where('state', 'in', ['reserved', 'dialing', 'answered', 'connected'])
    // The previous owner's, and any other dialer's whose node is gone. A live node's calls are its
    // own to finish: one that handed its campaign over while stopping follows them to their end.
    .where((eb) => eb.or([eb('dialer', '=', takenFrom ?? null), eb.and([sql<boolean>`${options.presenceSettled === true}`, ownerIsGone(sql.ref('dialer'))])]))
    .returning(['id', 'contact_id', 'answered_at', 'dialed_at'])
    .execute();
  // A campaign taken from another node is always recorded; settling leftovers of a finished one only when there were any.
  if (orphans.length === 0 && takenFrom === undefined) return 0;
  for (const orphan of orphans) {
    const dueIn = orphan.answered_at !== null ? ANSWERED_CALL_RETRY_MS : orphan.dialed_at !== null ? RINGING_CALL_RETRY_MS : 0;
    await trx
      .updateTable('campaign_contacts')
      .set({ state: 'ready', next_at: new Date(now.getTime() + dueIn), last_outcome: 'cancelled:dialer_lost', preview_agent_id: null, preview_until: null, dial_requested_at: null, updated_at: now })
      .where('campaign_id', '=', campaignId)
      .where('contact_id', '=', orphan.contact_id)
      .where('state', '=', 'reserved')
      .execute();
  }
  const attemptIds = orphans.map((orphan) => orphan.id);
  const freed = attemptIds.length === 0 ? [] : await trx
    .updateTable('agent_states')
    .set({ state: 'available', attempt_id: null, wrap_up_until: null, since: now })
    .where('attempt_id', 'in', attemptIds)
    .where('state', 'in', ['reserved', 'on_call'])
    .returning('user_id')
    .execute();
  if (freed.length > 0) await trx.insertInto('agent_state_changes').values(freed.map((agent) => ({ user_id: agent.user_id, state: 'available' as const, reason: null, at: now }))).execute();
  for (const agent of freed) await publish(trx, { topic: 'agent.state', agentId: agent.user_id, state: 'available', reason: null, campaignId, at: now.toISOString() });
  await recordAuditEvent(trx, {
    action: 'campaign.dialer_takeover',
    outcome: 'success',
    actor: { type: 'system', id: `dialer:${dialerId}` },
    target: { type: 'campaign', id: campaignId },
    details: { orphanedAttempts: orphans.length, agentsFreed: freed.length, ...(takenFrom === undefined ? {} : { previousDialer: takenFrom.slice(0, 100) }) },
    occurredAt: now,
  });
  return orphans.length;
}

export type DialerService = {
  running(): string[];
  /** Calls this node is following now. */
  callsInProgress(): number;
  /**
   * The first step of a graceful stop: no more dials, every campaign's lease given up at once (so
   * another node goes on dialing it within a round), and this node's calls followed to their end.
   */
  handOver(): Promise<void>;
  /**
   * Stops. After handOver, waits up to `callDrainMs` for this node's calls to end; calls still in
   * progress then are settled by their campaign's next owner once this process is gone.
   */
  stop(options?: { callDrainMs?: number }): Promise<void>;
};

export function startDialerService(options: DialerServiceOptions): DialerService {
  const { systemDb, provider, clock, nodeId, logger } = options;
  const leaseMs = options.leaseMs ?? LEASE_MS;
  const presenceSettled = () => options.presence?.settled() === true;
  const running = new Map<string, Running>();
  const routers = new Map<string, InboundRouter>();
  let stopping = false;
  let handingOver = false;
  let rounds = 0;

  /**
   * Takes the lease of an active campaign that is free, ours, lapsed with its node gone, or lapsed
   * past the grace; settles what the previous owner left and records the takeover.
   */
  const claim = (tenantId: string, campaignId: string) =>
    systemDb.inTenant(tenantId).transaction(async (trx) => {
      // The previous owner is read in the same statement (the FROM subquery sees the row as it was).
      const result = await sql<{ previous: string | null }>`
        UPDATE campaigns AS c
           SET dialer_owner = ${nodeId}, dialer_lease_until = now() + make_interval(secs => ${leaseMs / 1000})
          FROM (SELECT dialer_owner AS previous FROM campaigns WHERE id = ${campaignId}) AS p
         WHERE c.id = ${campaignId} AND c.state = 'active'
           AND (c.dialer_owner IS NULL OR c.dialer_owner = ${nodeId}
                OR c.dialer_lease_until < now() - make_interval(secs => ${TAKEOVER_GRACE_SECONDS})
                -- A lapsed lease whose node is gone (its presence lock is free): no grace to wait out
                -- — judged only by a node whose own presence has settled.
                OR (${presenceSettled()} AND c.dialer_lease_until < now() AND ${ownerIsGone(sql.ref('c.dialer_owner'))}))
        RETURNING p.previous`.execute(trx);
      const leased = result.rows[0];
      if (!leased) return false;
      const takenFrom = leased.previous !== null && leased.previous !== nodeId ? leased.previous : undefined;
      await recoverOrphanedAttempts(trx, campaignId, nodeId, new Date(clock.now()), takenFrom, { presenceSettled: presenceSettled() });
      return true;
    });

  /** Renews our lease whatever the campaign's state (a paused campaign's calls still finish under it); its state, or undefined if the lease is lost. */
  const renew = (tenantId: string, campaignId: string) =>
    systemDb.inTenant(tenantId).transaction(async (trx) => {
      const renewed = await trx
        .updateTable('campaigns')
        .set({ dialer_lease_until: sql<Date>`now() + make_interval(secs => ${leaseMs / 1000})` })
        .where('id', '=', campaignId)
        .where('dialer_owner', '=', nodeId)
        .returning('state')
        .executeTakeFirst();
      return renewed?.state;
    });

  const release = (tenantId: string, campaignId: string) =>
    systemDb
      .inTenant(tenantId)
      .transaction((trx) => trx.updateTable('campaigns').set({ dialer_owner: null, dialer_lease_until: null }).where('id', '=', campaignId).where('dialer_owner', '=', nodeId).execute());

  /** A lapsed lease on a campaign that is no longer active: settle what it left and clear it. */
  const clearLapsed = (tenantId: string, campaignId: string) =>
    systemDb.inTenant(tenantId).transaction(async (trx) => {
      const cleared = await sql<{ previous: string | null }>`
        UPDATE campaigns AS c SET dialer_owner = NULL, dialer_lease_until = NULL
          FROM (SELECT dialer_owner AS previous FROM campaigns WHERE id = ${campaignId}) AS p
         WHERE c.id = ${campaignId} AND c.state <> 'active'
           AND (c.dialer_lease_until < now() - make_interval(secs => ${TAKEOVER_GRACE_SECONDS})
                OR (${presenceSettled()} AND c.dialer_lease_until < now() AND ${ownerIsGone(sql.ref('c.dialer_owner'))}))
        RETURNING p.previous`.execute(trx);
      const row = cleared.rows[0];
      if (row) await recoverOrphanedAttempts(trx, campaignId, nodeId, new Date(clock.now()), row.previous ?? undefined, { presenceSettled: presenceSettled() });
    });

  /**
   * Every few rounds, on the campaigns this node runs: settles the attempts of another dialer
   * whose node died after it had handed the campaign over (killed while finishing its calls).
   */
  const settleLost = (tenantId: string, campaignId: string) =>
    systemDb.inTenant(tenantId).transaction((trx) => recoverOrphanedAttempts(trx, campaignId, nodeId, new Date(clock.now()), undefined, { presenceSettled: true }));

  async function round(): Promise<void> {
    if (stopping) return;
    rounds += 1;
    if (handingOver) {
      // Stopping: follow this node's calls to their end; the campaigns are another node's now.
      for (const [campaignId, entry] of running) {
        if (entry.dialer.callsInProgress() > 0) continue;
        await entry.dialer.stop();
        running.delete(campaignId);
      }
      return;
    }
    // Inbound: a router per tenant with queues, for the calls this node's telephony receives.
    for (const tenantId of await systemDb.tenantsWithQueues()) {
      if (routers.has(tenantId)) continue;
      const router = createInboundRouter({ tenantDb: systemDb.inTenant(tenantId), crypto: await options.crypto(), provider, clock, logger });
      routers.set(tenantId, router);
      await router.start();
    }
    // Calls a dead node left open on campaigns nobody dials any more (it handed the campaign over,
    // then died while finishing them): settled by any node that can judge.
    if (rounds % SETTLE_LOST_EVERY_ROUNDS === 0 && presenceSettled()) {
      for (const lost of await systemDb.campaignsWithLostAttempts()) {
        await systemDb.inTenant(lost.tenantId).transaction((trx) => recoverOrphanedAttempts(trx, lost.campaignId, nodeId, new Date(clock.now()), undefined, { presenceSettled: true }));
      }
    }
    const wanted = await systemDb.campaignsToDial();
    const seen = new Set<string>();
    for (const { tenantId, campaignId } of wanted) {
      seen.add(campaignId);
      const mine = running.get(campaignId);
      if (mine) {
        const state = await renew(tenantId, campaignId);
        if (state === 'active' && rounds % SETTLE_LOST_EVERY_ROUNDS === 0 && presenceSettled()) await settleLost(tenantId, campaignId);
        if (state !== 'active' && !mine.winding) {
          // Paused or finished (state), or taken over (no state): dial no more, but follow the
          // calls in progress to their end.
          mine.winding = true;
          mine.dialer.pause();
          logger.info({ campaign: campaignId, leaseLost: state === undefined }, 'campaign dialer winding down');
        }
        continue;
      }
      if (await claim(tenantId, campaignId)) {
        const dialer = createCampaignDialer({ tenantDb: systemDb.inTenant(tenantId), crypto: await options.crypto(), provider, clock, campaignId, dialerId: nodeId, leaseOwner: nodeId, logger });
        running.set(campaignId, { tenantId, dialer, winding: false });
        await dialer.start();
        logger.info({ campaign: campaignId }, 'campaign dialer started');
      } else {
        await clearLapsed(tenantId, campaignId);
      }
    }
    for (const [campaignId, entry] of running) {
      if (!seen.has(campaignId) && !entry.winding) {
        entry.winding = true;
        entry.dialer.pause();
      }
      if (entry.winding && entry.dialer.callsInProgress() === 0) {
        await entry.dialer.stop();
        running.delete(campaignId);
        await release(entry.tenantId, campaignId);
        logger.info({ campaign: campaignId }, 'campaign dialer stopped');
      }
    }
  }

  // The round in progress, if any: a hand-over waits for it (it may be claiming a campaign).
  let inFlight: Promise<void> | undefined;
  const tracked = async () => {
    inFlight = round();
    try {
      await inFlight;
    } finally {
      inFlight = undefined;
    }
  };
  const task = runEvery('dialer_service', options.roundMs ?? ROUND_MS, tracked, (error) => logger.error({ err: error instanceof Error ? { name: error.name, message: error.message } : undefined }, 'dialer service round failed'));

  const callsInProgress = () => [...running.values()].reduce((sum, entry) => sum + entry.dialer.callsInProgress(), 0);
  return {
    running: () => [...running.keys()],
    callsInProgress,
    async handOver() {
      if (handingOver || stopping) return;
      handingOver = true;
      // A round already running may claim a campaign after this point: let it finish first.
      await inFlight?.catch(() => undefined);
      for (const [campaignId, entry] of running) {
        entry.winding = true;
        entry.dialer.pause();
        await release(entry.tenantId, campaignId).catch((error: unknown) => logger.warn({ err: error instanceof Error ? { name: error.name } : undefined, campaign: campaignId }, 'campaign not released; another node takes it when its lease lapses'));
      }
      logger.info({ campaigns: running.size, calls: callsInProgress() }, 'stopping: campaigns handed over; following the calls in progress to their end');
    },
    async stop(options: { callDrainMs?: number } = {}) {
      const deadline = Date.now() + (options.callDrainMs ?? 0);
      while (handingOver && callsInProgress() > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
      const left = callsInProgress();
      if (left > 0) logger.warn({ calls: left }, 'stopping with calls in progress; the next owner of their campaigns settles them');
      stopping = true;
      await task.stop();
      for (const router of routers.values()) await router.stop();
      routers.clear();
      for (const [campaignId, entry] of running) {
        await entry.dialer.stop();
        if (!handingOver) await release(entry.tenantId, campaignId).catch(() => undefined);
      }
      running.clear();
    },
  };
}
