/**
 * A server node's import worker, for the kill test: it holds its presence lock and runs the same
 * worker tick as `ringvakt serve` (each import in a worker thread), printing "ready" once its
 * presence has settled (from then on it may take over a dead node's import). The test kills it.
 */
import { loadConfig } from '../../src/config.ts';
import { openDatabase } from '../../src/db/database.ts';
import { createLogger } from '../../src/logger.ts';
import { importWorkerTick } from '../../src/modules/imports/claim-import.ts';
import { runImportInThread } from '../../src/modules/imports/import-thread.ts';
import { startNodePresence } from '../../src/operations/node-presence.ts';
import { runEvery } from '../../src/background-task.ts';

const env = process.env;
const config = loadConfig({ DATABASE_URL: env.DATABASE_URL, RINGVAKT_DATA_DIR: env.RINGVAKT_DATA_DIR, RINGVAKT_KEY_PROVIDER: 'env', RINGVAKT_ROOT_KEY: env.RINGVAKT_ROOT_KEY, RINGVAKT_LOG_LEVEL: 'silent' });
const logger = createLogger('silent');
const handles = await openDatabase(config, logger, { applyMigrations: false, ownerAccess: false });
const connectionString = String(handles.pool.options.connectionString);
const nodeId = env.NODE_ID ?? 'import-node';
const presence = startNodePresence({ connectionString, nodeId, logger });
const tick = importWorkerTick(handles.systemDb, (tenantDb, importId, owner, hooks) => runImportInThread(tenantDb, { connectionString, config, importId, owner }, hooks), logger, () => false, { owner: nodeId, presence });
const settled = setInterval(() => {
  if (presence.settled()) {
    clearInterval(settled);
    process.stdout.write('ready\n');
    runEvery('contact_import', 200, tick, () => undefined);
  }
}, 50);
