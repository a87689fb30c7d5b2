// Ringvakt's whole stack, as `ringvakt serve` runs it, against the benchmark's database.
import { loadConfig } from '../../src/config.ts';
import { createLogger } from '../../src/logger.ts';
import { startServer } from '../../src/server/serve.ts';

const config = loadConfig();
const server = await startServer(config, createLogger('warn'));
process.stdout.write('listening\n');
process.on('SIGTERM', () => void server.stop('bench').then(() => process.exit(0)));
