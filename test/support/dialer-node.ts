/**
 * A second server node for the failover tests: it opens the database the way another `serve`
 * would (same data directory and keys), holds its presence lock, runs the dialer service, and
 * prints "running <campaign>" once it owns a campaign. The test then kills (or freezes) it, or
 * stops it with SIGTERM as a service manager would: it hands its campaigns over, follows its calls
 * to their end, prints "stopped" and exits 0. MODEL=live: everyone answers and talks TALK_MS.
 */
import { loadConfig } from '../../src/config.ts';
import { openDatabase } from '../../src/db/database.ts';
import { startDialerService } from '../../src/dialer/dialer-service.ts';
import { createLogger } from '../../src/logger.ts';
import { startNodePresence } from '../../src/operations/node-presence.ts';
import { VirtualClock } from '../../src/telephony/clock.ts';
import { seededRandom } from '../../src/telephony/random.ts';
import { createSimulator } from '../../src/telephony/simulator.ts';
import { ALL_BUSY, ALL_LIVE } from './dialer-floor.ts';

const env = process.env;
const config = loadConfig({
  DATABASE_URL: env.DATABASE_URL,
  RINGVAKT_DATA_DIR: env.RINGVAKT_DATA_DIR,
  RINGVAKT_LOG_LEVEL: 'silent',
  ...(env.RINGVAKT_ROOT_KEY ? { RINGVAKT_KEY_PROVIDER: 'env', RINGVAKT_ROOT_KEY: env.RINGVAKT_ROOT_KEY } : {}),
});
const logger = createLogger('silent');
const handles = await openDatabase(config, logger, { applyMigrations: false, ownerAccess: false });
const nodeId = env.NODE_ID ?? 'node-a';
const presence = startNodePresence({ connectionString: String(handles.pool.options.connectionString), nodeId, logger });
const model = env.MODEL === 'live' ? { ...ALL_LIVE, talkMs: { kind: 'fixed' as const, ms: Number(env.TALK_MS ?? 30_000) } } : ALL_BUSY;
const clock = new VirtualClock(Date.now());
clock.followRealTime();
const service = startDialerService({ systemDb: handles.systemDb, crypto: handles.crypto, provider: createSimulator({ clock, random: seededRandom(3), model }), clock, nodeId, logger, presence });
const said = new Set<string>();
setInterval(() => {
  for (const campaignId of service.running()) {
    if (presence.held() && !said.has(campaignId)) {
      said.add(campaignId);
      process.stdout.write(`running ${campaignId}\n`);
    }
  }
}, 50);
process.once('SIGTERM', () => {
  void (async () => {
    await service.handOver();
    process.stdout.write(`handed over with ${service.callsInProgress()} calls\n`);
    await service.stop({ callDrainMs: 30_000 });
    await presence.stop();
    await handles.close();
    process.stdout.write('stopped\n');
    process.exit(0);
  })();
});
