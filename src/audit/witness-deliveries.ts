import { sql } from '../db/kysely.ts';
import type { TenantDb } from '../db/tenant-db.ts';
import type { Logger } from '../logger.ts';
import type { DeliveryListener } from './checkpoint-publishers.ts';
import { isRetention, type WitnessEntry } from './witness.ts';

/**
 * Records which tree head each witness took last, per tenant — the evidence that the ledger's
 * heads leave the database (the compliance check `audit.witness_exported`). A witness that stops
 * taking heads shows as a head signed long ago and never delivered. Written after delivery, off
 * the sealer's path: a failed write is logged and the next delivery writes again.
 */
export function witnessDeliveryRecorder(forTenant: (tenantId: string) => TenantDb, logger: Logger): DeliveryListener {
  return (witness, entries) => {
    const newest = new Map<string, number>();
    for (const entry of entries as readonly WitnessEntry[]) {
      if (isRetention(entry)) continue;
      newest.set(entry.tenantId, Math.max(newest.get(entry.tenantId) ?? 0, entry.treeSize));
    }
    for (const [tenantId, treeSize] of newest) {
      void recordWitnessDelivery(forTenant(tenantId), witness, treeSize, new Date()).catch((error: unknown) => logger.warn({ err: error, witness }, 'could not record a witness delivery'));
    }
  };
}

export async function recordWitnessDelivery(tenantDb: TenantDb, witness: string, treeSize: number, at: Date): Promise<void> {
  await tenantDb.transaction((trx) =>
    sql`INSERT INTO audit_witness_deliveries (witness, tree_size, delivered_at) VALUES (${witness}, ${treeSize}, ${at})
        ON CONFLICT (tenant_id, witness) DO UPDATE SET tree_size = excluded.tree_size, delivered_at = excluded.delivered_at
        WHERE audit_witness_deliveries.tree_size <= excluded.tree_size`.execute(trx),
  );
}
