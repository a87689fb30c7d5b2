import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { WebSocketServer } from 'ws';
import { loadConfig } from '../src/config.ts';
import { openDatabase } from '../src/db/database.ts';
import { createLogger } from '../src/logger.ts';
import { permissions } from '../src/modules/access/permissions.ts';
import { issueApiToken } from '../src/modules/api-tokens/api-tokens.service.ts';
import { createTenantWithOwner } from '../src/modules/setup/setup.service.ts';
import { createUser } from '../src/modules/users/users.repo.ts';
import { createContact } from '../src/modules/contacts/contacts.service.ts';
import { startCampaign } from '../src/modules/campaigns/campaign-lifecycle.ts';
import { setAgentState } from '../src/modules/agents/agent-states.ts';
import { createCampaignDialer } from '../src/dialer/campaign-dialer.ts';
import { isCallable } from '../src/dialer/calling-window.ts';
import { DialStats } from '../src/dialer/dial-stats.ts';
import { predictivePacer, type FloorState, type Pacer } from '../src/dialer/pacers.ts';
import { VirtualClock } from '../src/telephony/clock.ts';
import { DEFAULT_CALLEE_MODEL } from '../src/telephony/callee-model.ts';
import { seededRandom } from '../src/telephony/random.ts';
import { createSimulator } from '../src/telephony/simulator.ts';
import { buildApp } from '../src/server/app.ts';
import type { BenchRow } from './support.ts';

const AGENTS = 500;
const CONCURRENT = 2_000;
const SECONDS = Number(process.env.BENCH_FLOOR_SECONDS ?? 60);
const CLIENTS = 500;

const quantile = (values: number[], q: number) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN;
};

/** A zone inside 08:00–21:00 now and for the next hours of the run. */
export function zoneOpenNow(): string {
  const zones = ['Europe/Oslo', 'America/New_York', 'America/Los_Angeles', 'Pacific/Honolulu', 'Pacific/Auckland', 'Asia/Tokyo', 'Asia/Kolkata', 'Asia/Dubai'];
  const rule = [{ start: '08:00', end: '21:00' }];
  const zone = zones.find((candidate) => isCallable(new Date(), [candidate], rule) && isCallable(new Date(Date.now() + 30 * 60_000), [candidate], rule));
  if (!zone) throw new Error('no zone is inside its calling hours now');
  return zone;
}

/**
 * The floor at scale, in real time: 500 agents on one campaign, the dialer holding about 2,000
 * simulated calls in progress for 60 s, against the embedded PostgreSQL, while 500 supervisor
 * WebSocket clients receive every agent-state and call event. Measured: the dialer's decision (a
 * pacing round up to its decision: campaign, wrap-ups, waiting callers, floor read, pacer) and the
 * event fan-out latency (commit → NOTIFY → LISTEN → every client). Baselines in the same run: the
 * pacer's decision alone on the same floor in memory, and a bare `ws` server broadcasting as many
 * timestamped messages to 500 clients.
 */
export async function floorScaleBench(): Promise<BenchRow[]> {
  const folder = mkdtempSync(path.join(os.tmpdir(), 'ringvakt-bench-floor-'));
  chmodSync(folder, 0o711);
  const logger = createLogger('warn');
  const config = loadConfig({ RINGVAKT_DATA_DIR: folder, RINGVAKT_LOG_LEVEL: 'warn' });
  const database = await openDatabase(config, logger, { applyMigrations: true });
  try {
    const tenant = await createTenantWithOwner(database, { slug: 'floor', name: 'Floor', ownerEmail: 'owner@floor.example', ownerName: 'Owner', publicUrl: 'http://127.0.0.1' });
    const tenantDb = database.forTenant(tenant.tenantId);
    const crypto = await database.crypto();
    const { token } = await tenantDb.transaction(async (trx) => {
      await trx.updateTable('users').set({ status: 'active' }).where('id', '=', tenant.ownerId).execute();
      return issueApiToken(trx, tenant.tenantId, { userId: tenant.ownerId, name: 'bench', expiresAt: new Date(Date.now() + 3_600_000), scopes: permissions });
    });
    // Contacts enough for the run: ~2,000 calls of ~25 s each, renewed for a minute and more.
    const zone = zoneOpenNow();
    const contactCount = Math.ceil((CONCURRENT / 25) * (SECONDS + 30) * 1.2);
    process.stderr.write(`  floor: creating ${contactCount} contacts and ${AGENTS} agents…\n`);
    const contactIds: string[] = [];
    for (let start = 0; start < contactCount; start += 500) {
      await tenantDb.transaction(async (trx) => {
        for (let index = start; index < Math.min(contactCount, start + 500); index += 1) {
          const created = await createContact(trx, crypto, { name: `Callee ${index}`, phones: [{ kind: 'mobile', number: `+4740${String(index).padStart(6, '0')}` }], timeZone: zone }, { defaultRegion: 'NO' });
          contactIds.push(created.id);
        }
      });
    }
    const campaignId = await tenantDb.transaction(async (trx) => {
      const campaign = await trx
        .insertInto('campaigns')
        .values({ name: 'Floor', jurisdiction: 'uk_ofcom', caller_id: '+441632960000', mode: 'predictive', amd: true, wrap_up_ms: 10_000, retry_rules: JSON.stringify({ busy: { retry: false, afterMinutes: 30 }, no_answer: { retry: false, afterMinutes: 30 }, machine: { retry: false, afterMinutes: 30 }, failed: { retry: false, afterMinutes: 30 }, abandoned: { retry: false, afterMinutes: 4320 } }) })
        .returning('id')
        .executeTakeFirstOrThrow();
      const list = await trx.insertInto('contact_lists').values({ name: 'Floor list', default_region: 'NO', campaign_id: campaign.id }).returning('id').executeTakeFirstOrThrow();
      for (let index = 0; index < contactIds.length; index += 1000) {
        await trx.insertInto('contact_list_members').values(contactIds.slice(index, index + 1000).map((contactId) => ({ list_id: list.id, contact_id: contactId }))).execute();
      }
      await trx.insertInto('suppression_registries').values({ format: 'uk_tps', name: 'TPS' }).execute();
      await startCampaign(trx, campaign.id);
      return campaign.id;
    });
    for (let start = 0; start < AGENTS; start += 100) {
      await tenantDb.transaction(async (trx) => {
        for (let index = start; index < start + 100; index += 1) {
          const user = await createUser(trx, crypto.cipher, { email: `agent${index}@floor.example`, displayName: `Agent ${index}`, role: 'agent' });
          await setAgentState(trx, user.id, { state: 'available', campaignId, now: new Date() });
        }
      });
    }

    // The server and 500 supervisors on the realtime socket.
    const app = await buildApp({ config: { bodyLimitBytes: 65_536, trustProxy: [], tls: undefined, publicUrl: 'http://127.0.0.1' }, logger, database });
    await app.listen({ host: '127.0.0.1', port: 0 });
    const address = app.server.address();
    const port = typeof address === 'object' && address ? address.port : 0;
    const receivers = await startClients(`ws://127.0.0.1:${port}/api/v1/realtime`, token);
    let measuring = false;

    // The dialer in real time, holding ~2,000 calls in progress.
    const clock = new VirtualClock(Date.now());
    const stopClock = clock.followRealTime();
    const simulator = createSimulator({
      clock,
      random: seededRandom(17),
      model: { ...DEFAULT_CALLEE_MODEL, liveRingMs: { kind: 'uniform', minMs: 3_000, maxMs: 15_000 }, talkMs: { kind: 'lognormal', medianMs: 45_000, sigma: 0.5 } },
    });
    const decisions: number[] = [];
    const rounds: number[] = [];
    let peak = 0;
    let inProgress = () => 0;
    const holdConcurrency: Pacer = { name: 'hold-2000', decide: () => ({ dial: Math.max(0, Math.min(150, CONCURRENT - inProgress())), explanation: 'hold the load' }) };
    const predictive = predictivePacer({ cap: 0.03, margin: 0.01 });
    const pacer: Pacer = {
      name: 'bench',
      // The predictive pacer decides on the real floor (its cost is what is measured); the load is held by concurrency.
      decide: (floor) => {
        predictive.decide(floor);
        return holdConcurrency.decide(floor);
      },
    };
    const dialer = createCampaignDialer({
      tenantDb,
      crypto,
      provider: simulator,
      clock,
      campaignId,
      dialerId: 'bench',
      logger,
      pacer,
      onRound: (round) => {
        if (!measuring) return;
        decisions.push(round.decisionMs);
        rounds.push(round.roundMs);
      },
    });
    inProgress = () => dialer.callsInProgress();
    await dialer.start();
    process.stderr.write(`  floor: ramping up to ${CONCURRENT} calls…\n`);
    const rampDeadline = Date.now() + 60_000;
    while (dialer.callsInProgress() < CONCURRENT * 0.95 && Date.now() < rampDeadline) await new Promise((resolve) => setTimeout(resolve, 500));
    measuring = true;
    receivers.start();
    const until = Date.now() + SECONDS * 1000;
    let low = Number.POSITIVE_INFINITY;
    while (Date.now() < until) {
      await new Promise((resolve) => setTimeout(resolve, 1000));
      peak = Math.max(peak, dialer.callsInProgress());
      low = Math.min(low, dialer.callsInProgress());
    }
    measuring = false;
    const fanout = await receivers.stop();
    const counters = dialer.counters();
    dialer.pause();
    await dialer.stop();
    stopClock();
    await app.close();

    // Baseline 1: the pacer's decision alone, in memory, on a floor like ours.
    const stats = new DialStats({ liveShare: 0.3, readyAfterMs: 12_000, talkMedianMs: 45_000, talkSigma: 0.5 });
    const baselinePacer = predictivePacer({ cap: 0.03, margin: 0.01 });
    const floor: FloorState = {
      now: Date.now(),
      windowStart: Date.now() - 3_600_000,
      agents: { logged: AGENTS, idle: 20, talkingElapsedMs: Array.from({ length: 430 }, (_, index) => index * 200), wrapRemainingMs: Array.from({ length: 50 }, (_, index) => index * 150) },
      outstandingAgesMs: Array.from({ length: 1_500 }, (_, index) => index * 15),
      waiting: 5,
      wrapMs: 10_000,
      stats,
    };
    const pureDecisions: number[] = [];
    for (let index = 0; index < 2_000; index += 1) {
      const started = performance.now();
      baselinePacer.decide({ ...floor, now: floor.now + index * 250 });
      pureDecisions.push(performance.now() - started);
    }

    // Baseline 2: a bare ws server broadcasting as many timestamped messages to 500 clients.
    const perSecond = fanout.count / CLIENTS / SECONDS;
    const bare = await bareBroadcast(perSecond, Math.min(SECONDS, 20));

    const decisionP99 = quantile(decisions, 0.99);
    const fanoutP99 = fanout.p99 ?? Number.NaN;
    process.stderr.write(
      `  floor: calls in progress ${low}–${peak} over ${SECONDS} s; dialed ${counters.dialed}, connected ${counters.connected}, abandoned ${counters.abandoned}, errors ${counters.errors}; ` +
        `decision p50 ${quantile(decisions, 0.5).toFixed(1)} ms, p99 ${decisionP99.toFixed(1)} ms over ${decisions.length} rounds; whole round (with its dials) p50 ${quantile(rounds, 0.5).toFixed(0)} ms, p99 ${quantile(rounds, 0.99).toFixed(0)} ms; ` +
        `fan-out ${fanout.count} deliveries (${perSecond.toFixed(1)} events/s to each of ${CLIENTS}; ${fanout.closed} clients cut off), p50 ${fanout.p50 ?? '–'} ms, p99 ${fanoutP99} ms; bare ws p99 ${bare.p99 ?? '–'} ms\n`,
    );
    return [
      { name: 'floor: calls in progress (lowest over the run)', unit: 'calls', ours: low, baseline: CONCURRENT, higherIsBetter: true, target: `≥ ${CONCURRENT * 0.9}`, met: low >= CONCURRENT * 0.9 },
      { name: 'floor: dialer decision p99 (500 agents)', unit: 'ms', ours: decisionP99, baseline: quantile(pureDecisions, 0.99), higherIsBetter: false, target: '≤ 50 ms', met: decisionP99 <= 50 },
      { name: `floor: event fan-out p99 (${CLIENTS} clients)`, unit: 'ms', ours: fanoutP99, baseline: bare.p99 ?? Number.NaN, higherIsBetter: false, target: '≤ 200 ms', met: fanoutP99 <= 200 && fanout.closed === 0 },
    ];
  } finally {
    await database.close();
    rmSync(folder, { recursive: true, force: true });
  }
}

type Receivers = { start(): void; stop(): Promise<{ count: number; p50: number | null; p99: number | null; closed: number }> };

/** CLIENTS WebSocket clients in a process of their own (bench/servers/realtime-clients.ts). */
async function startClients(url: string, token?: string): Promise<Receivers> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'bench/servers/realtime-clients.ts'], {
    env: { ...process.env, URL: url, CLIENTS: String(CLIENTS), ...(token ? { TOKEN: token } : {}) },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const deadline = Date.now() + 120_000;
  while (!output.includes('listening')) {
    if (child.exitCode !== null || Date.now() > deadline) throw new Error('the realtime clients did not connect');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return {
    start: () => child.stdin.write('start\n'),
    async stop() {
      child.stdin.write('stop\n');
      await once(child, 'exit');
      const line = output.split('\n').find((entry) => entry.startsWith('{'));
      return JSON.parse(line ?? '{"count":0,"p50":null,"p99":null,"closed":0}') as { count: number; p50: number | null; p99: number | null; closed: number };
    },
  };
}

/** A bare ws server sending `perSecond` timestamped messages a second to 500 clients (in their own process). */
async function bareBroadcast(perSecond: number, seconds: number): Promise<{ p99: number | null }> {
  const server = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise((resolve) => server.once('listening', resolve));
  const { port } = server.address() as { port: number };
  const receivers = await startClients(`ws://127.0.0.1:${port}`);
  receivers.start();
  const total = Math.max(1, Math.round(perSecond * seconds));
  const started = Date.now();
  for (let index = 0; index < total; index += 1) {
    const message = JSON.stringify({ topic: 'agent.state', agentId: 'x', state: 'available', at: Date.now() });
    for (const connection of server.clients) connection.send(message);
    const due = started + ((index + 1) * 1000) / Math.max(1, perSecond);
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, due - Date.now())));
  }
  await new Promise((resolve) => setTimeout(resolve, 500));
  const result = await receivers.stop();
  await new Promise((resolve) => server.close(resolve));
  return result;
}
