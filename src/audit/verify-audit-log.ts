import type { KeyObject } from 'node:crypto';
import { sql } from '../db/kysely.ts';
import type { TenantTransaction } from '../db/tenant-db.ts';
import { canonicalEventText, isoTimeFromPostgres } from './canonical-event.ts';
import { fillSubtrees, leafHashOfText, packedHash, packedSource, packedSubtrees, sharedLevels, subtreeWithin, treeHash } from './merkle.ts';
import { verifyRetentionRecord } from './retention.ts';
import { PARALLEL_FROM, recomputeLeavesInWorkers, type ParallelLeaves } from './verify-leaves.ts';
import { verifyTreeHead } from './signing-key.ts';
import type { WitnessedCheckpoint, WitnessedRetention } from './witness.ts';

export type LedgerVerdict =
  | { ok: true; events: number; sealed: number; checkpoints: number; pruned: number }
  | { ok: false; problem: string };

/**
 * Recomputes a tenant's whole ledger from its rows and names the first divergence: every signed
 * retention record and the leaf hashes it kept, every leaf hash from the event's own columns, the leaf order (no gaps, no duplicates), every stored
 * subtree hash, every checkpoint's root and its Ed25519 signature.
 */
const PAGE = 20_000;
const columns = [
  'id',
  'leaf_index',
  // As text in UTC (verifyTenantLedger sets the zone and style for its transaction), turned into
  // Date.toISOString()'s form by isoTimeFromPostgres: no Date per row, and a stored time with
  // more than millisecond precision (never written by Ringvakt) reads as altered.
  sql<string>`occurred_at::text`.as('occurred_at'),
  'actor_type',
  'actor_id',
  'action',
  'target_type',
  'target_id',
  'outcome',
  'source_ip',
  'request_id',
  'details',
  'leaf_hash',
] as const;

/** Sealed events in leaf order, then unsealed ones in id order, a page at a time (bounded memory). */
async function* eventsInOrder(trx: TenantTransaction, sealed: boolean) {
  // Pages are ranges of leaf indices, not "after X, limit N": the planner then always walks the
  // (tenant_id, leaf_index) index instead of scanning and sorting the table for every page. A
  // gap in the indices only shortens a page; the loop ends after the last index.
  const last = sealed ? await trx.selectFrom('audit_events').select((eb) => eb.fn.max('leaf_index').as('last')).executeTakeFirst() : undefined;
  const end = last?.last === null || last?.last === undefined ? -1 : Number(last.last);
  for (let from = 0; from <= end; ) {
    const page = await trx
      .selectFrom('audit_events')
      .select(columns)
      .where('leaf_index', '>=', sql<string>`${from}`)
      .where('leaf_index', '<', sql<string>`${from + PAGE}`)
      .orderBy('leaf_index')
      .execute();
    yield* page;
    from += PAGE;
    if (page.length === 0) {
      // A planted far-away index must not make verify walk millions of empty pages: jump to it.
      const next = await trx.selectFrom('audit_events').select((eb) => eb.fn.min('leaf_index').as('next')).where('leaf_index', '>=', sql<string>`${from}`).executeTakeFirst();
      if (next?.next === null || next?.next === undefined) break;
      from = Number(next.next);
    }
  }
  let afterId = '0';
  for (;;) {
    const page = await trx.selectFrom('audit_events').select(columns).where('leaf_index', 'is', null).where('id', '>', afterId).orderBy('id').limit(PAGE).execute();
    yield* page;
    if (page.length < PAGE) break;
    afterId = page.at(-1)?.id ?? afterId;
  }
}

type StoredNodePage = { level: number; first: number; count: number; indices: number[] | undefined; hashes: Buffer };

/**
 * Every stored tree node, by level, a page of index range at a time. A page whose indices run
 * without a gap (the normal case) arrives as one concatenated value — no object per node; other
 * pages row by row. Ranges jump over empty stretches, so planted far-away indices cost nothing.
 */
async function loadStoredNodes(trx: TenantTransaction): Promise<StoredNodePage[]> {
  const pages: StoredNodePage[] = [];
  const levels = await trx.selectFrom('audit_tree_nodes').select('level').distinct().execute();
  for (const { level } of levels) {
    let from = 0;
    for (;;) {
      const next = await sql<{ first: string | null }>`
        SELECT min(index) AS first FROM audit_tree_nodes WHERE level = ${level} AND index >= ${String(from)}`.execute(trx);
      if (next.rows[0]?.first === null || next.rows[0]?.first === undefined) break;
      from = Number(next.rows[0].first);
      const page = await sql<{ count: string; last: string; hashes: Buffer }>`
        SELECT count(*) AS count, max(index) AS last, string_agg(hash, ''::bytea ORDER BY index) AS hashes
          FROM audit_tree_nodes WHERE level = ${level} AND index >= ${String(from)} AND index < ${String(from + PAGE)}`.execute(trx);
      const row = page.rows[0];
      const count = Number(row?.count ?? 0);
      if (row && count === Number(row.last) - from + 1) {
        pages.push({ level, first: from, count, indices: undefined, hashes: row.hashes });
      } else {
        const rows = await trx
          .selectFrom('audit_tree_nodes')
          .select(['index', 'hash'])
          .where('level', '=', level)
          .where('index', '>=', String(from))
          .where('index', '<', String(from + PAGE))
          .orderBy('index')
          .execute();
        const hashes = Buffer.allocUnsafe(rows.length * 32);
        rows.forEach((node, at) => node.hash.copy(hashes, at * 32, 0, 32));
        pages.push({ level, first: from, count: rows.length, indices: rows.map((node) => Number(node.index)), hashes });
      }
      from += PAGE;
    }
  }
  return pages;
}

export async function verifyTenantLedger(
  trx: TenantTransaction,
  keys: Map<string, KeyObject>,
  witness: WitnessedCheckpoint[] = [],
  options: { parallel?: Omit<ParallelLeaves, 'snapshot'>; witnessedRetentions?: WitnessedRetention[] } = {},
): Promise<LedgerVerdict> {
  // Event times are read as text in UTC, ISO style (isoTimeFromPostgres), for this transaction only.
  await sql`SELECT set_config('TimeZone', 'UTC', true), set_config('DateStyle', 'ISO, YMD', true)`.execute(trx);
  // Leaf hashes packed into one growing buffer (see packedSubtrees).
  let packed: Buffer = Buffer.allocUnsafe(32 * 1024);
  let sealed = 0;
  let events = 0;
  const grow = () => {
    if ((sealed + 1) * 32 > packed.length) {
      const grown = Buffer.allocUnsafe(packed.length * 2);
      packed.copy(grown, 0, 0, sealed * 32);
      packed = grown;
    }
  };

  // Retention (retention.ts): each record must be signed; the events it removed left their leaf
  // hashes behind as level-0 nodes, which stand in for those leaves.
  const retention = await trx.selectFrom('audit_retention_records').selectAll().orderBy('pruned_before_leaf').execute();
  // With an outside witness, a retention record counts only if signed by a key the witness has
  // seen sign checkpoints: a key planted in the database could otherwise sign away any events.
  const witnessKeys = new Set(witness.map((entry) => entry.publicKey));
  for (const record of retention) {
    const key = keys.get(record.signing_key_id);
    if (key && witness.length > 0 && !witnessKeys.has(key.export({ format: 'der', type: 'spki' }).toString('base64'))) {
      return { ok: false, problem: `the retention record up to leaf ${record.pruned_before_leaf} is signed by a key the witness never saw: events may have been removed outside the retention procedure` };
    }
    const fields = {
      tenantId: trx.tenantId,
      prunedBeforeLeaf: Number(record.pruned_before_leaf),
      rootHash: record.root_hash,
      cutoff: record.cutoff,
      reason: record.reason,
      executedAt: record.executed_at,
      executedBy: record.executed_by,
      signingKeyId: record.signing_key_id,
    };
    if (!key || !verifyRetentionRecord(key, fields, record.signature)) {
      return { ok: false, problem: `the retention record up to leaf ${record.pruned_before_leaf} has no valid signature by a known audit signing key` };
    }
    // With the witness's retention records: every removal must have been announced to it.
    if (
      options.witnessedRetentions &&
      !options.witnessedRetentions.some(
        (entry) => entry.tenantId === trx.tenantId && entry.prunedBeforeLeaf === fields.prunedBeforeLeaf && entry.signature === record.signature.toString('base64'),
      )
    ) {
      return { ok: false, problem: `the retention record up to leaf ${record.pruned_before_leaf} never reached the witness` };
    }
  }
  const pruned = Number(retention.at(-1)?.pruned_before_leaf ?? 0);
  for (let from = 0; from < pruned; from += PAGE) {
    const kept = await trx
      .selectFrom('audit_tree_nodes')
      .select(['index', 'hash'])
      .where('level', '=', 0)
      .where('index', '>=', String(from))
      .where('index', '<', String(Math.min(from + PAGE, pruned)))
      .orderBy('index')
      .execute();
    for (const node of kept) {
      if (Number(node.index) !== sealed) return { ok: false, problem: `the kept hash of removed leaf ${sealed} is missing` };
      grow();
      node.hash.copy(packed, sealed * 32);
      sealed += 1;
    }
  }
  if (sealed !== pruned) return { ok: false, problem: `the kept hash of removed leaf ${sealed} is missing` };

  // Stored tree nodes load meanwhile (the leaves take most of verify's time, in workers).
  const storedNodes = loadStoredNodes(trx);
  storedNodes.catch(() => undefined); // a failure surfaces where it is awaited, below

  // Sealed events: when their leaf indices run contiguously from the cut (the normal case), the
  // leaves are recomputed range by range — in worker threads for a large ledger; otherwise the
  // ordered walk below finds where the order breaks.
  const extentOfLeaves = await sql<{ count: string; first: string | null; last: string | null }>`
    SELECT count(*) AS count, min(leaf_index) AS first, max(leaf_index) AS last FROM audit_events WHERE leaf_index IS NOT NULL`.execute(trx);
  const leafCount = Number(extentOfLeaves.rows[0]?.count ?? 0);
  const contiguous =
    leafCount > 0 && Number(extentOfLeaves.rows[0]?.first) === pruned && Number(extentOfLeaves.rows[0]?.last) === pruned + leafCount - 1;
  let walkSealed = true;
  // Filled by the workers (all levels) when they run; otherwise computed after the walk.
  let sharedTree: Buffer[] | undefined;
  if (contiguous && (leafCount >= PARALLEL_FROM || options.parallel?.workers !== undefined) && options.parallel) {
    const snapshot = await sql<{ id: string }>`SELECT pg_export_snapshot() AS id`.execute(trx);
    const shared = sharedLevels(pruned + leafCount);
    const tree = shared.map((level) => Buffer.from(level));
    const all = tree[0] as Buffer;
    packed.copy(all, 0, 0, pruned * 32);
    const { problem, ranges } = await recomputeLeavesInWorkers({ ...options.parallel, snapshot: snapshot.rows[0]?.id ?? '' }, trx.tenantId, pruned, pruned + leafCount, shared);
    if (problem) {
      await storedNodes.catch(() => undefined);
      return { ok: false, problem };
    }
    // The workers hashed the subtrees inside their ranges; the nodes across ranges (and over kept
    // leaves before the first range) are hashed here, bottom-up.
    fillSubtrees(tree, (level, index) => !ranges.some(([from, to]) => subtreeWithin(level, index, from, to)));
    sharedTree = tree;
    packed = all;
    sealed = pruned + leafCount;
    events += leafCount;
    walkSealed = false;
  }

  // The ordered walk: unsealed events, and sealed ones too unless the workers did them.
  const walked = await walkEvents();
  if (walked) {
    await storedNodes.catch(() => undefined);
    return { ok: false, problem: walked };
  }
  async function walkEvents(): Promise<string | undefined> {
    for await (const row of eventsInOrder(trx, walkSealed)) {
      events += 1;
      const recomputed = leafHashOfText(
        canonicalEventText({
          tenantId: trx.tenantId,
          occurredAt: isoTimeFromPostgres(row.occurred_at),
          actorType: row.actor_type,
          actorId: row.actor_id,
          action: row.action,
          targetType: row.target_type,
          targetId: row.target_id,
          outcome: row.outcome,
          sourceIp: row.source_ip,
          requestId: row.request_id,
          details: row.details,
        }),
      );
      const where = row.leaf_index === null ? `unsealed event id ${row.id}` : `leaf ${row.leaf_index} (event id ${row.id})`;
      if (!recomputed.equals(row.leaf_hash)) return `${where} does not match its recorded hash: the event was altered`;
      if (row.leaf_index === null) continue;
      if (Number(row.leaf_index) !== sealed) {
        return `leaf ${sealed} is missing (next is leaf ${row.leaf_index}): an event was removed or moved`;
      }
      grow();
      recomputed.copy(packed, sealed * 32);
      sealed += 1;
    }
    return undefined;
  }

  const levels = sharedTree ?? packedSubtrees(packed, sealed);
  // Every stored node must equal the node recomputed from the leaves below it.
  for (const page of await storedNodes) {
    const level = levels[page.level];
    if (!page.indices && level && (page.first + page.count) * 32 <= level.length && level.compare(page.hashes, 0, page.count * 32, page.first * 32, (page.first + page.count) * 32) === 0) {
      continue; // the whole page matches
    }
    // Find and name the first node that differs (or covers leaves that do not exist).
    for (let at = 0; at < page.count; at += 1) {
      const index = page.indices ? (page.indices[at] as number) : page.first + at;
      const expected = packedHash(levels, page.level, index);
      if (!expected) return { ok: false, problem: `stored tree node level ${page.level}, index ${index} covers leaves that do not exist` };
      if (expected.compare(page.hashes, at * 32, at * 32 + 32) !== 0) {
        return { ok: false, problem: `stored tree node level ${page.level}, index ${index} does not match the leaves below it` };
      }
    }
  }

  const source = packedSource(levels);
  for (const record of retention) {
    const root = await treeHash(source, Number(record.pruned_before_leaf));
    if (!root.equals(record.root_hash)) {
      return { ok: false, problem: `the leaves before ${record.pruned_before_leaf} do not add up to the root signed in their retention record` };
    }
  }
  const checkpoints = await trx.selectFrom('audit_checkpoints').selectAll().orderBy('tree_size').execute();
  for (const checkpoint of checkpoints) {
    const size = Number(checkpoint.tree_size);
    if (size > sealed) {
      return { ok: false, problem: `checkpoint of size ${size} covers more leaves than exist (${sealed}): events were removed` };
    }
    const root = await treeHash(source, size);
    if (!root.equals(checkpoint.root_hash)) {
      return { ok: false, problem: `checkpoint of size ${size} does not match the events: history before it was changed` };
    }
    const key = keys.get(checkpoint.signing_key_id);
    const head = { tenantId: trx.tenantId, treeSize: size, rootHash: checkpoint.root_hash, signedAt: checkpoint.signed_at };
    if (!key || !verifyTreeHead(key, head, checkpoint.signature)) {
      return { ok: false, problem: `checkpoint of size ${size} has no valid signature by a known audit signing key` };
    }
  }
  // Heads an outside witness holds must be in the database unchanged, and still be prefixes of
  // the recomputed tree: trust that does not rest on keys stored in the same database.
  for (const entry of witness.filter((item) => item.tenantId === trx.tenantId)) {
    if (entry.treeSize > sealed) return { ok: false, problem: `the witness holds a checkpoint of size ${entry.treeSize}, beyond the ${sealed} sealed events: events were removed` };
    const root = await treeHash(source, entry.treeSize);
    if (root.toString('hex') !== entry.rootHash) {
      return { ok: false, problem: `the witness's checkpoint of size ${entry.treeSize} does not match the events: history was rewritten` };
    }
  }

  // The newest signed head must cover every sealed event: otherwise leaves after it could have
  // been rewritten together with their hashes and nodes, and the checkpoints above them removed.
  const newest = checkpoints.at(-1);
  if (sealed > 0 && (!newest || Number(newest.tree_size) !== sealed)) {
    return { ok: false, problem: `the newest signed checkpoint covers ${newest ? Number(newest.tree_size) : 0} of ${sealed} sealed events: checkpoints were removed` };
  }
  return { ok: true, events, sealed, checkpoints: checkpoints.length, pruned };
}
