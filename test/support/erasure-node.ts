/**
 * A node erasing subjects one by one, for the kill test: each erasure commits with its ledger
 * entry and is then mirrored to the ledger file; the test kills this process at a random moment.
 */
import { loadConfig } from '../../src/config.ts';
import { openDatabase } from '../../src/db/database.ts';
import { createLogger } from '../../src/logger.ts';
import { eraseSubject, fileLedgerMirror } from '../../src/privacy/erasure.ts';

const env = process.env;
const config = loadConfig({ DATABASE_URL: env.DATABASE_URL, RINGVAKT_DATA_DIR: env.RINGVAKT_DATA_DIR, RINGVAKT_KEY_PROVIDER: 'env', RINGVAKT_ROOT_KEY: env.RINGVAKT_ROOT_KEY, RINGVAKT_LOG_LEVEL: 'silent' });
const handles = await openDatabase(config, createLogger('silent'), { applyMigrations: false, ownerAccess: false });
const tenantDb = handles.forTenant(env.TENANT_ID ?? '');
const crypto = await handles.crypto();
const mirror = fileLedgerMirror(env.MIRROR_FILE ?? '');
process.stdout.write('started\n');
for (const contactId of (env.CONTACT_IDS ?? '').split(',')) {
  await tenantDb.transaction((trx) => eraseSubject(trx, crypto, contactId, { reason: 'operator', mirror }));
}
process.stdout.write('done\n');
await handles.close();
