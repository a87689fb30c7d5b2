import { sql } from '../db/kysely.ts';
import type { TenantTransaction } from '../db/tenant-db.ts';
import type { SystemDb } from '../db/system-db.ts';
import type { Logger } from '../logger.ts';
import { nodeHash, treeHash, type Hash, type SubtreeSource } from './merkle.ts';
import { signTreeHead, type SigningKey } from './signing-key.ts';
import { onCommit } from '../db/tenant-db.ts';
import { closePublishers, type CheckpointPublisher } from './checkpoint-publishers.ts';
import { runEvery } from '../background-task.ts';

/**
 * Perfect subtree hashes from the database: level 0 are the events' leaf hashes (or, for events
 * removed by retention, the level-0 nodes kept in their place), higher levels the stored nodes. `overlay` holds hashes computed in this transaction and not yet read back.
 */
export function databaseSource(trx: TenantTransaction, overlay = new Map<string, Hash>()): SubtreeSource {
  return async (level, index) => {
    const known = overlay.get(`${level}:${index}`);
    if (known) return known;
    // A leaf's hash is its event's, or — once retention removed the event — a level-0 node.
    const row =
      (level === 0
        ? await trx.selectFrom('audit_events').select('leaf_hash as hash').where('leaf_index', '=', sql<string>`${index}`).executeTakeFirst()
        : undefined) ??
      (await trx.selectFrom('audit_tree_nodes').select('hash').where('level', '=', level).where('index', '=', String(index)).executeTakeFirst());
    if (!row) throw new Error(`the audit tree has no node at level ${level}, index ${index}`);
    overlay.set(`${level}:${index}`, row.hash);
    return row.hash;
  };
}

/**
 * Fetches, in one query each for leaves and nodes, every perfect subtree that `compute` will ask
 * for, then runs it against memory: a proof costs two round trips instead of one per level.
 * `compute` is run twice: first with a recording source, then for real.
 */
export async function withPrefetchedSubtrees<T>(trx: TenantTransaction, compute: (source: SubtreeSource) => Promise<T>): Promise<T> {
  const wanted: { level: number; index: number }[] = [];
  await compute((level, index) => {
    wanted.push({ level, index });
    return Buffer.alloc(32);
  });
  const known = new Map<string, Hash>();
  const leafIndices = wanted.filter((node) => node.level === 0).map((node) => String(node.index));
  if (leafIndices.length > 0) {
    const leaves = await trx.selectFrom('audit_events').select(['leaf_index', 'leaf_hash']).where('leaf_index', 'in', sql<string>`(SELECT unnest(${sql.val(leafIndices)}::bigint[]))`).execute();
    for (const leaf of leaves) known.set(`0:${leaf.leaf_index}`, leaf.leaf_hash);
  }
  // Nodes of every level, leaves included: a leaf whose event retention removed is a level-0 node.
  const inner = wanted.filter((node) => !known.has(`${node.level}:${node.index}`));
  if (inner.length > 0) {
    const nodes = await sql<{ level: number; index: string; hash: Buffer }>`
      SELECT n.level, n.index, n.hash FROM audit_tree_nodes n
        JOIN unnest(${sql.val(inner.map((node) => node.level))}::smallint[], ${sql.val(inner.map((node) => String(node.index)))}::bigint[]) AS w(level, index)
          ON n.level = w.level AND n.index = w.index
       WHERE n.tenant_id = current_tenant_id()`.execute(trx);
    for (const node of nodes.rows) known.set(`${node.level}:${node.index}`, node.hash);
  }
  return compute((level, index) => {
    const hash = known.get(`${level}:${index}`);
    if (!hash) throw new Error(`the audit tree has no node at level ${level}, index ${index}`);
    return hash;
  });
}

/** Leaves in the tenant's tree: after the last sealed event, or after the last retention cut. */
export async function sealedTreeSize(trx: TenantTransaction): Promise<number> {
  const row = await sql<{ size: string }>`
    SELECT greatest(
      (SELECT coalesce(max(leaf_index) + 1, 0) FROM audit_events),
      (SELECT coalesce(max(pruned_before_leaf), 0) FROM audit_retention_records)) AS size`.execute(trx);
  return Number(row.rows[0]?.size ?? 0);
}

/**
 * Seals the tenant's unsealed events (at most `maxEvents`): gives them the next leaf indices in
 * the order they were written, stores the new perfect subtrees, and signs the new tree head.
 * One sealer per tenant at a time (advisory lock); returns undefined when another holds it.
 */
export async function sealTenantLedger(
  trx: TenantTransaction,
  key: SigningKey,
  options: { maxEvents?: number; now?: Date; publishers?: readonly CheckpointPublisher[] } = {},
): Promise<{ sealed: number; treeSize: number } | undefined> {
  const locked = await sql<{ locked: boolean }>`SELECT pg_try_advisory_xact_lock(hashtextextended(${`ringvakt:audit-seal:${trx.tenantId}`}, 0)) AS locked`.execute(trx);
  if (!locked.rows[0]?.locked) return undefined;
  const oldSize = await sealedTreeSize(trx);
  const pending = await trx
    .selectFrom('audit_events')
    .select(['id', 'leaf_hash'])
    .where('leaf_index', 'is', null)
    .orderBy('id')
    .limit(options.maxEvents ?? 50_000)
    .execute();
  if (pending.length === 0) return { sealed: 0, treeSize: oldSize };

  const assigned = await sql<{ first: string }>`SELECT audit_assign_leaves(${sql.val(pending.map((row) => row.id))}::bigint[]) AS first`.execute(trx);
  if (Number(assigned.rows[0]?.first) !== oldSize) throw new Error('audit sealing found the tree longer than expected');
  const newSize = oldSize + pending.length;
  const overlay = new Map<string, Hash>();
  pending.forEach((row, offset) => overlay.set(`0:${oldSize + offset}`, row.leaf_hash));
  const source = databaseSource(trx, overlay);

  // Every perfect subtree completed by the new leaves, bottom-up.
  const nodes: { level: number; index: number; hash: Hash }[] = [];
  for (let level = 1; 2 ** level <= newSize; level += 1) {
    const width = 2 ** level;
    for (let index = Math.floor(oldSize / width); (index + 1) * width <= newSize; index += 1) {
      const hash = nodeHash(await source(level - 1, 2 * index), await source(level - 1, 2 * index + 1));
      overlay.set(`${level}:${index}`, hash);
      nodes.push({ level, index, hash });
    }
  }
  for (let start = 0; start < nodes.length; start += 5_000) {
    await trx
      .insertInto('audit_tree_nodes')
      .values(nodes.slice(start, start + 5_000).map((node) => ({ level: node.level, index: node.index, hash: node.hash })))
      .execute();
  }

  const rootHash = await treeHash(source, newSize);
  const signedAt = new Date(Math.floor((options.now ?? new Date()).getTime()));
  const signature = signTreeHead(key, { tenantId: trx.tenantId, treeSize: newSize, rootHash, signedAt });
  await trx
    .insertInto('audit_checkpoints')
    .values({ tree_size: newSize, root_hash: rootHash, signed_at: signedAt, signing_key_id: key.keyId, signature })
    .execute();
  const publishers = options.publishers ?? [];
  if (publishers.length > 0) {
    const checkpoint = {
      tenantId: trx.tenantId,
      treeSize: newSize,
      rootHash: rootHash.toString('hex'),
      signedAt: signedAt.toISOString(),
      signingKeyId: key.keyId,
      publicKey: key.publicKey.export({ format: 'der', type: 'spki' }).toString('base64'),
      signature: signature.toString('base64'),
    };
    // Published once the checkpoint is committed: a witness never holds a head the database lost.
    onCommit(trx, () => {
      for (const publisher of publishers) publisher.publish(checkpoint);
    });
  }
  return { sealed: pending.length, treeSize: newSize };
}

/**
 * How often the sealer looks for unsealed events: the security monitor reads sealed events only
 * (src/security/monitor-service.ts), so this bounds how soon an alert can follow its event.
 */
export const SEAL_EVERY_MS = 1_000;

export function startAuditSealer(options: {
  systemDb: SystemDb;
  signingKey: SigningKey;
  logger: Logger;
  intervalMs?: number;
  publishers?: readonly CheckpointPublisher[];
}): { stop(): Promise<void>; runOnce(): Promise<void> } {
  const publishers = options.publishers ?? [];
  const runOnce = async () => {
    for (const tenantId of await options.systemDb.tenantsWithUnsealedAuditEvents()) {
      // One tenant's failure must not stop the others' sealing.
      try {
        await options.systemDb.inTenant(tenantId).transaction((trx) =>
          sealTenantLedger(trx, options.signingKey, { publishers }),
        );
      } catch (error) {
        options.logger.error({ err: error, tenant: tenantId }, 'audit sealing failed for a tenant');
      }
    }
  };
  // Under load a round can outlast the interval: the next then starts at once (catchUp), so events wait for one round, not two.
  const task = runEvery('audit_sealer', options.intervalMs ?? SEAL_EVERY_MS, runOnce, (error) => options.logger.error({ err: error }, 'audit sealing failed'), { catchUp: true });
  return {
    runOnce,
    async stop() {
      await task.stop();
      await closePublishers(publishers);
    },
  };
}
