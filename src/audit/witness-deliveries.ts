import { sql } from '../db/kysely.ts';
import type { TenantDb } from '../db/tenant-db.ts';
import type { Logger } from '../logger.ts';
import type { DeliveryListener } from './checkpoint-publishers.ts';
import { isRetention } from './witness.ts';

/**
 * Records which tree head each witness took last, per tenant — the evidence that the ledger's
 * heads leave the database (the compliance check `audit.witness_exported`, which allows a head 15
 * minutes to arrive). Deliveries are gathered in memory (the newest head per tenant and witness)
 * and written at most every `everyMs`, one tenant after another, off the sealer's path: a sealer
 * signing every second costs the database one small write per tenant and witness per interval.
 * A failed write is logged and kept for the next flush; a process that dies loses at most one
 * interval of records, never a delivery.
 */
export type WitnessDeliveryRecorder = { onDelivered: DeliveryListener; flush(): Promise<void>; stop(): Promise<void> };

type Pending = { tenantId: string; witness: string; treeSize: number; at: Date };

export function startWitnessDeliveryRecorder(forTenant: (tenantId: string) => TenantDb, logger: Logger, everyMs = 30_000): WitnessDeliveryRecorder {
  const pending = new Map<string, Pending>();
  let flushing: Promise<void> = Promise.resolve();

  const keep = (item: Pending) => {
    const key = `${item.tenantId}:${item.witness}`;
    const known = pending.get(key);
    if (!known || known.treeSize <= item.treeSize) pending.set(key, item);
  };

  const onDelivered: DeliveryListener = (witness, entries) => {
    const at = new Date();
    for (const entry of entries) if (!isRetention(entry)) keep({ tenantId: entry.tenantId, witness, treeSize: entry.treeSize, at });
  };

  const flushOnce = async () => {
    const batch = [...pending.values()];
    pending.clear();
    for (const item of batch) {
      try {
        await recordWitnessDelivery(forTenant(item.tenantId), item.witness, item.treeSize, item.at);
      } catch (error) {
        logger.warn({ err: error, witness: item.witness }, 'could not record a witness delivery; trying again at the next flush');
        keep(item);
      }
    }
  };
  const flush = () => (flushing = flushing.then(flushOnce).catch((error: unknown) => logger.warn({ err: error }, 'could not record witness deliveries')));
  const timer = setInterval(() => void flush(), everyMs);
  timer.unref();

  return {
    onDelivered,
    flush,
    async stop() {
      clearInterval(timer);
      await flush();
    },
  };
}

export async function recordWitnessDelivery(tenantDb: TenantDb, witness: string, treeSize: number, at: Date): Promise<void> {
  await tenantDb.transaction((trx) =>
    sql`INSERT INTO audit_witness_deliveries (witness, tree_size, delivered_at) VALUES (${witness}, ${treeSize}, ${at})
        ON CONFLICT (tenant_id, witness) DO UPDATE SET tree_size = excluded.tree_size, delivered_at = excluded.delivered_at
        WHERE audit_witness_deliveries.tree_size <= excluded.tree_size`.execute(trx),
  );
}
