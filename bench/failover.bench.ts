import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadConfig } from '../src/config.ts';
import { openDatabase, type DatabaseHandles } from '../src/db/database.ts';
import { startDialerService } from '../src/dialer/dialer-service.ts';
import { createLogger } from '../src/logger.ts';
import { startNodePresence } from '../src/operations/node-presence.ts';
import { VirtualClock } from '../src/telephony/clock.ts';
import { seededRandom } from '../src/telephony/random.ts';
import { createSimulator } from '../src/telephony/simulator.ts';
import { ALL_BUSY, createCallees, startedCampaign, zoneOpenNow } from '../test/support/dialer-floor.ts';
import { seedTenant } from '../test/support/seed.ts';
import type { BenchRow } from './support.ts';

const ROUNDS = 3;

/**
 * Failover of singleton work: node A (its own process) runs a campaign's dialer; node B runs
 * alongside. A is killed (SIGKILL) and the time until B owns the campaign is measured — ROUNDS
 * times, the worst counts. Baseline: the same with A frozen (SIGSTOP: alive, its sessions open),
 * which B must not take over before the long grace; that is the takeover time without knowing
 * that a node is gone.
 */
export async function failoverBench(): Promise<BenchRow[]> {
  const folder = mkdtempSync(path.join(os.tmpdir(), 'ringvakt-bench-failover-'));
  chmodSync(folder, 0o711);
  const logger = createLogger('silent');
  const handles: DatabaseHandles = await openDatabase(loadConfig({ RINGVAKT_DATA_DIR: folder }), logger, { applyMigrations: true });
  const adminUrl = new URL(handles.embedded!.adminUrl);
  adminUrl.pathname = '/ringvakt';
  const tenant = await seedTenant(handles, 'failover-bench');
  const tenantDb = handles.forTenant(tenant.tenantId);
  const children: ChildProcess[] = [];
  const owner = async (campaignId: string) =>
    (await tenantDb.read((trx) => trx.selectFrom('campaigns').select('dialer_owner').where('id', '=', campaignId).executeTakeFirstOrThrow())).dialer_owner;
  /** A fresh campaign, owned by a new node A in its own process. */
  const nodeAOwning = async (name: string, prefix: string) => {
    await tenantDb.transaction((trx) => trx.updateTable('campaigns').set({ state: 'paused' }).where('state', '=', 'active').execute());
    const callees = await createCallees(tenantDb, handles, 20, prefix, zoneOpenNow());
    const campaignId = await startedCampaign(tenantDb, callees.ids, { name, retryRules: { busy: { retry: false, afterMinutes: 30 } } });
    const child = spawn(process.execPath, ['--import', 'tsx', 'test/support/dialer-node.ts'], {
      env: { ...process.env, DATABASE_URL: adminUrl.toString(), RINGVAKT_DATA_DIR: folder, NODE_ID: `node-a-${name}` },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    children.push(child);
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (chunk: Buffer) => {
        if (chunk.toString().includes(`running ${campaignId}`)) resolve();
      });
      child.on('exit', (code) => reject(new Error(`node A exited (${code})`)));
    });
    return { campaignId, child };
  };
  /** Node B running alongside (started once A owns the campaign); A gets `signal`; seconds until B owns it. */
  const takeover = async (campaignId: string, child: ChildProcess, signal: NodeJS.Signals) => {
    const clock = new VirtualClock(Date.now());
    const stopClock = clock.followRealTime();
    const presence = startNodePresence({ connectionString: String(handles.pool.options.connectionString), nodeId: 'node-b', logger });
    const nodeB = startDialerService({ systemDb: handles.systemDb, crypto: handles.crypto, provider: createSimulator({ clock, random: seededRandom(9), model: ALL_BUSY }), clock, nodeId: 'node-b', logger, presence });
    try {
      // B has been up a while, as a cluster's nodes are (its presence settles in 5 s).
      await new Promise((resolve) => setTimeout(resolve, 6_000));
      if ((await owner(campaignId)) === 'node-b') throw new Error('node B took a live node’s campaign');
      const killedAt = performance.now();
      child.kill(signal);
      while ((await owner(campaignId)) !== 'node-b') await new Promise((resolve) => setTimeout(resolve, 20));
      return (performance.now() - killedAt) / 1000;
    } finally {
      child.kill('SIGKILL');
      await nodeB.stop();
      await presence.stop();
      stopClock();
    }
  };
  try {
    const killed: number[] = [];
    for (let round = 0; round < ROUNDS; round += 1) {
      const { campaignId, child } = await nodeAOwning(`killed-${round}`, `+479${round + 1}`);
      killed.push(await takeover(campaignId, child, 'SIGKILL'));
    }
    const { campaignId, child } = await nodeAOwning('frozen', '+4795');
    const frozen = await takeover(campaignId, child, 'SIGSTOP');
    const worst = Math.max(...killed);
    return [
      { name: `failover of a campaign's dialer after SIGKILL of its node, worst of ${ROUNDS} (baseline: a frozen node, taken over only after the grace)`, unit: 's', ours: worst, baseline: frozen, higherIsBetter: false, target: '≤ 5 s', met: worst <= 5 },
    ];
  } finally {
    for (const child of children) child.kill('SIGKILL');
    await handles.close();
    rmSync(folder, { recursive: true, force: true });
  }
}
