import { z } from '../../zod.ts';
import type { App } from '../../server/types.ts';
import { problemResponses } from '../../server/schemas.ts';
import { principalOf } from '../../server/access-control.ts';
import { loadCampaign, settingsOf } from '../campaigns/campaign-settings.ts';
import type { ContactsCrypto } from '../contacts/contacts.service.ts';
import { contactCard } from './contact-card.ts';
import { AppError } from '../../server/errors.ts';
import { uuidSchema } from '../../server/schemas.ts';
import { recordAuditEvent } from '../../audit/audit-event.ts';
import { requestAudit } from '../../server/request-audit.ts';
import { requestCallControl } from '../../dialer/call-control.ts';

const callSchema = z.object({
  attemptId: z.string(),
  state: z.string(),
  outcome: z.string().nullable(),
  disposition: z.string().nullable(),
  connectedAt: z.string().nullable(),
  endedAt: z.string().nullable(),
  recording: z.boolean(),
  /** The recording's state while the call is on the line: the desktop's pause button starts from it. */
  recordingState: z.enum(['recording', 'paused']).nullable(),
  campaign: z.object({
    id: z.string(),
    name: z.string(),
    mode: z.string(),
    script: z.string().nullable(),
    dispositions: z.array(z.object({ code: z.string(), label: z.string(), kind: z.string() })),
  }),
  contact: z.object({ id: z.string(), name: z.string().nullable(), phones: z.array(z.object({ kind: z.string(), masked: z.string() })), status: z.string() }),
  history: z.array(z.object({ attemptId: z.string(), at: z.string(), outcome: z.string().nullable(), disposition: z.string().nullable(), notes: z.string().nullable() })),
});

/**
 * GET /api/v1/agent/call: what the agent desktop shows for the call in hand — the one the agent is
 * on, or the one in wrap-up still waiting for its disposition. Only the agent's own call: another
 * agent's is never reachable here (there is no id to guess). The contact comes masked, as
 * everywhere; the full number needs the audited reveal, which agents do not hold by default.
 */
export async function agentCallRoutes(app: App, crypto: ContactsCrypto): Promise<void> {
  app.get(
    '/api/v1/agent/call',
    {
      config: { access: 'calls:handle' },
      schema: {
        summary: 'My call in hand (on the line, or waiting for its disposition): contact (masked), campaign script and dispositions, this contact’s earlier calls',
        tags: ['agents'],
        response: { 200: z.object({ call: callSchema.nullable() }), ...problemResponses(401, 403) },
      },
    },
    async (request) =>
      request.tenantDb.transaction(async (trx) => {
        const userId = principalOf(request).userId;
        const agent = await trx.selectFrom('agent_states').select(['attempt_id', 'inbound_call_id']).where('user_id', '=', userId).executeTakeFirst();
        // On an inbound call: that is the call in hand (the desktop shows it from the realtime feed).
        if (agent?.inbound_call_id) return { call: null };
        let attempt = agent?.attempt_id
          ? await trx
              .selectFrom('dial_attempts')
              .selectAll()
              .where('id', '=', agent.attempt_id)
              // Mine: the call I am on, or (preview) the one I chose to dial, still ringing.
              .where((eb) => eb.or([eb('agent_id', '=', userId), eb('requested_by', '=', userId)]))
              .executeTakeFirst()
          : undefined;
        // Wrap-up can outlive the agent state (a forced state change): the newest undisposed call still waits.
        attempt ??= await trx
          .selectFrom('dial_attempts')
          .selectAll()
          .where('agent_id', '=', userId)
          .where('state', '=', 'ended')
          .where('disposition', 'is', null)
          .where('contact_id', 'is not', null)
          .where('answered_at', 'is not', null)
          .where('ended_at', '>', new Date(Date.now() - 86_400_000))
          .orderBy('ended_at', 'desc')
          .limit(1)
          .executeTakeFirst();
        if (!attempt || attempt.contact_id === null) return { call: null };
        const contactId = attempt.contact_id;
        const campaignRow = await loadCampaign(trx, attempt.campaign_id);
        const settings = settingsOf(campaignRow);
        const card = await contactCard(trx, crypto, contactId, attempt.id);
        const recording = await trx.selectFrom('recordings').select('state').where('attempt_id', '=', attempt.id).executeTakeFirst();
        return {
          call: {
            attemptId: attempt.id,
            state: attempt.state,
            outcome: attempt.outcome,
            disposition: attempt.disposition,
            connectedAt: attempt.answered_at?.toISOString() ?? null,
            endedAt: attempt.ended_at?.toISOString() ?? null,
            recording: recording !== undefined && attempt.state === 'connected',
            recordingState: attempt.state === 'connected' && (recording?.state === 'recording' || recording?.state === 'paused') ? recording.state : null,
            campaign: {
              id: campaignRow.id,
              name: campaignRow.name,
              mode: settings.mode,
              script: settings.script,
              dispositions: settings.dispositions.map(({ code, label, kind }) => ({ code, label, kind })),
            },
            ...card,
          },
        };
      }),
  );

  app.post(
    '/api/v1/agent/calls/:attemptId/hangup',
    {
      config: { access: 'calls:handle' },
      schema: {
        summary: 'End my call in progress (the outcome is then filed with a disposition); audited',
        tags: ['agents'],
        params: z.strictObject({ attemptId: uuidSchema }),
        response: { 202: z.object({ attemptId: z.string() }), ...problemResponses(400, 401, 403, 404, 409) },
      },
    },
    async (request, reply) => {
      await request.tenantDb.transaction(async (trx) => {
        const userId = principalOf(request).userId;
        const attempt = await trx.selectFrom('dial_attempts').select(['id', 'agent_id', 'requested_by', 'state']).where('id', '=', request.params.attemptId).executeTakeFirst();
        // Another agent's call, or no call: the same answer, so ids cannot be probed.
        if (!attempt || (attempt.agent_id !== userId && attempt.requested_by !== userId)) throw new AppError('not_found', 'No call of yours with this id.');
        // A call I chose to dial (preview) I may also end while it rings.
        const inProgress = attempt.state === 'connected' || (attempt.requested_by === userId && (attempt.state === 'dialing' || attempt.state === 'answered'));
        if (!inProgress) throw new AppError('invalid_transition', 'The call is not in progress.');
        // The dialer that runs the call (on whichever process) hangs up when this commits.
        await requestCallControl(trx, attempt.id, 'hangup');
        await recordAuditEvent(trx, { ...requestAudit(request), action: 'call.hangup', outcome: 'success', target: { type: 'dial_attempt', id: attempt.id } });
      });
      return reply.code(202).send({ attemptId: request.params.attemptId });
    },
  );
}
