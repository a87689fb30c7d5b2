import type { TenantDb } from '../../src/db/tenant-db.ts';
import type { DatabaseHandles } from '../../src/db/database.ts';
import { createContact } from '../../src/modules/contacts/contacts.service.ts';
import { startCampaign } from '../../src/modules/campaigns/campaign-lifecycle.ts';
import { setAgentState } from '../../src/modules/agents/agent-states.ts';
import { createUser } from '../../src/modules/users/users.repo.ts';
import { createCampaignDialer, type CampaignDialer } from '../../src/dialer/campaign-dialer.ts';
import { isCallable, nextCallable, type WindowRule } from '../../src/dialer/calling-window.ts';
import type { Pacer } from '../../src/dialer/pacers.ts';
import { VirtualClock } from '../../src/telephony/clock.ts';
import { DEFAULT_CALLEE_MODEL, type CalleeModel } from '../../src/telephony/callee-model.ts';
import { seededRandom } from '../../src/telephony/random.ts';
import { createSimulator, type SimulatorProvider } from '../../src/telephony/simulator.ts';
import type { TelephonyEvent, TelephonyProvider } from '../../src/telephony/provider.ts';
import type { Logger } from '../../src/logger.ts';
import { registerPersonalData } from './canary.ts';

/** Everyone answers in person after 3 s of ringing and talks 30 s; nobody hangs up waiting. */
export const ALL_LIVE: CalleeModel = {
  ...DEFAULT_CALLEE_MODEL,
  outcomes: { live: 1, machine: 0, busy: 0, noAnswer: 0, failed: 0 },
  setupMs: { kind: 'fixed', ms: 200 },
  liveRingMs: { kind: 'fixed', ms: 3_000 },
  talkMs: { kind: 'fixed', ms: 30_000 },
  patienceMs: { kind: 'fixed', ms: 60_000 },
  amd: { humanAsHuman: 1, machineAsMachine: 1, delayMs: { kind: 'fixed', ms: 1_000 } },
  playMs: { kind: 'fixed', ms: 5_000 },
};

export const ALL_BUSY: CalleeModel = { ...ALL_LIVE, outcomes: { live: 0, machine: 0, busy: 1, noAnswer: 0, failed: 0 } };

/** The first minute from the real now at which Oslo is inside the UK profile's hours (08–21). */
export function openMinuteInOslo(rules: readonly WindowRule[] = [{ start: '08:00', end: '21:00' }]): number {
  const at = nextCallable(new Date(), ['Europe/Oslo'], rules);
  if (!at) throw new Error('no open minute');
  // A little into the window, so a few minutes of calls stay inside it.
  return Math.max(at.getTime(), Date.now()) + 60_000;
}

/**
 * A zone whose local time is well inside 08:00–21:00 for the next quarter of an hour, for tests
 * that dial in real time (whenever they run).
 */
export function zoneOpenNow(): string {
  const zones = ['Europe/Oslo', 'America/New_York', 'America/Los_Angeles', 'Pacific/Honolulu', 'Pacific/Auckland', 'Asia/Tokyo', 'Asia/Kolkata', 'Asia/Dubai'];
  const rule = [{ start: '08:00', end: '21:00' }];
  const zone = zones.find((candidate) => isCallable(new Date(), [candidate], rule) && isCallable(new Date(Date.now() + 15 * 60_000), [candidate], rule));
  if (!zone) throw new Error('no zone is inside its calling hours now');
  return zone;
}

export async function createCallees(tenantDb: TenantDb, handles: DatabaseHandles, count: number, prefix = '+4791', timeZone?: string): Promise<{ ids: string[]; numbers: string[] }> {
  const crypto = await handles.crypto();
  const ids: string[] = [];
  const numbers: string[] = [];
  await tenantDb.transaction(async (trx) => {
    for (let index = 0; index < count; index += 1) {
      const number = `${prefix}${String(index).padStart(6, '0')}`;
      const name = `Callee ${prefix} ${index}`;
      registerPersonalData(name);
      const created = await createContact(trx, crypto, { name, phones: [{ kind: 'mobile', number }], ...(timeZone ? { timeZone } : {}) }, { defaultRegion: 'NO' });
      ids.push(created.id);
      numbers.push(number);
    }
  });
  return { ids, numbers };
}

/** A campaign on the UK profile over one list of the given contacts, started (hopper loaded). */
export async function startedCampaign(
  tenantDb: TenantDb,
  contactIds: readonly string[],
  settings: { name: string; jurisdiction?: string; mode?: 'preview' | 'progressive' | 'predictive'; retryRules?: Record<string, unknown>; amd?: boolean; wrapUpMs?: number; maxAttempts?: number } = { name: 'Floor' },
): Promise<string> {
  return tenantDb.transaction(async (trx) => {
    const campaign = await trx
      .insertInto('campaigns')
      .values({
        name: settings.name,
        jurisdiction: settings.jurisdiction ?? 'uk_ofcom',
        caller_id: '+441632960000',
        mode: settings.mode ?? 'progressive',
        amd: settings.amd ?? false,
        wrap_up_ms: settings.wrapUpMs ?? 5_000,
        max_attempts: settings.maxAttempts ?? 3,
        retry_rules: JSON.stringify(settings.retryRules ?? {}),
      })
      .returning('id')
      .executeTakeFirstOrThrow();
    const list = await trx.insertInto('contact_lists').values({ name: `${settings.name} list`, default_region: 'NO', campaign_id: campaign.id }).returning('id').executeTakeFirstOrThrow();
    for (let index = 0; index < contactIds.length; index += 500) {
      await trx.insertInto('contact_list_members').values(contactIds.slice(index, index + 500).map((contactId) => ({ list_id: list.id, contact_id: contactId }))).execute();
    }
    for (const format of ['uk_tps', 'us_dnc', 'no_reservasjon'] as const) {
      await trx.insertInto('suppression_registries').values({ format, name: `${format} register` }).onConflict((conflict) => conflict.columns(['tenant_id', 'format']).doNothing()).execute();
    }
    await startCampaign(trx, campaign.id);
    return campaign.id;
  });
}

/** Agents (new users with the agent role), logged in to the campaign and available, oldest first. */
export async function availableAgents(tenantDb: TenantDb, handles: DatabaseHandles, campaignId: string, count: number, at: Date, tag = 'floor'): Promise<string[]> {
  const { cipher } = await handles.crypto();
  const ids: string[] = [];
  for (let index = 0; index < count; index += 1) {
    const email = `agent${index}.${tag}.${campaignId.slice(0, 8)}@floor.example`;
    registerPersonalData(email);
    const user = await tenantDb.transaction((trx) => createUser(trx, cipher, { email, displayName: `Floor agent ${index}`, role: 'agent' }));
    await tenantDb.transaction((trx) => setAgentState(trx, user.id, { state: 'available', campaignId, now: new Date(at.getTime() - (count - index) * 1000) }));
    ids.push(user.id);
  }
  return ids;
}

/** A pacer that asks for `lines` dials every round, whatever the floor (tests of what happens to a dial). */
export function steadyPacer(lines: number): Pacer {
  return { name: `steady-${lines}`, decide: () => ({ dial: lines, explanation: `dialing ${lines} lines (test pacing)` }) };
}

export type Floor = { clock: VirtualClock; simulator: SimulatorProvider; dialer: CampaignDialer; sent: { to: string; legId: string }[] };

/** A dialer over the simulator on a virtual clock, listening; `run` steps pacing and the calls. */
export async function floorFor(options: {
  tenantDb: TenantDb;
  handles: DatabaseHandles;
  campaignId: string;
  model: CalleeModel;
  startMs: number;
  logger: Logger;
  pacer?: Pacer;
  seed?: number;
  dialerId?: string;
}): Promise<Floor & { run(untilMs: number, stepMs?: number): Promise<void>; inject(event: TelephonyEvent): void }> {
  const clock = new VirtualClock(options.startMs);
  const simulator = createSimulator({ clock, random: seededRandom(options.seed ?? 11), model: options.model });
  const sent: { to: string; legId: string }[] = [];
  const listeners = new Set<(event: TelephonyEvent) => void>();
  // The dialer sees the simulator through a recorder of every dial it sends.
  const provider: TelephonyProvider = {
    capabilities: () => simulator.capabilities(),
    async send(command) {
      if (command.kind === 'dial') sent.push({ to: command.to, legId: command.legId });
      return simulator.send(command);
    },
    fetchRecording: (recordingId) => simulator.fetchRecording(recordingId),
    onEvent: (listener) => {
      listeners.add(listener);
      const unsubscribe = simulator.onEvent(listener);
      return () => {
        listeners.delete(listener);
        unsubscribe();
      };
    },
  };
  const crypto = await options.handles.crypto();
  const dialer = createCampaignDialer({
    tenantDb: options.tenantDb,
    crypto,
    provider,
    clock,
    campaignId: options.campaignId,
    dialerId: options.dialerId ?? 'test-dialer',
    logger: options.logger,
    ...(options.pacer ? { pacer: options.pacer } : {}),
  });
  await dialer.listen();
  return {
    clock,
    simulator,
    dialer,
    sent,
    /** An event as if the network sent it (duplicates, strays). */
    inject(event) {
      for (const listener of listeners) listener(event);
    },
    async run(untilMs, stepMs = 250) {
      while (clock.now() < untilMs) {
        await dialer.tick();
        clock.runUntil(Math.min(untilMs, clock.now() + stepMs));
        await dialer.settled();
      }
    },
  };
}
