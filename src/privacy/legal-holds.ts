import { sql, type RawBuilder } from '../db/kysely.ts';
import type { TenantTransaction } from '../db/tenant-db.ts';

/**
 * Legal holds: a contact, or a whole campaign (its lists' members and its calls), kept whatever
 * the retention policies or an erasure request say, until the hold is released. One definition of
 * what a hold covers, used by erasure and by every retention category alike.
 */
export type HoldReason = { holdId: string; scope: 'contact' | 'campaign' };

/** True for a hold `h` in force that covers the contact `contact`: itself, or a campaign it is on or was called for. */
export function holdCoversContact(contact: RawBuilder<unknown>) {
  return sql<boolean>`(h.released_at IS NULL AND (
    h.contact_id = ${contact}
    OR h.campaign_id IN (SELECT l.campaign_id FROM contact_list_members m JOIN contact_lists l ON l.tenant_id = m.tenant_id AND l.id = m.list_id
                          WHERE m.contact_id = ${contact} AND l.campaign_id IS NOT NULL)
    OR h.campaign_id IN (SELECT x.campaign_id FROM dial_attempts x WHERE x.contact_id = ${contact})))`;
}

/** True when a hold in force covers the contact `contact`. */
export function contactHeld(contact: RawBuilder<unknown>) {
  return sql<boolean>`EXISTS (SELECT 1 FROM legal_holds h WHERE ${holdCoversContact(contact)})`;
}

/** True when a hold in force covers a row of `campaign` about `contact` (a call, its notes, its recording). */
export function rowHeld(campaign: RawBuilder<unknown>, contact: RawBuilder<unknown>) {
  return sql<boolean>`EXISTS (SELECT 1 FROM legal_holds h WHERE (h.released_at IS NULL AND h.campaign_id = ${campaign}) OR ${holdCoversContact(contact)})`;
}

/** The holds in force over a contact. */
export async function holdsOver(trx: TenantTransaction, contactId: string): Promise<HoldReason[]> {
  const rows = await sql<{ id: string; scope: 'contact' | 'campaign' }>`
    SELECT h.id, h.scope FROM legal_holds h WHERE ${holdCoversContact(sql`${contactId}::uuid`)} ORDER BY h.created_at`.execute(trx);
  return rows.rows.map((row) => ({ holdId: row.id, scope: row.scope }));
}
