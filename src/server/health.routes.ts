import { createHash, timingSafeEqual } from 'node:crypto';
import { z } from '../zod.ts';
import type { Registry } from 'prom-client';
import type { SystemDb } from '../db/system-db.ts';
import type { App } from './types.ts';
import { AppError } from './errors.ts';
import { problemResponses } from './schemas.ts';

export type HealthOptions = {
  systemDb: SystemDb;
  metricsToken: string | undefined;
  expectedMigrations: number[];
  registry: Registry;
  isShuttingDown(): boolean;
  /** Throws when the root key provider cannot wrap and unwrap now (probeRootKeys). */
  checkKeyProvider(): Promise<void>;
};

/** A key provider's answer serves readiness checks this long (a load balancer may ask every second). */
const KEY_CHECK_CACHE_MS = 10_000;
const KEY_CHECK_TIMEOUT_MS = 3_000;

const isLoopback = (address: string | undefined) =>
  address !== undefined && (address === '::1' || address.startsWith('127.') || address.startsWith('::ffff:127.'));

const readySchema = z.object({ status: z.literal('ready'), migrations: z.number().int() });

export async function healthRoutes(app: App, options: HealthOptions): Promise<void> {
  let keyCheck: { at: number; ok: Promise<boolean> } | undefined;
  const keyProviderWorks = () => {
    if (!keyCheck || Date.now() - keyCheck.at > KEY_CHECK_CACHE_MS) {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(false), KEY_CHECK_TIMEOUT_MS);
      });
      const check = options.checkKeyProvider().then(
        () => true,
        (error: unknown) => {
          app.log.warn({ err: { name: (error as Error).name, message: (error as Error).message } }, 'readiness: the root key provider failed');
          return false;
        },
      );
      keyCheck = { at: Date.now(), ok: Promise.race([check, timeout]).finally(() => clearTimeout(timer)) };
    }
    return keyCheck.ok;
  };

  app.get(
    '/livez',
    { config: { access: 'public' }, schema: { tags: ['operations'], response: { 200: z.object({ status: z.literal('live') }) } } },
    async () => ({ status: 'live' as const }),
  );

  app.get(
    '/readyz',
    {
      config: { access: 'public' },
      schema: { tags: ['operations'], response: { 200: readySchema, ...problemResponses(503) } },
    },
    async (request) => {
      if (options.isShuttingDown()) throw new AppError('service_unavailable', 'The server is shutting down.');
      let applied: number[];
      try {
        applied = await options.systemDb.appliedMigrationVersions();
      } catch (error) {
        request.log.warn({ err: error }, 'readiness: database unreachable');
        throw new AppError('service_unavailable', 'The database is unreachable.');
      }
      const missing = options.expectedMigrations.filter((version) => !applied.includes(version));
      if (missing.length > 0) throw new AppError('service_unavailable', 'Database migrations are pending.');
      // Without the root key nothing personal can be read or written: not ready either.
      if (!(await keyProviderWorks())) throw new AppError('service_unavailable', 'The root key provider is unreachable or failing.');
      return { status: 'ready' as const, migrations: applied.length };
    },
  );

  // Metrics carry no personal data, but they describe the system: with RINGVAKT_METRICS_TOKEN
  // set, a scraper must present it; without, only scrapers on this host (loopback) are answered.
  const expected = options.metricsToken ? createHash('sha256').update(options.metricsToken).digest() : undefined;
  app.get('/metrics', { config: { access: 'public' }, schema: { hide: true } }, async (request, reply) => {
    if (expected) {
      const offered = /^Bearer (.{1,500})$/.exec(request.headers.authorization ?? '')?.[1] ?? '';
      if (!timingSafeEqual(createHash('sha256').update(offered).digest(), expected)) throw new AppError('unauthenticated');
    } else if (!isLoopback(request.socket.remoteAddress)) {
      throw new AppError('not_found');
    }
    const body = await options.registry.metrics();
    return reply.type(options.registry.contentType).send(body);
  });
}
