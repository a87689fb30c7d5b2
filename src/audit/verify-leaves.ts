import { availableParallelism } from 'node:os';
import type { Readable } from 'node:stream';
import type { Worker } from 'node:worker_threads';
import { copyField, forEachCopyRow } from '../db/copy-text.ts';
import { startTypeScriptWorker } from '../typescript-worker.ts';
import { canonicalEventText, isoTimeFromPostgres } from './canonical-event.ts';
import { leafHashHexOfText } from './merkle.ts';

/**
 * The heavy half of `audit verify`: recomputing every sealed event's leaf hash from its columns.
 * For a large ledger it runs in worker threads, each over its own range of leaf indices, on its
 * own connection that imports the verifying transaction's snapshot (SET TRANSACTION SNAPSHOT) —
 * so every worker reads exactly the state the rest of verify reads. Workers write the leaf hashes
 * straight into one shared buffer, in leaf order.
 */

/**
 * The columns of a sealed event, in this order: its id, what the leaf hash commits to, the stored
 * hash as hex. occurred_at as the session writes it: the worker's connection sets TimeZone UTC
 * and DateStyle ISO (VERIFY_SESSION_OPTIONS).
 */
const LEAF_COLUMNS_SQL = `id, leaf_index, occurred_at, actor_type, actor_id, action, target_type, target_id, outcome, source_ip, request_id, details, encode(leaf_hash, 'hex')`;

/** The settings of a worker's connection; occurred_at is read in UTC, ISO style (isoTimeFromPostgres). */
export const VERIFY_SESSION_OPTIONS = '-c search_path=ringvakt -c TimeZone=UTC -c DateStyle=ISO,YMD';

/** Starts `COPY (query) TO STDOUT` on the worker's connection (pg-copy-streams). */
export type CopyOut = (sql: string) => Readable;

/**
 * Recomputes leaves [from, to) — which must all exist, contiguously — into `packed` at their own
 * offsets. Returns the first divergence in the range, or undefined.
 *
 * The range is read as one `COPY … TO STDOUT` in leaf order (forEachCopyRow): the database
 * writes rows while this thread hashes them, and no field costs a Buffer of its own. A leaf hash
 * is computed as hex text and compared with the stored hash read as hex.
 */
export async function recomputeLeafRange(copyOut: CopyOut, tenantId: string, from: number, to: number, packed: Buffer): Promise<string | undefined> {
  if (!Number.isSafeInteger(from) || !Number.isSafeInteger(to)) throw new Error('leaf range must be integers');
  // COPY takes no parameters: the bounds are integers checked above, the tenant is the session's.
  const rows = copyOut(
    `COPY (SELECT ${LEAF_COLUMNS_SQL} FROM audit_events WHERE tenant_id = current_tenant_id() AND leaf_index >= ${from} AND leaf_index < ${to} ` +
      `ORDER BY audit_events.leaf_index) TO STDOUT`,
  );
  let expected = from;
  let problem: string | undefined;
  await forEachCopyRow(rows, (fields) => {
    // After the first divergence the rest of the range is only drained (COPY cannot be cut short).
    if (problem !== undefined) return;
    if (fields.length !== 13) throw new Error('unexpected COPY row');
    const leafIndex = Number(fields[1]);
    if (leafIndex !== expected) {
      problem = `leaf ${expected} is missing (next is leaf ${leafIndex}): an event was removed or moved`;
      return;
    }
    const recomputed = leafHashHexOfText(
      canonicalEventText({
        tenantId,
        occurredAt: isoTimeFromPostgres(fields[2] as string),
        actorType: copyField(fields[3] as string) as string,
        actorId: copyField(fields[4] as string),
        action: copyField(fields[5] as string) as string,
        targetType: copyField(fields[6] as string),
        targetId: copyField(fields[7] as string),
        outcome: copyField(fields[8] as string) as string,
        sourceIp: copyField(fields[9] as string),
        requestId: copyField(fields[10] as string),
        details: JSON.parse(copyField(fields[11] as string) as string) as Record<string, unknown>,
      }),
    );
    if (recomputed !== fields[12]) {
      problem = `leaf ${leafIndex} (event id ${fields[0]}) does not match its recorded hash: the event was altered`;
      return;
    }
    packed.write(recomputed, leafIndex * 32, 32, 'hex');
    expected += 1;
  });
  if (problem === undefined && expected !== to) problem = `leaf ${expected} is missing: an event was removed or moved`;
  return problem;
}

export type ParallelLeaves = { connectionString: string; snapshot: string; workers?: number };

/** Below this many leaves, starting workers costs more than it saves. */
export const PARALLEL_FROM = 100_000;

/** Runs recomputeLeafRange over [from, to) split across worker threads; first divergence in leaf order. */
export async function recomputeLeavesInWorkers(
  options: ParallelLeaves,
  tenantId: string,
  from: number,
  to: number,
  levels: SharedArrayBuffer[],
): Promise<{ problem: string | undefined; ranges: (readonly [number, number])[] }> {
  const workers = Math.max(1, Math.min(options.workers ?? availableParallelism(), 4));
  // Range widths are a power of two, so each worker's range holds whole subtrees it can hash.
  let width = 1;
  while (width * workers < to - from) width *= 2;
  const ranges = Array.from({ length: workers }, (_, index) => [from + index * width, Math.min(to, from + (index + 1) * width)] as const).filter(([a, b]) => a < b);
  const started: Worker[] = [];
  let problems: (string | undefined)[];
  try {
    problems = await Promise.all(
      ranges.map(
        ([a, b]) =>
          new Promise<string | undefined>((resolve, reject) => {
            const worker = startTypeScriptWorker(new URL('./verify-worker.ts', import.meta.url), {
              workerData: { connectionString: options.connectionString, snapshot: options.snapshot, tenantId, from: a, to: b, levels },
            });
            started.push(worker);
            let answered = false;
            worker.once('message', (message: { problem?: string; error?: string }) => {
              answered = true;
              if (message.error) reject(new Error(`audit verify worker failed: ${message.error}`));
              else resolve(message.problem);
            });
            worker.once('error', reject);
            // An exit without an answer (even code 0) must not leave verify waiting forever.
            worker.once('exit', (code) => {
              if (!answered) reject(new Error(`audit verify worker exited (${code}) without an answer`));
            });
          }),
      ),
    );
  } finally {
    // On success they have finished; on a failure, the others must not run on.
    await Promise.all(started.map((worker) => worker.terminate()));
  }
  return { problem: problems.find((problem) => problem !== undefined), ranges };
}
