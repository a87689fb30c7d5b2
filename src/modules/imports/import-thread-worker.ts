// The worker thread of a contact import (see import-thread.ts): its own pool on the runtime
// role, its own key hierarchy, runImport, and messages back to the thread that started it.
import { parentPort, workerData } from 'node:worker_threads';
import pino from 'pino';
import type { Config } from '../../config.ts';
import { runtimeHandles, runtimePool } from '../../db/database.ts';
import { createLogger } from '../../logger.ts';
import { runImport, type ImportOutcome } from './import-worker.ts';

/** Only what the thread needs: the runtime role's connection, the root key provider's settings, the log level. */
export type ImportThreadData = {
  connectionString: string;
  config: Pick<Config, 'keys' | 'dataDir' | 'logLevel'>;
  tenantId: string;
  importId: string;
  owner: string;
  batchRows?: number;
};
export type ImportThreadMessage = { kind: 'batch' } | { kind: 'outcome'; outcome: ImportOutcome } | { kind: 'error'; name: string };

const job = workerData as ImportThreadData;
// Logs go to stderr, as the CLI's and the server's do (stdout carries the CLI's results).
const logger = createLogger(job.config.logLevel, pino.destination(2));
let stopping = false;
parentPort?.on('message', (message: unknown) => {
  if (message === 'stop') stopping = true;
});

async function run(): Promise<ImportThreadMessage> {
  // Four connections: one batch commits, the next one's lookups are made ahead, the next ones'
  // keys are fetched, statistics are refreshed.
  const pool = runtimePool(job.connectionString, 4, logger);
  try {
    const { forTenant, crypto } = runtimeHandles(pool, job.config, logger);
    const { cipher, keyring } = await crypto();
    const outcome = await runImport(forTenant(job.tenantId), { cipher, keyring }, job.importId, job.owner, {
      logger,
      stop: () => stopping,
      onBatch: () => parentPort?.postMessage({ kind: 'batch' } satisfies ImportThreadMessage),
      ...(job.batchRows ? { batchRows: job.batchRows } : {}),
    });
    return { kind: 'outcome', outcome };
  } finally {
    // The import's outcome stands whatever closing the pool does.
    await pool.end().catch(() => undefined);
  }
}

run().then(
  (message) => parentPort?.postMessage(message),
  // The error's name only: its message may quote a value from the file.
  (error: unknown) => parentPort?.postMessage({ kind: 'error', name: error instanceof Error ? error.name : 'Error' } satisfies ImportThreadMessage),
);
