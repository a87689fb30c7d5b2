import type { TenantDb, TenantTransaction } from '../db/tenant-db.ts';
import { AppError } from '../server/errors.ts';
import { consistencyProof, inclusionProof } from './merkle.ts';
import { databaseSource, sealedTreeSize, withPrefetchedSubtrees } from './seal-audit-log.ts';
import type { WitnessedCheckpoint } from './witness.ts';

/**
 * What auditors and SIEMs read from the ledger, for the CLI and the HTTP API alike: sealed events
 * in leaf order, the newest signed tree head, and RFC 9162 proofs.
 *
 * Exports follow leaf indices, not event ids: ids come from a sequence and commit out of order, so
 * "after id X" can skip an event that committed late; leaf indices are handed out by the sealer,
 * gapless and in order, so "after leaf N" never misses one. Events still awaiting sealing (a few
 * seconds old) appear in the next export.
 */
export type ExportedAuditEvent = {
  leafIndex: number;
  id: string;
  occurredAt: string;
  actor: { type: string; id: string | null };
  action: string;
  target: { type: string; id: string | null } | null;
  outcome: string;
  sourceIp: string | null;
  requestId: string | null;
  details: Record<string, unknown>;
  leafHash: string;
};

export type ExportRange = { since?: Date | undefined; afterLeaf?: number | undefined };

const PAGE = 2_000;

/** Sealed events in leaf order, page by page; each page is one tenant-scoped read. */
export async function* exportSealedEvents(tenantDb: TenantDb, range: ExportRange): AsyncGenerator<ExportedAuditEvent> {
  let after = range.afterLeaf ?? -1;
  for (;;) {
    const rows = await tenantDb.read((trx) => {
      let query = trx
        .selectFrom('audit_events')
        .selectAll()
        .where('leaf_index', 'is not', null)
        .where('leaf_index', '>', String(after))
        .orderBy('leaf_index')
        .limit(PAGE);
      if (range.since) query = query.where('occurred_at', '>=', range.since);
      return query.execute();
    });
    for (const row of rows) {
      yield {
        leafIndex: Number(row.leaf_index),
        id: row.id,
        occurredAt: row.occurred_at.toISOString(),
        actor: { type: row.actor_type, id: row.actor_id },
        action: row.action,
        target: row.target_type ? { type: row.target_type, id: row.target_id } : null,
        outcome: row.outcome,
        sourceIp: row.source_ip,
        requestId: row.request_id,
        details: row.details,
        leafHash: row.leaf_hash.toString('hex'),
      };
    }
    if (rows.length < PAGE) return;
    after = Number(rows.at(-1)?.leaf_index);
  }
}

/** A signed checkpoint as witnesses receive it (witness.ts), without the tenant: the caller's own. */
/** Leaves below this were removed by the retention procedure (0 when none were). */
export async function prunedBeforeLeaf(trx: TenantTransaction): Promise<number> {
  const row = await trx.selectFrom('audit_retention_records').select((eb) => eb.fn.max('pruned_before_leaf').as('cut')).executeTakeFirst();
  return Number(row?.cut ?? 0);
}

export type SignedTreeHead = Omit<WitnessedCheckpoint, 'tenantId'>;

/** The newest signed checkpoint, with the public key that verifies it; undefined before the first. */
export async function latestSignedTreeHead(
  trx: TenantTransaction,
  publicKeyOf: (keyId: string) => Promise<Buffer | undefined>,
): Promise<SignedTreeHead | undefined> {
  const row = await trx.selectFrom('audit_checkpoints').selectAll().orderBy('tree_size', 'desc').limit(1).executeTakeFirst();
  if (!row) return undefined;
  const publicKey = await publicKeyOf(row.signing_key_id);
  if (!publicKey) throw new Error('the newest audit checkpoint names a signing key that does not exist');
  return {
    treeSize: Number(row.tree_size),
    rootHash: row.root_hash.toString('hex'),
    signedAt: row.signed_at.toISOString(),
    signingKeyId: row.signing_key_id,
    publicKey: publicKey.toString('base64'),
    signature: row.signature.toString('base64'),
  };
}

export type InclusionProof = { leafIndex: number; treeSize: number; leafHash: string; proof: string[] };

/** Proves that leaf `leaf` is in the tree of `size` leaves (default: the whole sealed tree). */
export async function proveInclusion(trx: TenantTransaction, leaf: number, size?: number): Promise<InclusionProof> {
  const sealed = await sealedTreeSize(trx);
  const treeSize = size ?? sealed;
  if (!(leaf < treeSize && treeSize <= sealed)) {
    throw new AppError('proof_out_of_range', `The leaf must be below the tree size, and the tree size at most ${sealed} (the sealed tree).`);
  }
  const proof = await withPrefetchedSubtrees(trx, (source) => inclusionProof(source, leaf, treeSize));
  const leafHash = await databaseSource(trx)(0, leaf);
  return { leafIndex: leaf, treeSize, leafHash: leafHash.toString('hex'), proof: proof.map((hash) => hash.toString('hex')) };
}

export type ConsistencyProof = { from: number; to: number; proof: string[] };

/** Proves that the tree of `from` leaves is a prefix of the tree of `to` leaves. */
export async function proveConsistency(trx: TenantTransaction, from: number, to: number): Promise<ConsistencyProof> {
  const sealed = await sealedTreeSize(trx);
  if (!(from > 0 && from <= to && to <= sealed)) {
    throw new AppError('proof_out_of_range', `Sizes must satisfy 0 < from ≤ to ≤ ${sealed} (the sealed tree).`);
  }
  const proof = await withPrefetchedSubtrees(trx, (source) => consistencyProof(source, from, to));
  return { from, to, proof: proof.map((hash) => hash.toString('hex')) };
}
