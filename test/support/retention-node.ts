/**
 * A node running one retention sweep of a tenant, for the failover test: it holds its presence
 * lock (as a server does), begins the sweep, prints "sweeping <id>", and works through it; the test
 * kills it part-way and another node must resume the sweep.
 */
import { loadConfig } from '../../src/config.ts';
import { openDatabase } from '../../src/db/database.ts';
import { createLogger } from '../../src/logger.ts';
import { startNodePresence } from '../../src/operations/node-presence.ts';
import { beginSweep, runSweep } from '../../src/privacy/retention.ts';

const env = process.env;
const config = loadConfig({ DATABASE_URL: env.DATABASE_URL, RINGVAKT_DATA_DIR: env.RINGVAKT_DATA_DIR, RINGVAKT_LOG_LEVEL: 'silent' });
const logger = createLogger('silent');
const handles = await openDatabase(config, logger, { applyMigrations: false, ownerAccess: false });
const node = env.NODE_ID ?? 'sweep-a';
const presence = startNodePresence({ connectionString: String(handles.pool.options.connectionString), nodeId: node, logger });
await presence.ready();
const tenantDb = handles.forTenant(env.TENANT_ID ?? '');
const options = { dryRun: false, requestedBy: 'schedule', node };
const id = await beginSweep(tenantDb, options);
if (!id) throw new Error('a sweep is running already');
process.stdout.write(`sweeping ${id}\n`);
await runSweep(tenantDb, await handles.crypto(), id, options);
process.stdout.write('done\n');
await presence.stop();
await handles.close();
