import type { Config } from '../../config.ts';
import type { TenantDb } from '../../db/tenant-db.ts';
import type { Logger } from '../../logger.ts';
import { startTypeScriptWorker } from '../../typescript-worker.ts';
import { BATCH_ROWS, SEALING_THREADS } from './import-worker.ts';
import { failImport, type ImportOutcome } from './claim-import.ts';
import type { ImportThreadData, ImportThreadMessage } from './import-thread-worker.ts';

/**
 * The heap (V8's old generation; buffers and the young generation come on top) of an import's
 * worker thread. An import holds a few batches of rows at a time (one being read, two being
 * prepared by its sealing thread, one committing), a few megabytes; without a bound V8 lets
 * garbage pile up to several hundred megabytes before it collects. At this bound the import runs
 * as fast (measured with `npm run bench -- contacts-import`) and the process stays small.
 */
export const IMPORT_HEAP_MB = 128;

/**
 * Runs a claimed import (runImport) in a worker thread of its own: the rows' parsing,
 * normalisation and encryption never hold up the event loop that serves requests, and the
 * thread's heap is bounded. `stop()` is polled and passed on; the import then stops after its
 * current batch. A thread that dies (out of memory included) fails the import, as an error in
 * runImport would; its rows committed so far stay imported.
 */
export async function runImportInThread(
  tenantDb: TenantDb,
  options: { connectionString: string; config: Config; importId: string; owner: string; batchRows?: number },
  hooks: { logger?: Logger; stop?: () => boolean; onBatch?: () => void } = {},
): Promise<ImportOutcome> {
  // A file of more than one batch still to import is sealed by threads of its own, started by the
  // import's thread before anything else.
  // (A failed read starts none here: runImport then starts them itself, or fails as it would have.)
  const progress = await tenantDb
    .read((trx) => trx.selectFrom('contact_imports').select(['file_rows', 'rows_done']).where('id', '=', options.importId).executeTakeFirst())
    .catch(() => undefined);
  const rowsToCome = progress ? Number(progress.file_rows ?? 0) - Number(progress.rows_done) : 0;
  const data: ImportThreadData = {
    connectionString: options.connectionString,
    // Never the whole configuration: the owner's database URL, SMTP and webhook secrets stay here.
    config: { keys: options.config.keys, dataDir: options.config.dataDir, logLevel: options.config.logLevel },
    tenantId: tenantDb.tenantId,
    importId: options.importId,
    owner: options.owner,
    ...(options.batchRows ? { batchRows: options.batchRows } : {}),
    sealingThreads: rowsToCome > (options.batchRows ?? BATCH_ROWS) ? SEALING_THREADS : 0,
  };
  const worker = startTypeScriptWorker(new URL('./import-thread-worker.ts', import.meta.url), { workerData: data, resourceLimits: { maxOldGenerationSizeMb: IMPORT_HEAP_MB } });
  return new Promise<ImportOutcome>((resolve) => {
    let outcome: ImportOutcome | undefined;
    let failing: Promise<void> | undefined;
    const poll = setInterval(() => {
      if (hooks.stop?.()) worker.postMessage('stop');
    }, 100);
    const died = (reason: string) => {
      hooks.logger?.error({ importId: options.importId, reason }, 'contact import thread failed');
      outcome = 'failed';
      // Bounded: with the database gone, the lease runs out and another worker takes the import.
      const timeout = new Promise<void>((resolve) => setTimeout(resolve, 30_000).unref());
      failing ??= Promise.race([failImport(tenantDb, options.importId, options.owner), timeout]).catch((error: unknown) =>
        hooks.logger?.error({ importId: options.importId, err: error instanceof Error ? { name: error.name } : undefined }, 'contact import could not be marked failed'),
      );
    };
    worker.on('message', (message: ImportThreadMessage) => {
      if (message.kind === 'batch') {
        hooks.onBatch?.();
        return;
      }
      if (message.kind === 'outcome') outcome = message.outcome;
      else died(message.name);
      // Its answer is in: whatever the thread still holds open (timers of a library) must not keep it.
      void worker.terminate();
    });
    worker.on('error', (error) => died(error.name === 'Error' && 'code' in error ? String(error.code) : error.name));
    worker.on('exit', () => {
      clearInterval(poll);
      if (outcome === undefined) died('exited without an answer');
      void (failing ?? Promise.resolve()).then(() => resolve(outcome ?? 'failed'));
    });
  });
}
