// A sealing thread of an import (see sealers.ts): prepares the batches it is sent, in order, and
// sends each back with its byte arrays moved, not copied.
import { parentPort } from 'node:worker_threads';
import { prepareRows, type PrepareContext, type PreparedBatch, type SealingKeys } from './prepare-batch.ts';
import { unpackRows, type PackedRows } from './packed-rows.ts';

export type SealRequest = { seq: number; context: PrepareContext; rows: PackedRows; keys: SealingKeys };
export type SealReply = { seq: number; batch: PreparedBatch } | { seq: number; error: string };

/**
 * A byte array that owns its whole buffer can be moved; a small Buffer is a view into Node's
 * shared pool, which must never be moved (other Buffers live in it), and is copied out first.
 */
function movable<T extends Uint8Array | Int32Array>(array: T): T {
  if (array.byteOffset === 0 && array.byteLength === array.buffer.byteLength) return array;
  return (array instanceof Int32Array ? Int32Array.from(array) : Uint8Array.from(array)) as T;
}

parentPort?.on('message', ({ seq, context, rows, keys }: SealRequest) => {
  try {
    // A Buffer arrives as a plain Uint8Array; the cipher's checks want a Buffer.
    const dataKey = { version: keys.dataKey.version, key: Buffer.from(keys.dataKey.key.buffer, keys.dataKey.key.byteOffset, keys.dataKey.key.byteLength) };
    let prepared: PreparedBatch;
    try {
      prepared = prepareRows(context, { dataKey, indexKeys: keys.indexKeys }, unpackRows(rows));
    } finally {
      // This thread's copy of the data key lives for one batch.
      dataKey.key.fill(0);
    }
    const batch: PreparedBatch = {
      ...prepared,
      rowNumbers: movable(prepared.rowNumbers),
      emailIndexes: movable(prepared.emailIndexes),
      phoneStarts: movable(prepared.phoneStarts),
      phoneIndexes: movable(prepared.phoneIndexes),
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
