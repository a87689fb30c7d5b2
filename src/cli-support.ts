import { loadConfig, type Config } from './config.ts';
import { openDatabase, type DatabaseHandles } from './db/database.ts';
import { createLogger, type Logger } from './logger.ts';
import { AppError } from './server/errors.ts';

/** What every CLI command starts from: the validated configuration and a logger on stderr. */
export function cliContext(): { config: Config; logger: Logger } {
  const config = loadConfig();
  // CLI commands log to stderr so that stdout carries only their result (a link, a token, SQL).
  return { config, logger: createLogger(config.logLevel, process.stderr) };
}

/**
 * Runs a CLI command against the database — the embedded server a running `serve` started, if
 * there is one — and always closes it again.
 */
export async function withCliDatabase<T>(
  work: (database: DatabaseHandles, context: { config: Config; logger: Logger }) => Promise<T>,
  options: { ownerAccess?: boolean } = {},
): Promise<T> {
  const context = cliContext();
  const database = await openDatabase(context.config, context.logger, { applyMigrations: true, attachToRunning: true, ...options });
  try {
    return await work(database, context);
  } finally {
    await database.close();
  }
}

/** The id of the tenant with this slug; a clear error when there is none. */
export async function requireTenantId(database: DatabaseHandles, slug: string): Promise<string> {
  const tenantId = await database.systemDb.tenantIdBySlug(slug);
  if (!tenantId) throw new AppError('not_found', `No tenant "${slug}".`);
  return tenantId;
}
