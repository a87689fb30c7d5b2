import pg from 'pg';
import type { Config } from '../config.ts';
import type { Logger } from '../logger.ts';
import { attachToRunningEmbedded, startEmbeddedPostgres, type EmbeddedCluster } from './embedded-postgres.ts';

/**
 * The database the migrator connects to, and the embedded server behind it when there is one. Kept
 * apart from database.ts (and light to import): `npm start` boots the embedded server through it
 * while the rest of the code is still loading (src/serve-main.ts).
 */
export const EMBEDDED_DATABASE = 'ringvakt';

export type MigratorTarget = { migratorUrl: string; embedded: EmbeddedCluster | undefined };

/** Where the migrator connects: DATABASE_URL, or the embedded server (started here). */
export async function resolveMigratorUrl(
  config: Config,
  logger: Logger,
  attach: boolean,
): Promise<MigratorTarget> {
  if (config.databaseUrl) return { migratorUrl: config.databaseUrl, embedded: undefined };
  const embedded =
    (attach ? attachToRunningEmbedded(config.dataDir) : undefined) ??
    (await startEmbeddedPostgres({ dataDir: config.dataDir, logger }));
  try {
    const admin = new pg.Client({ connectionString: embedded.adminUrl });
    await admin.connect();
    try {
      const exists = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [EMBEDDED_DATABASE]);
      if (exists.rowCount === 0) await admin.query(`CREATE DATABASE ${EMBEDDED_DATABASE}`);
    } finally {
      await admin.end();
    }
  } catch (error) {
    await embedded.stop();
    throw error;
  }
  const url = new URL(embedded.adminUrl);
  url.pathname = `/${EMBEDDED_DATABASE}`;
  return { migratorUrl: url.toString(), embedded };
}

