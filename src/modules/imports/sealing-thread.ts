// A sealing thread of an import (see sealers.ts): prepares the batches it is sent, in order, and
// sends each back with its byte arrays moved, not copied.
import { parentPort, workerData } from 'node:worker_threads';
import { prepareRows, type PrepareContext, type PreparedBatch, type SealingKeys, type SourceRow } from './prepare-batch.ts';

export type SealRequest = { seq: number; rows: SourceRow[]; keys: SealingKeys };
export type SealReply = { seq: number; batch: PreparedBatch } | { seq: number; error: string };

const context = workerData as PrepareContext;

/**
 * A byte array that owns its whole buffer can be moved; a small Buffer is a view into Node's
 * shared pool, which must never be moved (other Buffers live in it), and is copied out first.
 */
function movable(array: Uint8Array): Uint8Array {
  if (array.byteOffset === 0 && array.byteLength === array.buffer.byteLength) return array;
  const copy = new Uint8Array(array.byteLength);
  copy.set(array);
  return copy;
}

parentPort?.on('message', ({ seq, rows, keys }: SealRequest) => {
  try {
    // A Buffer arrives as a plain Uint8Array; the cipher's checks want a Buffer.
    const dataKey = { version: keys.dataKey.version, key: Buffer.from(keys.dataKey.key.buffer, keys.dataKey.key.byteOffset, keys.dataKey.key.byteLength) };
    const prepared = prepareRows(context, { dataKey, indexKeys: keys.indexKeys }, rows);
    const batch: PreparedBatch = {
      ...prepared,
      contactColumns: prepared.contactColumns.map(movable),
      phoneColumns: prepared.phoneColumns.map(movable),
      wrappedKeys: movable(prepared.wrappedKeys),
    };
    const moved = [batch.rowNumbers, batch.emailIndexes, batch.phoneStarts, batch.phoneIndexes, ...batch.contactColumns, ...batch.phoneColumns, batch.wrappedKeys].map((array) => array.buffer as ArrayBuffer);
    parentPort?.postMessage({ seq, batch } satisfies SealReply, moved);
  } catch (error) {
    // The error's name only: its message may quote a value from the file.
    parentPort?.postMessage({ seq, error: error instanceof Error ? error.name : 'Error' } satisfies SealReply);
  }
});
