/**
 * One dialer process for the exactly-once test: it opens the database the way a second server
 * would (same data directory, same key file), runs the campaign dialer with the simulator until the
 * campaign's hopper is empty, and prints the numbers it dialed as JSON on stdout.
 */
import { loadConfig } from '../../src/config.ts';
import { openDatabase } from '../../src/db/database.ts';
import { createLogger } from '../../src/logger.ts';
import { ALL_BUSY, floorFor } from './dialer-floor.ts';

const env = process.env;
const config = loadConfig({ DATABASE_URL: env.DATABASE_URL, RINGVAKT_DATA_DIR: env.RINGVAKT_DATA_DIR, RINGVAKT_LOG_LEVEL: 'silent' });
const logger = createLogger('silent');
const handles = await openDatabase(config, logger, { applyMigrations: false, ownerAccess: false });
const tenantDb = handles.forTenant(env.TENANT_ID ?? '');
const campaignId = env.CAMPAIGN_ID ?? '';
const startMs = Number(env.START_MS);
// As many lines as the hopper will give: the two processes race for the same contacts.
const greedy = { name: 'greedy', decide: () => ({ dial: 7, explanation: 'race' }) };
const floor = await floorFor({ tenantDb, handles, campaignId, model: ALL_BUSY, startMs, logger, pacer: greedy, dialerId: env.DIALER_ID ?? 'process', seed: Number(env.SEED ?? 1) });
const deadline = Date.now() + 60_000;
for (;;) {
  await floor.run(floor.clock.now() + 1_000, 100);
  const left = await tenantDb.read((trx) => trx.selectFrom('campaign_contacts').select((eb) => eb.fn.countAll<string>().as('n')).where('campaign_id', '=', campaignId).where('state', '<>', 'done').executeTakeFirstOrThrow());
  if ((Number(left.n) === 0 && floor.dialer.callsInProgress() === 0) || Date.now() > deadline) break;
}
process.stdout.write(JSON.stringify({ dialed: floor.sent.map((dial) => dial.to), counters: floor.dialer.counters() }));
await handles.close();
