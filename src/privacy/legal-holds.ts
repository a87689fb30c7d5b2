import { sql } from 'kysely';
import type { TenantTransaction } from '../db/tenant-db.ts';

/**
 * Legal holds: a contact, or a whole campaign (its lists' members and its calls), kept whatever
 * the retention policies or an erasure request say, until the hold is released.
 */
export type HoldReason = { holdId: string; scope: 'contact' | 'campaign' };

/** The holds in force over a contact: its own, and those of campaigns it is on or was called for. */
export async function holdsOver(trx: TenantTransaction, contactId: string): Promise<HoldReason[]> {
  const rows = await sql<{ id: string; scope: 'contact' | 'campaign' }>`
    SELECT h.id, h.scope FROM legal_holds h
     WHERE h.released_at IS NULL
       AND (h.contact_id = ${contactId}
            OR h.campaign_id IN (SELECT l.campaign_id FROM contact_list_members m JOIN contact_lists l ON l.tenant_id = m.tenant_id AND l.id = m.list_id
                                  WHERE m.contact_id = ${contactId} AND l.campaign_id IS NOT NULL)
            OR h.campaign_id IN (SELECT a.campaign_id FROM dial_attempts a WHERE a.contact_id = ${contactId}))
     ORDER BY h.created_at`.execute(trx);
  return rows.rows.map((row) => ({ holdId: row.id, scope: row.scope }));
}

/** SQL that is true for a contact id (`contactColumn`) some hold in force covers: for bulk sweeps. */
export function heldContactCondition(contactColumn: ReturnType<typeof sql.ref>) {
  return sql<boolean>`EXISTS (
    SELECT 1 FROM legal_holds h
     WHERE h.released_at IS NULL
       AND (h.contact_id = ${contactColumn}
            OR h.campaign_id IN (SELECT l.campaign_id FROM contact_list_members m JOIN contact_lists l ON l.tenant_id = m.tenant_id AND l.id = m.list_id
                                  WHERE m.contact_id = ${contactColumn} AND l.campaign_id IS NOT NULL)))`;
}

/** SQL that is true for a campaign id some hold in force covers. */
export function heldCampaignCondition(campaignColumn: ReturnType<typeof sql.ref>) {
  return sql<boolean>`EXISTS (SELECT 1 FROM legal_holds h WHERE h.released_at IS NULL AND h.campaign_id = ${campaignColumn})`;
}
