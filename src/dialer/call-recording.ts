import type { TenantTransaction } from '../db/tenant-db.ts';
import type { ContactsCrypto } from '../modules/contacts/contacts.service.ts';

/**
 * A call's recording as the database keeps it: a row from the moment the call reaches its agent,
 * its pauses counted (card payments), and at the end the audio sealed under the contact's own
 * subject key — erasing the contact shreds the recording with the rest of their data.
 */

/** Where a recording's audio sits: the associated data its ciphertext is bound to. */
export const recordingAt = (attemptId: string) => ({ table: 'recordings', recordId: attemptId, field: 'audio' });

export async function recordingStarted(trx: TenantTransaction, call: { attemptId: string; campaignId: string; contactId: string; at: Date }): Promise<void> {
  await trx
    .insertInto('recordings')
    .values({ attempt_id: call.attemptId, campaign_id: call.campaignId, contact_id: call.contactId, started_at: call.at })
    .onConflict((conflict) => conflict.doNothing())
    .execute();
}

export async function recordingPaused(trx: TenantTransaction, attemptId: string, paused: boolean): Promise<void> {
  await trx
    .updateTable('recordings')
    .set((eb) => ({ state: paused ? 'paused' : 'recording', pauses: paused ? eb('pauses', '+', 1) : eb.ref('pauses') }))
    .where('attempt_id', '=', attemptId)
    .execute();
}

/** Seals and stores the saved audio; with no audio, or no subject key (erased meanwhile), keeps nothing. */
export async function recordingSaved(
  trx: TenantTransaction,
  crypto: ContactsCrypto,
  saved: { attemptId: string; contactId: string; audio: Buffer | undefined; at: Date; durationMs: number | null },
): Promise<void> {
  const key = (await crypto.keyring.subjectKeys(trx, [saved.contactId])).get(saved.contactId) ?? null;
  if (!saved.audio || key === null) {
    await trx.updateTable('recordings').set({ state: 'failed', saved_at: saved.at }).where('attempt_id', '=', saved.attemptId).execute();
    return;
  }
  const sealed = crypto.cipher.encryptBytesForSubject(trx.tenantId, recordingAt(saved.attemptId), saved.audio, key);
  await trx
    .updateTable('recordings')
    .set({ state: 'saved', saved_at: saved.at, duration_ms: saved.durationMs, audio_bytes: saved.audio.length, audio_ciphertext: sealed })
    .where('attempt_id', '=', saved.attemptId)
    .execute();
}
