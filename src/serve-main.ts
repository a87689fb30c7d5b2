import { loadConfig } from './config.ts';
import { createLogger } from './logger.ts';
import { resolveMigratorUrl, type MigratorTarget } from './db/embedded-database.ts';
import { ensureWebBuilt } from '../bin/web-build-check.js';

/**
 * `npm start`: what `ringvakt serve` runs, started faster. The embedded PostgreSQL boots (a child
 * process: most of its start is waiting) while the rest of the server's code loads, instead of
 * after it; the two used to add up. The web application is built first if web/ changed since its
 * last build (in this process: no second Node start). Everything else is `ringvakt serve` as it is.
 */
let target: Promise<MigratorTarget> | undefined;
try {
  const config = loadConfig();
  const logger = createLogger(config.logLevel, process.stderr);
  target = resolveMigratorUrl(config, logger, false);
  // The boot's failure is reported by the start that awaits it, not as an unhandled rejection meanwhile.
  target.catch(() => undefined);
  await ensureWebBuilt();
  const [{ startServer }, { stopOnSignals }] = await Promise.all([import('./server/serve.ts'), import('./server/stop-on-signals.ts')]);
  stopOnSignals(await startServer(config, logger, { target }), logger);
} catch (error) {
  // A start that failed after the embedded server came up stops it (startServer does so itself
  // for its own failures; this covers a failure to load the code).
  const started = await target?.catch(() => undefined);
  await started?.embedded?.stop().catch(() => undefined);
  const { fail } = await import('./cli-fail.ts');
  fail(error);
}
