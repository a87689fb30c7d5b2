import type { ErasureLedgerMirror } from '../../src/privacy/erasure.ts';
import { Writable } from 'node:stream';
import { buildApp } from '../../src/server/app.ts';
import { createLogger, type Logger } from '../../src/logger.ts';
import type { App } from '../../src/server/types.ts';
import type { TestDatabase } from './database.ts';
import { assertNoPersonalDataLeaked, recordLogLines, recordProblemBody } from './canary.ts';

/** Collects every log line the app writes, so tests can assert what never reaches a log. */
export function capturingLogger(level = 'info'): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      lines.push(...chunk.toString('utf8').split('\n').filter((line) => line !== ''));
      callback();
    },
  });
  recordLogLines(lines); // by reference: the suite-wide canary sees every line logged later (canary.ts)
  return { logger: createLogger(level, sink), lines };
}

export async function buildTestApp(
  db: TestDatabase,
  options: { logger?: Logger; tls?: { certFile: string; keyFile: string }; isShuttingDown?: () => boolean; trustProxy?: string[]; metricsToken?: string; realtimeRecheckMs?: number; erasureMirror?: ErasureLedgerMirror; checkKeyProvider?: () => Promise<void> } = {},
): Promise<App> {
  const app = await buildApp({
    config: { bodyLimitBytes: 64 * 1024, trustProxy: options.trustProxy ?? [], tls: options.tls, metricsToken: options.metricsToken, publicUrl: PUBLIC_URL },
    logger: options.logger ?? db.logger,
    database: db.handles,
    ...(options.isShuttingDown ? { isShuttingDown: options.isShuttingDown } : {}),
    ...(options.realtimeRecheckMs !== undefined ? { realtimeRecheckMs: options.realtimeRecheckMs } : {}),
    ...(options.erasureMirror ? { erasureMirror: options.erasureMirror } : {}),
    ...(options.checkKeyProvider ? { checkKeyProvider: options.checkKeyProvider } : {}),
  });
  await app.ready();
  // Every problem body goes to the canary; on close, so does /metrics.
  const inject = app.inject.bind(app);
  (app as unknown as { inject: (options: unknown) => Promise<{ headers: Record<string, unknown>; body: string }> }).inject = async (options: unknown) => {
    const response = await (inject as (options: unknown) => Promise<{ headers: Record<string, unknown>; body: string }>)(options);
    if (String(response.headers['content-type'] ?? '').includes('problem+json')) recordProblemBody(response.body);
    return response;
  };
  const close = app.close.bind(app);
  (app as unknown as { close: () => Promise<void> }).close = async () => {
    const metrics = await inject({ url: '/metrics', headers: options.metricsToken ? { authorization: `Bearer ${options.metricsToken}` } : {} });
    await close();
    assertNoPersonalDataLeaked([{ where: '/metrics', text: metrics.body }]);
  };
  return app;
}

/** The origin tests present themselves as (Origin headers of browser requests). */
export const PUBLIC_URL = 'http://127.0.0.1:8080';

export const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

/** An import's CSV file, uploaded as the web application sends it (`PUT /api/v1/contact-imports/{id}/file`). */
export const uploadImportFile = (app: App, token: string, importId: string, csv: string | Buffer) =>
  app.inject({ method: 'PUT', url: `/api/v1/contact-imports/${importId}/file`, headers: { ...bearer(token), origin: PUBLIC_URL, 'content-type': 'text/csv' }, payload: csv });
