import { availableParallelism } from 'node:os';
import type { Worker } from 'node:worker_threads';
import { startTypeScriptWorker } from '../typescript-worker.ts';
import { canonicalEventText } from './audit-event.ts';
import { leafHashOfText } from './merkle.ts';

/**
 * The heavy half of `audit verify`: recomputing every sealed event's leaf hash from its columns.
 * For a large ledger it runs in worker threads, each over its own range of leaf indices, on its
 * own connection that imports the verifying transaction's snapshot (SET TRANSACTION SNAPSHOT) —
 * so every worker reads exactly the state the rest of verify reads. Workers write the leaf hashes
 * straight into one shared buffer, in leaf order.
 */

/** The columns of a sealed event, in this order, read with rowMode 'array'. */
export const LEAF_COLUMNS_SQL = `leaf_index::text,
  to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
  actor_type, actor_id, action, target_type, target_id, outcome, source_ip, request_id, details, encode(leaf_hash, 'hex')`;

/** As read: the stored leaf hash as hex text (compared as text: no Buffer per row). */
export type LeafRow = [string, string, string, string | null, string, string | null, string | null, string, string | null, string | null, Record<string, unknown>, string];

export type LeafQuery = (text: string, values: unknown[]) => Promise<unknown[][]>;

const PAGE = 20_000;

/**
 * Recomputes leaves [from, to) — which must all exist, contiguously — into `packed` at their own
 * offsets. Returns the first divergence in the range, or undefined.
 */
export async function recomputeLeafRange(query: LeafQuery, tenantId: string, from: number, to: number, packed: Buffer): Promise<string | undefined> {
  for (let start = from; start < to; start += PAGE) {
    const end = Math.min(start + PAGE, to);
    const rows = (await query(
      `SELECT ${LEAF_COLUMNS_SQL} FROM audit_events WHERE leaf_index >= $1 AND leaf_index < $2 ORDER BY audit_events.leaf_index`,
      [String(start), String(end)],
    )) as LeafRow[];
    let expected = start;
    for (const row of rows) {
      const leafIndex = Number(row[0]);
      if (leafIndex !== expected) return `leaf ${expected} is missing (next is leaf ${leafIndex}): an event was removed or moved`;
      const recomputed = leafHashOfText(
        canonicalEventText({
          tenantId,
          occurredAt: row[1],
          actorType: row[2],
          actorId: row[3],
          action: row[4],
          targetType: row[5],
          targetId: row[6],
          outcome: row[7],
          sourceIp: row[8],
          requestId: row[9],
          details: row[10],
        }),
      );
      if (recomputed.toString('hex') !== row[11]) {
        // The event id only for the report (not read for the million rows that match).
        const id = await query(`SELECT id::text FROM audit_events WHERE leaf_index = $1`, [String(leafIndex)]);
        return `leaf ${leafIndex} (event id ${String(id[0]?.[0])}) does not match its recorded hash: the event was altered`;
      }
      recomputed.copy(packed, leafIndex * 32);
      expected += 1;
    }
    if (expected !== end) return `leaf ${expected} is missing: an event was removed or moved`;
  }
  return undefined;
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
