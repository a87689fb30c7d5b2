import { z } from '../../zod.ts';
import type { App } from '../../server/types.ts';
import { AppError } from '../../server/errors.ts';
import { problemResponses, uuidSchema } from '../../server/schemas.ts';
import { recordAuditEvent } from '../../audit/audit-event.ts';
import { actorLabel, requestAudit } from '../../server/request-audit.ts';
import { principalOf } from '../../server/access-control.ts';
import type { ContactsCrypto } from '../contacts/contacts.service.ts';
import { openNumbers } from '../contacts/open-contact.ts';
import { FieldCipherError } from '../../crypto/field-cipher.ts';
import { addSuppression } from '../suppression/suppression.service.ts';
import { loadCampaign, settingsOf } from '../campaigns/campaign-settings.ts';
import { releaseContact } from '../../dialer/hopper.ts';
import { releaseHolds } from './preview.service.ts';
import { agentStates, selfStates, setAgentState } from './agent-states.ts';
import { requestCallControl } from '../../dialer/call-control.ts';

const stateSchema = z.object({
  userId: z.string(),
  state: z.enum(agentStates),
  reason: z.string().nullable(),
  campaignId: z.string().nullable(),
  attemptId: z.string().nullable(),
  since: z.string(),
  wrapUpUntil: z.string().nullable(),
});
const stateBody = z
  .strictObject({
    state: z.enum(selfStates),
    reason: z.string().regex(/^[a-z][a-z0-9_]{0,39}$/, 'a reason code: lower-case letters, digits and _').optional(),
    campaignId: uuidSchema.optional(),
  })
  .refine((body) => body.state !== 'paused' || body.reason !== undefined, { message: 'a pause needs a reason code', path: ['reason'] })
  .refine((body) => body.state !== 'available' || body.campaignId !== undefined, { message: 'say which campaign to take calls from', path: ['campaignId'] });

const dispositionBody = z.strictObject({
  code: z.string().regex(/^[a-z][a-z0-9_]{0,39}$/),
  notes: z.string().max(4000).optional(),
  callbackAt: z.iso.datetime({ offset: true }).optional(),
  callbackFor: z.enum(['me', 'anyone']).default('me'),
});
const attemptParams = z.strictObject({ attemptId: uuidSchema });

type StateRow = { user_id: string; state: (typeof agentStates)[number]; reason: string | null; campaign_id: string | null; attempt_id: string | null; since: Date; wrap_up_until: Date | null };

function presentState(row: StateRow) {
  return {
    userId: row.user_id,
    state: row.state,
    reason: row.reason,
    campaignId: row.campaign_id,
    attemptId: row.attempt_id,
    since: row.since.toISOString(),
    wrapUpUntil: row.wrap_up_until?.toISOString() ?? null,
  };
}

const stateColumns = ['user_id', 'state', 'reason', 'campaign_id', 'attempt_id', 'since', 'wrap_up_until'] as const;
const CALLBACK_HORIZON_MS = 90 * 86_400_000;

export async function agentsRoutes(app: App, crypto: ContactsCrypto): Promise<void> {
  app.get(
    '/api/v1/agent/state',
    {
      config: { access: 'calls:handle' },
      schema: { summary: 'My agent state', tags: ['agents'], response: { 200: stateSchema, ...problemResponses(401, 403) } },
    },
    async (request) =>
      request.tenantDb.read(async (trx) => {
        const userId = principalOf(request).userId;
        const row = await trx.selectFrom('agent_states').select(stateColumns).where('user_id', '=', userId).executeTakeFirst();
        return presentState(row ?? { user_id: userId, state: 'offline', reason: null, campaign_id: null, attempt_id: null, since: new Date(0), wrap_up_until: null });
      }),
  );

  app.put(
    '/api/v1/agent/state',
    {
      config: { access: 'calls:handle' },
      schema: {
        summary: 'Become available for a campaign, pause with a reason, or go offline (not during a call)',
        tags: ['agents'],
        body: stateBody,
        response: { 200: stateSchema, ...problemResponses(400, 401, 403, 404, 409) },
      },
    },
    async (request) =>
      request.tenantDb.transaction(async (trx) => {
        const userId = principalOf(request).userId;
        const { state, reason, campaignId } = request.body;
        if (campaignId !== undefined) {
          const campaign = await loadCampaign(trx, campaignId);
          if (campaign.state === 'finished') throw new AppError('invalid_transition', 'The campaign has finished.');
        }
        const now = new Date();
        await setAgentState(trx, userId, { state, reason: reason ?? null, ...(campaignId !== undefined ? { campaignId } : {}), now }, 'agent');
        // A contact shown to me (preview) is shown to others again once I step away.
        if (state !== 'available') await releaseHolds(trx, userId, now);
        else if (campaignId !== undefined) await releaseHolds(trx, userId, now, campaignId);
        await recordAuditEvent(trx, { ...requestAudit(request), action: 'agent.state', outcome: 'success', target: { type: 'user', id: userId }, details: { state, reason: reason ?? null, campaign: campaignId ?? null } });
        return presentState(await trx.selectFrom('agent_states').select(stateColumns).where('user_id', '=', userId).executeTakeFirstOrThrow());
      }),
  );

  app.get(
    '/api/v1/agents',
    {
      config: { access: 'agents:monitor' },
      schema: { summary: "Every agent's state", tags: ['agents'], response: { 200: z.object({ items: z.array(stateSchema) }), ...problemResponses(401, 403) } },
    },
    async (request) =>
      request.tenantDb.read(async (trx) => ({
        items: (await trx.selectFrom('agent_states').select(stateColumns).orderBy('state').orderBy('since').limit(5000).execute()).map(presentState),
      })),
  );

  app.post(
    '/api/v1/agent/calls/:attemptId/disposition',
    {
      config: { access: 'calls:handle' },
      schema: {
        summary: 'File the outcome of a call I handled: a disposition code, notes (stored encrypted) and a callback time where the code asks for one',
        tags: ['agents'],
        params: attemptParams,
        body: dispositionBody,
        response: { 200: z.object({ attemptId: z.string(), disposition: z.string(), nextAt: z.string().nullable() }), ...problemResponses(400, 401, 403, 404, 409) },
      },
    },
    async (request) =>
      request.tenantDb.transaction(async (trx) => {
        const userId = principalOf(request).userId;
        const now = new Date();
        // Another agent's call, or no call: the same answer, so ids cannot be probed.
        const attempt = await trx
          .selectFrom('dial_attempts')
          .select(['id', 'campaign_id', 'contact_id', 'agent_id', 'state', 'disposition', 'phone_position'])
          .where('id', '=', request.params.attemptId)
          .forUpdate()
          .executeTakeFirst();
        // An anonymised interaction (retention) has no person left to file anything about.
        if (!attempt || attempt.agent_id !== userId || attempt.contact_id === null) throw new AppError('not_found', 'No call of yours with this id.');
        const contactId = attempt.contact_id;
        if (attempt.state !== 'ended') throw new AppError('invalid_transition', 'The call has not ended yet.');
        if (attempt.disposition !== null) throw new AppError('conflict', 'This call already has its disposition.');
        const settings = settingsOf(await loadCampaign(trx, attempt.campaign_id));
        const disposition = settings.dispositions.find((entry) => entry.code === request.body.code);
        if (!disposition) throw new AppError('validation_failed', `The campaign has no disposition "${request.body.code}".`, [{ path: 'body/code', message: 'not one of the campaign dispositions' }]);
        const { callbackAt, callbackFor, notes } = request.body;
        let nextAt: Date | null = null;
        if (disposition.kind === 'callback' || (disposition.kind === 'retry' && callbackAt)) {
          if (!callbackAt) throw new AppError('validation_failed', 'A callback needs its time.', [{ path: 'body/callbackAt', message: 'required for this disposition' }]);
          nextAt = new Date(callbackAt);
          if (nextAt.getTime() <= now.getTime() || nextAt.getTime() > now.getTime() + CALLBACK_HORIZON_MS) {
            throw new AppError('validation_failed', 'A callback is due in the future, within 90 days.', [{ path: 'body/callbackAt', message: 'in the future, within 90 days' }]);
          }
        } else if (disposition.kind === 'retry') {
          nextAt = new Date(now.getTime() + settings.retryRules.no_answer.afterMinutes * 60_000);
        }
        const notesCiphertext = notes ? await crypto.cipher.encrypt(trx, { table: 'dial_attempts', recordId: attempt.id, field: 'notes' }, notes, contactId) : null;
        await trx.updateTable('dial_attempts').set({ disposition: disposition.code, notes_ciphertext: notesCiphertext, disposed_at: now }).where('id', '=', attempt.id).execute();
        if (disposition.kind === 'do_not_call') {
          // The number dialed goes on the tenant's do-not-call list at once; the contact is done.
          const phone = await trx
            .selectFrom('contact_phones')
            .innerJoin('contacts', (join) => join.onRef('contacts.tenant_id', '=', 'contact_phones.tenant_id').onRef('contacts.id', '=', 'contact_phones.contact_id'))
            .select(['contact_phones.position', 'contact_phones.number_ciphertext', 'contacts.record_ciphertext'])
            .where('contact_phones.contact_id', '=', contactId)
            .where('contact_phones.position', '=', attempt.phone_position ?? 0)
            .executeTakeFirst();
          if (phone) {
            const key = await crypto.keyring.subjectKey(trx, contactId, { create: false });
            if (!key) throw new FieldCipherError('No key exists for this data subject');
            const number = (openNumbers(crypto.cipher, trx.tenantId, contactId, key, phone.record_ciphertext, [phone])[0] as { e164: string }).e164;
            await addSuppression(trx, crypto, { channel: 'phone', value: number, scope: 'tenant', reason: 'request', source: `disposition on call ${attempt.id}`, contactId: contactId, createdBy: actorLabel(request) });
          }
        }
        await releaseContact(trx, attempt.campaign_id, contactId, {
          nextAt,
          outcome: `disposition:${disposition.code}`,
          now,
          callbackAgentId: disposition.kind === 'callback' && callbackFor === 'me' ? userId : null,
        });
        // Filing the disposition ends the agent's wrap-up for this call.
        const agent = await trx.selectFrom('agent_states').select(['state', 'attempt_id']).where('user_id', '=', userId).executeTakeFirst();
        if (agent?.state === 'wrap_up' && agent.attempt_id === attempt.id) await setAgentState(trx, userId, { state: 'available', now });
        await recordAuditEvent(trx, {
          ...requestAudit(request),
          action: 'call.disposition',
          outcome: 'success',
          target: { type: 'dial_attempt', id: attempt.id },
          details: { code: disposition.code, kind: disposition.kind, notes: notes !== undefined, callback: nextAt?.toISOString() ?? null },
        });
        return { attemptId: attempt.id, disposition: disposition.code, nextAt: nextAt?.toISOString() ?? null };
      }),
  );

  app.post(
    '/api/v1/agent/calls/:attemptId/recording',
    {
      config: { access: 'calls:handle' },
      schema: {
        summary: "Pause the recording of my call (a card payment) or resume it; audited",
        tags: ['agents'],
        params: attemptParams,
        body: z.strictObject({ action: z.enum(['pause', 'resume']) }),
        response: { 202: z.object({ attemptId: z.string(), action: z.enum(['pause', 'resume']) }), ...problemResponses(400, 401, 403, 404, 409) },
      },
    },
    async (request, reply) => {
      const { action } = request.body;
      await request.tenantDb.transaction(async (trx) => {
        const userId = principalOf(request).userId;
        const attempt = await trx.selectFrom('dial_attempts').select(['id', 'agent_id', 'state']).where('id', '=', request.params.attemptId).executeTakeFirst();
        if (!attempt || attempt.agent_id !== userId) throw new AppError('not_found', 'No call of yours with this id.');
        const recording = await trx.selectFrom('recordings').select('state').where('attempt_id', '=', attempt.id).executeTakeFirst();
        if (attempt.state !== 'connected' || !recording) throw new AppError('invalid_transition', 'The call is not in progress with a recording.');
        if ((action === 'pause' && recording.state !== 'recording') || (action === 'resume' && recording.state !== 'paused')) {
          throw new AppError('invalid_transition', `The recording is ${recording.state}.`);
        }
        await requestCallControl(trx, attempt.id, action);
        await recordAuditEvent(trx, { ...requestAudit(request), action: action === 'pause' ? 'recording.pause' : 'recording.resume', outcome: 'success', target: { type: 'dial_attempt', id: attempt.id } });
      });
      return reply.code(202).send({ attemptId: request.params.attemptId, action });
    },
  );
}
