// Ringvakt's HTTP stack with two identical bench routes, one public and one needing a session,
// against the benchmark's database (the session is made by the bench before this starts).
import { loadConfig } from '../../src/config.ts';
import { openDatabase } from '../../src/db/database.ts';
import { createLogger } from '../../src/logger.ts';
import { buildApp } from '../../src/server/app.ts';

const config = loadConfig();
const logger = createLogger('warn');
const database = await openDatabase(config, logger, { applyMigrations: false });
const app = await buildApp({ config, logger, database });
const handler = async () => ({ ok: true, at: 'bench' });
app.get('/bench/open', { config: { access: 'public' } }, handler);
app.get('/bench/checked', { config: { access: 'authenticated' } }, handler);
await app.listen({ host: config.host, port: config.port });
process.stdout.write('listening\n');
process.on('SIGTERM', () => void app.close().then(() => database.close()).then(() => process.exit(0)));
