import type { TenantTransaction } from '../../db/tenant-db.ts';
import { requireContact, type ContactsCrypto } from '../contacts/contacts.service.ts';
import { presentContact } from '../contacts/contacts.routes.ts';
import { AppError } from '../../server/errors.ts';

/** Earlier calls of the same contact shown beside the current one (newest first). */
const HISTORY_LIMIT = 10;

export type ContactCard = {
  contact: { id: string; name: string | null; phones: { kind: string; masked: string }[]; status: string };
  history: { attemptId: string; at: string; outcome: string | null; disposition: string | null; notes: string | null }[];
};

/** A contact's name as an agent sees it; null once the person is erased (the call record stays). */
export async function contactName(trx: TenantTransaction, crypto: ContactsCrypto, contactId: string): Promise<string | null> {
  try {
    return presentContact(await requireContact(trx, crypto, contactId)).name;
  } catch (error) {
    if (error instanceof AppError && (error.code === 'contact_erased' || error.code === 'not_found')) return null;
    throw error;
  }
}

/**
 * What an agent sees of the person they are calling or about to call: the name, the numbers
 * masked (the full number needs the audited reveal), and this contact's earlier calls with their
 * outcomes and notes (decrypted under the contact's key; `except` leaves out the call in hand).
 */
export async function contactCard(trx: TenantTransaction, crypto: ContactsCrypto, contactId: string, except?: string): Promise<ContactCard> {
  const contact = presentContact(await requireContact(trx, crypto, contactId));
  let query = trx
    .selectFrom('dial_attempts')
    .select(['id', 'reserved_at', 'ended_at', 'outcome', 'disposition', 'notes_ciphertext'])
    .where('contact_id', '=', contactId)
    .where('state', 'in', ['ended', 'skipped']);
  if (except !== undefined) query = query.where('id', '!=', except);
  const earlier = await query.orderBy('reserved_at', 'desc').limit(HISTORY_LIMIT).execute();
  const history: ContactCard['history'] = [];
  for (const row of earlier) {
    const notes = row.notes_ciphertext ? await crypto.cipher.decrypt(trx, { table: 'dial_attempts', recordId: row.id, field: 'notes' }, row.notes_ciphertext, contactId) : null;
    history.push({ attemptId: row.id, at: (row.ended_at ?? row.reserved_at).toISOString(), outcome: row.outcome, disposition: row.disposition, notes });
  }
  return { contact: { id: contact.id, name: contact.name, phones: contact.phones.map(({ kind, masked }) => ({ kind, masked })), status: contact.status }, history };
}
