// The worker thread of a contact import (see import-thread.ts): its own pool on the runtime
// role, its own key hierarchy, runImport, and messages back to the thread that started it.
import { parentPort, workerData } from 'node:worker_threads';
import type pg from 'pg';
import type { Config } from '../../config.ts';
import type { ImportOutcome } from './claim-import.ts';
import { startSealers } from './sealers.ts';
import { isDatabaseUnavailable } from '../../db/unavailable.ts';

/** Only what the thread needs: the runtime role's connection, the root key provider's settings, the log level. */
export type ImportThreadData = {
  connectionString: string;
  config: Pick<Config, 'keys' | 'dataDir' | 'logLevel'>;
  tenantId: string;
  importId: string;
  owner: string;
  batchRows?: number;
  /** Sealing threads to start at once (sealers.ts): none for a file of one batch. */
  sealingThreads: number;
};
export type ImportThreadMessage = { kind: 'batch' } | { kind: 'outcome'; outcome: ImportOutcome } | { kind: 'error'; name: string };

const job = workerData as ImportThreadData;
let stopping = false;
parentPort?.on('message', (message: unknown) => {
  if (message === 'stop') stopping = true;
});
// The sealing threads load their modules beside this thread's own (about half a second each on
// two cores), rather than after them: the database, the keyring and the import are imported in run().
const sealers = job.sealingThreads > 0 ? startSealers(job.sealingThreads) : undefined;

async function run(): Promise<ImportThreadMessage> {
  // Until the pool exists, nothing else needs closing; the sealing threads always do (below).
  let pool: pg.Pool | undefined;
  try {
    const [{ default: pino }, { runtimeHandles, runtimePool }, { createLogger }, { runImport }] = await Promise.all([
      import('pino'),
      import('../../db/database.ts'),
      import('../../logger.ts'),
      import('./import-worker.ts'),
    ]);
    // Logs go to stderr, as the CLI's and the server's do (stdout carries the CLI's results).
    const logger = createLogger(job.config.logLevel, pino.destination(2));
    // Four connections: one batch commits, the next one's lookups are made ahead, the next ones'
    // keys are fetched, statistics are refreshed.
    pool = runtimePool(job.connectionString, 4, logger);
    const { forTenant, crypto } = runtimeHandles(pool, job.config, logger);
    const { cipher, keyring } = await crypto();
    const outcome = await runImport(forTenant(job.tenantId), { cipher, keyring }, job.importId, job.owner, {
      logger,
      stop: () => stopping,
      onBatch: () => parentPort?.postMessage({ kind: 'batch' } satisfies ImportThreadMessage),
      ...(job.batchRows ? { batchRows: job.batchRows } : {}),
      ...(sealers ? { sealers } : {}),
    });
    return { kind: 'outcome', outcome };
  } finally {
    // Closed by runImport when it used them; here also when it ended before, or never began
    // (closing twice is harmless).
    await sealers?.close();
    // The import's outcome stands whatever closing the pool does.
    await pool?.end().catch(() => undefined);
  }
}

run().then(
  (message) => parentPort?.postMessage(message),
  (error: unknown) =>
    parentPort?.postMessage(
      // The database away before the import began (its keys not yet read): interrupted, as a run
      // it drops is, not failed. Otherwise the error's name only: its message may quote a value from the file.
      isDatabaseUnavailable(error) ? ({ kind: 'outcome', outcome: 'interrupted' } satisfies ImportThreadMessage) : ({ kind: 'error', name: error instanceof Error ? error.name : 'Error' } satisfies ImportThreadMessage),
    ),
);
