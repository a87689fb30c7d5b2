import type { Hash } from 'node:crypto';
import { PassThrough, type Readable } from 'node:stream';
import { AppError } from './errors.ts';

/**
 * Request bodies that a route reads as a stream itself (route config `streamedBody`): import files
 * and registry files, which may be far larger than any JSON body.
 */

/** A request body as a stream that fails past `limit` bytes (the route reads it itself). */
export function limited(source: Readable, limit: number, hash?: Hash): Readable {
  let seen = 0;
  const out = new PassThrough();
  source.on('data', (chunk: Buffer) => {
    seen += chunk.length;
    hash?.update(chunk);
    if (seen > limit) {
      out.destroy(new AppError('payload_too_large'));
      source.destroy();
      return;
    }
    if (!out.write(chunk)) {
      source.pause();
      out.once('drain', () => source.resume());
    }
  });
  source.on('end', () => out.end());
  source.on('error', (error) => out.destroy(error));
  // The reader stopped early (a refused file): drain and drop the rest of the body, so the answer
  // still reaches the client and the request does not hang paused.
  out.on('close', () => {
    if (source.readableEnded || source.destroyed) return;
    source.removeAllListeners('data');
    source.resume();
  });
  return out;
}

/**
 * Uploads (import files, registry files) each hold a database connection in one transaction while
 * they stream: at most this many at once per process, so uploads cannot starve other requests of
 * connections. More → 429 rate_limited. (Node's request timeout, 30 s, also bounds each upload:
 * larger files go through `ringvakt contacts import`, which reads the file on the server.)
 */
const MAX_CONCURRENT_UPLOADS = 2;
let uploadsRunning = 0;
export async function withUploadSlot<T>(work: () => Promise<T>): Promise<T> {
  if (uploadsRunning >= MAX_CONCURRENT_UPLOADS) throw new AppError('rate_limited', 'Other uploads are running; try again shortly.');
  uploadsRunning += 1;
  try {
    return await work();
  } finally {
    uploadsRunning -= 1;
  }
}
