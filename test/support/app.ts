import { Writable } from 'node:stream';
import { buildApp } from '../../src/server/app.ts';
import { createLogger, type Logger } from '../../src/logger.ts';
import type { App } from '../../src/server/types.ts';
import type { TestDatabase } from './database.ts';

/** Collects every log line the app writes, so tests can assert what never reaches a log. */
export function capturingLogger(level = 'info'): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      lines.push(...chunk.toString('utf8').split('\n').filter((line) => line !== ''));
      callback();
    },
  });
  return { logger: createLogger(level, sink), lines };
}

export async function buildTestApp(
  db: TestDatabase,
  options: { logger?: Logger; tls?: { certFile: string; keyFile: string }; isShuttingDown?: () => boolean; trustProxy?: string[]; metricsToken?: string } = {},
): Promise<App> {
  const app = await buildApp({
    config: { bodyLimitBytes: 64 * 1024, trustProxy: options.trustProxy ?? [], tls: options.tls, metricsToken: options.metricsToken },
    logger: options.logger ?? db.logger,
    database: db.handles,
    ...(options.isShuttingDown ? { isShuttingDown: options.isShuttingDown } : {}),
  });
  await app.ready();
  return app;
}

export const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
