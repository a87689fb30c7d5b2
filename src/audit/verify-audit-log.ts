import type { KeyObject } from 'node:crypto';
import { sql } from 'kysely';
import type { TenantTransaction } from '../db/tenant-db.ts';
import { canonicalEvent } from './audit-event.ts';
import { leafHash, packedHash, packedSource, packedSubtrees, treeHash } from './merkle.ts';
import { verifyRetentionRecord } from './retention.ts';
import { verifyTreeHead } from './signing-key.ts';
import type { WitnessedCheckpoint } from './witness.ts';

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
  // As text, exactly as Date.toISOString() writes it: no Date parsing per row. A stored time
  // with more than millisecond precision (never written by Ringvakt) reads as altered.
  sql<string>`to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`.as('occurred_at'),
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
async function* eventsInOrder(trx: TenantTransaction) {
  // Pages are ranges of leaf indices, not "after X, limit N": the planner then always walks the
  // (tenant_id, leaf_index) index instead of scanning and sorting the table for every page. A
  // gap in the indices only shortens a page; the loop ends after the last index.
  const last = await trx.selectFrom('audit_events').select((eb) => eb.fn.max('leaf_index').as('last')).executeTakeFirst();
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

export async function verifyTenantLedger(
  trx: TenantTransaction,
  keys: Map<string, KeyObject>,
  witness: WitnessedCheckpoint[] = [],
): Promise<LedgerVerdict> {
  // Leaf hashes packed into one growing buffer (see packedSubtrees).
  let packed = Buffer.allocUnsafe(32 * 1024);
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
  for (const record of retention) {
    const key = keys.get(record.signing_key_id);
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

  for await (const row of eventsInOrder(trx)) {
    events += 1;
    const recomputed = leafHash(
      canonicalEvent({
        tenantId: trx.tenantId,
        occurredAt: row.occurred_at,
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
    if (!recomputed.equals(row.leaf_hash)) return { ok: false, problem: `${where} does not match its recorded hash: the event was altered` };
    if (row.leaf_index === null) continue;
    if (Number(row.leaf_index) !== sealed) {
      return { ok: false, problem: `leaf ${sealed} is missing (next is leaf ${row.leaf_index}): an event was removed or moved` };
    }
    grow();
    recomputed.copy(packed, sealed * 32);
    sealed += 1;
  }

  const levels = packedSubtrees(packed, sealed);
  // Stored nodes, level by level in index ranges (again so that every page walks the index).
  const extent = await trx
    .selectFrom('audit_tree_nodes')
    .select(['level', (eb) => eb.fn.max('index').as('last')])
    .groupBy('level')
    .execute();
  for (const { level, last } of extent) {
    for (let from = 0; from <= Number(last); from += PAGE) {
      const nodes = await trx
        .selectFrom('audit_tree_nodes')
        .select(['level', 'index', 'hash'])
        .where('level', '=', level)
        .where('index', '>=', String(from))
        .where('index', '<', String(from + PAGE))
        .execute();
      for (const node of nodes) {
        const expected = packedHash(levels, node.level, Number(node.index));
        if (!expected) return { ok: false, problem: `stored tree node level ${node.level}, index ${node.index} covers leaves that do not exist` };
        if (!expected.equals(node.hash)) return { ok: false, problem: `stored tree node level ${node.level}, index ${node.index} does not match the leaves below it` };
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
