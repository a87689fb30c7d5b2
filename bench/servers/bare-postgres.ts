// Startup baseline: only the embedded PostgreSQL server starting (initdb on first run), no app.
import { startEmbeddedPostgres } from '../../src/db/embedded-postgres.ts';
import { createLogger } from '../../src/logger.ts';

const cluster = await startEmbeddedPostgres({ dataDir: String(process.env.RINGVAKT_DATA_DIR), logger: createLogger('warn') });
process.stdout.write('listening\n');
process.on('SIGTERM', () => void cluster.stop().then(() => process.exit(0)));
