import { sign, verify, type KeyObject } from 'node:crypto';
import { sql } from '../db/kysely.ts';
import type { DatabaseHandles } from '../db/database.ts';
import type { TenantTransaction } from '../db/tenant-db.ts';
import { auditEventRow } from './audit-event.ts';
import type { SigningKey } from './signing-key.ts';
import type { CheckpointPublisher } from './checkpoint-publishers.ts';
import type { WitnessedRetention } from './witness.ts';

/**
 * Audit retention: the documented, and only, way events leave the ledger.
 *
 * An operator runs `ringvakt audit prune --tenant T --before <time> --reason … --operator …`.
 * It picks the largest signed checkpoint whose events all occurred before the cut-off, signs a
 * retention record (who, when, why, cut-off, the checkpoint's size and root) with the audit
 * signing key, and hands it to the owner-only database procedure `audit_apply_retention`
 * (migration 0006). That procedure re-checks the record against the data, keeps each removed
 * event's leaf hash as a level-0 tree node, stores the record and deletes the events — the
 * triggers let a DELETE through only for rows a record of the same transaction covers. The
 * prune itself is recorded as an `audit.retention` event in the ledger.
 *
 * Afterwards every checkpoint and proof still verifies (the tree keeps every leaf hash); `audit
 * verify` checks each record's signature and that the kept leaf hashes still add up to the
 * signed root. What is gone is only the events' content, as the retention policy intends.
 */
export type RetentionRecord = {
  tenantId: string;
  prunedBeforeLeaf: number;
  rootHash: Buffer;
  cutoff: Date;
  reason: string;
  executedAt: Date;
  executedBy: string;
  signingKeyId: string;
};

/** The bytes a retention record's signature covers. */
export function retentionMessage(record: RetentionRecord): Buffer {
  return Buffer.from(
    JSON.stringify([
      'ringvakt-audit-retention/v1',
      record.tenantId,
      record.prunedBeforeLeaf,
      record.rootHash.toString('hex'),
      record.cutoff.toISOString(),
      record.reason,
      record.executedAt.toISOString(),
      record.executedBy,
      record.signingKeyId,
    ]),
    'utf8',
  );
}

export function verifyRetentionRecord(publicKey: KeyObject, record: RetentionRecord, signature: Buffer): boolean {
  return verify(null, retentionMessage(record), publicKey, signature);
}

export type RetentionPlan = { previous: number; prunedBeforeLeaf: number; rootHash: Buffer; events: number } | undefined;

/**
 * Where a prune up to `cutoff` would stop: the largest signed checkpoint past the last cut whose
 * every event occurred before the cut-off. Undefined when no such checkpoint exists yet.
 */
export async function planRetention(trx: TenantTransaction, cutoff: Date): Promise<RetentionPlan> {
  // Evidence of an incident still under investigation is held: retention stops before its first event.
  const result = await sql<{ previous: string; first_late: string | null; first_held: string | null; sealed: string }>`
    SELECT coalesce((SELECT max(pruned_before_leaf) FROM audit_retention_records), 0) AS previous,
           (SELECT min(leaf_index) FROM audit_events WHERE leaf_index IS NOT NULL AND occurred_at >= ${cutoff}) AS first_late,
           (SELECT min(e.leaf_index) FROM incident_audit_events l
              JOIN incidents i ON i.tenant_id = l.tenant_id AND i.id = l.incident_id
              JOIN audit_events e ON e.tenant_id = l.tenant_id AND e.id = l.audit_event_id
             WHERE i.state <> 'resolved' AND e.leaf_index IS NOT NULL) AS first_held,
           coalesce((SELECT max(leaf_index) + 1 FROM audit_events), 0) AS sealed`.execute(trx);
  const row = result.rows[0];
  if (!row) return undefined;
  const previous = Number(row.previous);
  const limit = Math.min(row.first_late === null ? Number(row.sealed) : Number(row.first_late), row.first_held === null ? Number.POSITIVE_INFINITY : Number(row.first_held));
  const checkpoint = await trx
    .selectFrom('audit_checkpoints')
    .select(['tree_size', 'root_hash'])
    .where('tree_size', '>', String(previous))
    .where('tree_size', '<=', String(limit))
    .orderBy('tree_size', 'desc')
    .limit(1)
    .executeTakeFirst();
  if (!checkpoint) return undefined;
  const prunedBeforeLeaf = Number(checkpoint.tree_size);
  return { previous, prunedBeforeLeaf, rootHash: checkpoint.root_hash, events: prunedBeforeLeaf - previous };
}

export type RetentionOutcome = { removed: number; prunedBeforeLeaf: number } | { removed: 0; prunedBeforeLeaf: undefined };

export async function pruneAuditLedger(
  database: Pick<DatabaseHandles, 'forTenant' | 'asOwner'>,
  key: SigningKey,
  options: { tenantId: string; cutoff: Date; reason: string; executedBy: string; now?: Date; publishers?: readonly CheckpointPublisher[] },
): Promise<RetentionOutcome> {
  const plan = await database.forTenant(options.tenantId).read((trx) => planRetention(trx, options.cutoff));
  if (!plan) return { removed: 0, prunedBeforeLeaf: undefined };
  const record: RetentionRecord = {
    tenantId: options.tenantId,
    prunedBeforeLeaf: plan.prunedBeforeLeaf,
    rootHash: plan.rootHash,
    cutoff: options.cutoff,
    reason: options.reason,
    executedAt: new Date(Math.floor((options.now ?? new Date()).getTime())),
    executedBy: options.executedBy,
    signingKeyId: key.keyId,
  };
  const signature = sign(null, retentionMessage(record), key.privateKey);
  const removed = await database.asOwner(async (client) => {
    const applied = await client.query<{ removed: string }>(
      'SELECT audit_apply_retention($1, $2, $3, $4, $5, $6, $7, $8, $9) AS removed',
      [record.tenantId, record.prunedBeforeLeaf, record.rootHash, record.cutoff, record.reason, record.executedAt, record.executedBy, record.signingKeyId, signature],
    );
    // The prune is itself an event of the ledger (the procedure set this tenant for the transaction).
    const event = auditEventRow(record.tenantId, {
      action: 'audit.retention',
      outcome: 'success',
      actor: { type: 'operator', id: record.executedBy },
      occurredAt: record.executedAt,
      details: { prunedBeforeLeaf: record.prunedBeforeLeaf, cutoff: record.cutoff.toISOString(), removed: Number(applied.rows[0]?.removed ?? 0) },
    });
    await client.query(
      `INSERT INTO audit_events (occurred_at, actor_type, actor_id, action, target_type, target_id, outcome, source_ip, request_id, details, leaf_hash)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
      [event.occurred_at, event.actor_type, event.actor_id, event.action, event.target_type, event.target_id, event.outcome, event.source_ip, event.request_id, event.details, event.leaf_hash],
    );
    return Number(applied.rows[0]?.removed ?? 0);
  });
  // Committed: the witnesses learn of the removal too.
  const entry: WitnessedRetention = {
    type: 'retention',
    tenantId: record.tenantId,
    prunedBeforeLeaf: record.prunedBeforeLeaf,
    rootHash: record.rootHash.toString('hex'),
    cutoff: record.cutoff.toISOString(),
    reason: record.reason,
    executedAt: record.executedAt.toISOString(),
    executedBy: record.executedBy,
    signingKeyId: record.signingKeyId,
    publicKey: key.publicKey.export({ format: 'der', type: 'spki' }).toString('base64'),
    signature: signature.toString('base64'),
  };
  for (const publisher of options.publishers ?? []) publisher.publish(entry);
  return { removed, prunedBeforeLeaf: record.prunedBeforeLeaf };
}

/** The record a witness holds, in the form its signature covers. */
export function retentionFromWitness(entry: WitnessedRetention): RetentionRecord {
  return {
    tenantId: entry.tenantId,
    prunedBeforeLeaf: entry.prunedBeforeLeaf,
    rootHash: Buffer.from(entry.rootHash, 'hex'),
    cutoff: new Date(entry.cutoff),
    reason: entry.reason,
    executedAt: new Date(entry.executedAt),
    executedBy: entry.executedBy,
    signingKeyId: entry.signingKeyId,
  };
}
