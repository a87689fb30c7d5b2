import { z } from '../../zod.ts';
import type { App } from '../../server/types.ts';
import { AppError } from '../../server/errors.ts';
import { problemResponses, uuidSchema } from '../../server/schemas.ts';
import { recordAuditEvent } from '../../audit/audit-event.ts';
import { requestAudit } from '../../server/request-audit.ts';
import type { ContactsCrypto } from '../contacts/contacts.service.ts';
import { recordingAt } from '../../dialer/call-recording.ts';

/**
 * Playback of call recordings: only with `recordings:play`, each playback audited (in the same
 * transaction that opens the audio, before a byte is sent), never cached by the browser.
 */
export async function recordingsRoutes(app: App, crypto: ContactsCrypto): Promise<void> {
  app.get(
    '/api/v1/recordings/:attemptId/audio',
    {
      config: { access: 'recordings:play' },
      schema: {
        summary: "A call's recording (WAV), decrypted for playback; audited",
        tags: ['recordings'],
        params: z.strictObject({ attemptId: uuidSchema }),
        response: { 200: z.any(), ...problemResponses(400, 401, 403, 404) },
      },
    },
    async (request, reply) => {
      const audio = await request.tenantDb.transaction(async (trx) => {
        const recording = await trx.selectFrom('recordings').select(['attempt_id', 'contact_id', 'state', 'audio_ciphertext']).where('attempt_id', '=', request.params.attemptId).executeTakeFirst();
        if (!recording || recording.state !== 'saved' || !recording.audio_ciphertext) throw new AppError('not_found', 'No saved recording for this call.');
        const key = (await crypto.keyring.subjectKeys(trx, [recording.contact_id])).get(recording.contact_id) ?? null;
        if (key === null) throw new AppError('not_found', 'No saved recording for this call.');
        const opened = crypto.cipher.decryptBytesForSubject(trx.tenantId, recordingAt(recording.attempt_id), recording.audio_ciphertext, key);
        await recordAuditEvent(trx, { ...requestAudit(request), action: 'recording.play', outcome: 'success', target: { type: 'dial_attempt', id: recording.attempt_id }, details: { bytes: opened.length } });
        return opened;
      });
      return reply
        .header('content-type', 'audio/wav')
        .header('content-disposition', 'attachment; filename="recording.wav"')
        .header('cache-control', 'no-store')
        .send(audio);
    },
  );
}
