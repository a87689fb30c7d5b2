/**
 * A server node for the evidence-run failover test: it opens the database as another `serve`
 * would and runs only the daily compliance schedule, looking every EVERY_MS; it prints "ready"
 * once the schedule runs. The test kills it (SIGKILL) at a random moment.
 */
import { loadConfig } from '../../src/config.ts';
import { openDatabase } from '../../src/db/database.ts';
import { createLogger } from '../../src/logger.ts';
import { startComplianceSchedule } from '../../src/compliance/schedule.ts';

const env = process.env;
const config = loadConfig({ DATABASE_URL: env.DATABASE_URL, RINGVAKT_DATA_DIR: env.RINGVAKT_DATA_DIR, RINGVAKT_LOG_LEVEL: 'silent' });
const logger = createLogger('silent');
const handles = await openDatabase(config, logger, { applyMigrations: false, ownerAccess: false });
startComplianceSchedule({ systemDb: handles.systemDb, crypto: await handles.crypto(), logger, everyMs: Number(env.EVERY_MS ?? 200) });
process.stdout.write('ready\n');
