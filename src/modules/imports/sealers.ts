import type { Worker } from 'node:worker_threads';
import { startTypeScriptWorker } from '../../typescript-worker.ts';
import type { PrepareContext, PreparedBatch, SealingKeys, SourceRow } from './prepare-batch.ts';
import type { SealReply, SealRequest } from './sealing-thread.ts';
import { packRows } from './packed-rows.ts';

/**
 * Sealing threads of one import. Preparing a batch (normalising, two AES-GCM seals and two HMACs
 * per row: about half of an import's work in this process) runs beside the import's own thread,
 * which meanwhile reads the file and commits the batch before: on two cores the import then uses
 * both, where one thread held it to about one.
 *
 * Rows go to a thread by message, packed (packed-rows.ts); what comes back is laid out for the
 * commit (prepare-batch.ts), its byte arrays moved, not copied. Each thread's heap is bounded: it holds
 * the batch it works on, and the next ones queued.
 */
export type Sealers = {
  prepare(context: PrepareContext, rows: SourceRow[], keys: SealingKeys): Promise<PreparedBatch>;
  /** Stops the threads; a batch still being prepared is dropped (its promise rejects). */
  close(): Promise<void>;
};

/**
 * Heap of a sealing thread: it holds a few batches of rows and their results, a few megabytes. Its
 * young generation is half V8's default (two 8 MB semi-spaces): 16 MB less resident memory per
 * thread, and no slower by `npm run bench -- contacts-import`.
 */
const SEALER_HEAP_MB = 48;
const SEALER_YOUNG_MB = 24;

export class SealerFailed extends Error {
  constructor(reason: string) {
    super(`a sealing thread failed: ${reason}`);
    this.name = 'SealerFailed';
  }
}

/** A Uint8Array received from a thread, as the Buffer pg sends as a binary parameter (no copy). */
const asBuffer = (array: Uint8Array) => Buffer.from(array.buffer, array.byteOffset, array.byteLength);

/**
 * Starts the threads at once: each takes a while to load its modules, and can do so while the
 * import loads its job and reads its first rows. What a batch is prepared with travels with it.
 */
export function startSealers(threads: number): Sealers {
  type Waiting = { resolve: (batch: PreparedBatch) => void; reject: (error: Error) => void };
  // `failed`: why the thread can no longer answer (it errored or exited); every later request fails at once.
  const workers: { worker: Worker; waiting: Map<number, Waiting>; failed?: string }[] = [];
  let seq = 0;
  let closed = false;
  for (let index = 0; index < threads; index += 1) {
    const worker = startTypeScriptWorker(new URL('./sealing-thread.ts', import.meta.url), {
      resourceLimits: { maxOldGenerationSizeMb: SEALER_HEAP_MB, maxYoungGenerationSizeMb: SEALER_YOUNG_MB },
    });
    const waiting = new Map<number, Waiting>();
    const entry: (typeof workers)[number] = { worker, waiting };
    const failAll = (reason: string) => {
      entry.failed ??= reason;
      for (const request of waiting.values()) request.reject(new SealerFailed(entry.failed));
      waiting.clear();
    };
    worker.on('message', (reply: SealReply) => {
      const entry = waiting.get(reply.seq);
      if (!entry) return;
      waiting.delete(reply.seq);
      if ('error' in reply) {
        entry.reject(new SealerFailed(reply.error));
        return;
      }
      const batch = reply.batch;
      entry.resolve({
        ...batch,
        contactColumns: batch.contactColumns.map(asBuffer),
        phoneColumns: batch.phoneColumns.map(asBuffer),
        wrappedKeys: asBuffer(batch.wrappedKeys),
        emailIndexes: asBuffer(batch.emailIndexes),
        phoneIndexes: asBuffer(batch.phoneIndexes),
      });
    });
    // The error's name and code only (ERR_WORKER_OUT_OF_MEMORY, say): its message may quote a value.
    worker.on('error', (error) => failAll([error.name, (error as { code?: unknown }).code].filter((part) => typeof part === 'string').join(' ')));
    worker.on('exit', () => failAll(closed ? 'closed' : 'exited'));
    workers.push(entry);
  }
  return {
    prepare(context, rows, keys) {
      if (closed) return Promise.reject(new SealerFailed('closed'));
      seq += 1;
      const target = workers[seq % workers.length];
      if (!target) return Promise.reject(new SealerFailed('no thread'));
      if (target.failed) return Promise.reject(new SealerFailed(target.failed));
      // The data key goes as an exact copy of its 32 bytes, moved to the thread (which wipes it
      // after the batch): the key Buffer itself may be a view into Node's shared pool, and a
      // structured clone copies a view's whole underlying memory — other values with it.
      const dataKey = new Uint8Array(keys.dataKey.key);
      const packed = packRows(rows);
      const request: SealRequest = { seq, context, rows: packed, keys: { ...keys, dataKey: { version: keys.dataKey.version, key: dataKey as Buffer } } };
      const promise = new Promise<PreparedBatch>((resolve, reject) => target.waiting.set(request.seq, { resolve, reject }));
      target.worker.postMessage(request, [dataKey.buffer, packed.rowNumbers.buffer, packed.cellCounts.buffer, packed.cellLengths.buffer]);
      return promise;
    },
    async close() {
      closed = true;
      await Promise.all(workers.map(({ worker }) => worker.terminate()));
    },
  };
}
