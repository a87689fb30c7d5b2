import { z } from '../../zod.ts';
import type { App } from '../../server/types.ts';
import { problemResponses, uuidSchema } from '../../server/schemas.ts';
import { principalOf } from '../../server/access-control.ts';
import { recordAuditEvent } from '../../audit/audit-event.ts';
import { requestAudit } from '../../server/request-audit.ts';
import type { TenantTransaction } from '../../db/tenant-db.ts';
import type { ContactsCrypto } from '../contacts/contacts.service.ts';
import { loadCampaign, settingsOf } from '../campaigns/campaign-settings.ts';
import { contactCard, contactName } from './contact-card.ts';
import { cancelDial, claimNext, heldBy, lastUnconnectedDial, requestDial, skipContact, type Held } from './preview.service.ts';

const previewSchema = z.object({
  holdUntil: z.string(),
  /** When I chose to call it (the dialer places it within a moment), or null. */
  requestedAt: z.string().nullable(),
  /** A callback I scheduled for this person. */
  callback: z.boolean(),
  campaign: z.object({ id: z.string(), name: z.string(), script: z.string().nullable() }),
  contact: z.object({ id: z.string(), name: z.string().nullable(), phones: z.array(z.object({ kind: z.string(), masked: z.string() })), status: z.string() }),
  history: z.array(z.object({ attemptId: z.string(), at: z.string(), outcome: z.string().nullable(), disposition: z.string().nullable(), notes: z.string().nullable() })),
});
const lastDialSchema = z.object({ attemptId: z.string(), contactName: z.string().nullable(), outcome: z.string().nullable(), reason: z.string().nullable(), at: z.string() }).nullable();
const contactParams = z.strictObject({ contactId: uuidSchema });

/**
 * Preview dialing for agents (src/modules/agents/preview.service.ts): the contact shown to me
 * (masked, with the campaign's script and this person's earlier calls), and my choice — call,
 * skip, or take back a call not yet placed. Each choice is audited; only the contact I hold is
 * reachable (another agent's gives the same 404 as one that does not exist).
 */
export async function agentPreviewRoutes(app: App, crypto: ContactsCrypto): Promise<void> {
  async function present(trx: TenantTransaction, held: Held) {
    const campaign = await loadCampaign(trx, held.campaignId);
    const card = await contactCard(trx, crypto, held.contactId);
    return {
      holdUntil: held.holdUntil.toISOString(),
      requestedAt: held.requestedAt?.toISOString() ?? null,
      callback: held.callback,
      campaign: { id: campaign.id, name: campaign.name, script: settingsOf(campaign).script },
      ...card,
    };
  }

  app.get(
    '/api/v1/agent/preview',
    {
      config: { access: 'calls:handle' },
      schema: {
        summary: 'The contact shown to me in a preview campaign (if I hold one), and what became of my last call that did not reach me',
        tags: ['agents'],
        response: { 200: z.object({ preview: previewSchema.nullable(), lastDial: lastDialSchema }), ...problemResponses(401, 403) },
      },
    },
    async (request) =>
      request.tenantDb.read(async (trx) => {
        const userId = principalOf(request).userId;
        const held = await heldBy(trx, userId);
        const last = await lastUnconnectedDial(trx, userId, new Date());
        const name = last?.contactId ? await contactName(trx, crypto, last.contactId) : null;
        return {
          preview: held ? await present(trx, held) : null,
          lastDial: last ? { attemptId: last.attemptId, contactName: name, outcome: last.outcome, reason: last.reason, at: last.at.toISOString() } : null,
        };
      }),
  );

  app.post(
    '/api/v1/agent/preview',
    {
      config: { access: 'calls:handle' },
      schema: {
        summary: 'Show me the next contact of my preview campaign (the one I hold, or the next due: my callbacks first); held for me alone for 10 minutes',
        tags: ['agents'],
        response: { 200: z.object({ preview: previewSchema.nullable() }), ...problemResponses(401, 403, 404, 409) },
      },
    },
    async (request) =>
      request.tenantDb.transaction(async (trx) => {
        const held = await claimNext(trx, principalOf(request).userId, new Date());
        return { preview: held ? await present(trx, held) : null };
      }),
  );

  const choice = (
    path: string,
    summary: string,
    action: 'call.preview_dial' | 'call.preview_skip' | 'call.preview_cancel',
    run: (trx: TenantTransaction, userId: string, contactId: string, now: Date) => Promise<{ campaignId: string; repeated?: boolean }>,
  ) =>
    app.post(
      path,
      {
        config: { access: 'calls:handle' },
        schema: { summary, tags: ['agents'], params: contactParams, response: { 200: z.object({ contactId: z.string() }), ...problemResponses(400, 401, 403, 404, 409) } },
      },
      async (request) => {
        await request.tenantDb.transaction(async (trx) => {
          const result = await run(trx, principalOf(request).userId, request.params.contactId, new Date());
          // A repeated click changes nothing and is not recorded twice.
          if (result.repeated) return;
          await recordAuditEvent(trx, { ...requestAudit(request), action, outcome: 'success', target: { type: 'contact', id: request.params.contactId }, details: { campaign: result.campaignId } });
        });
        return { contactId: request.params.contactId };
      },
    );

  choice('/api/v1/agent/preview/:contactId/call', 'Call the contact shown to me: the dialer places the call, checked like every dial, and the person comes to me', 'call.preview_dial', requestDial);
  choice('/api/v1/agent/preview/:contactId/skip', 'Pass over the contact shown to me (due again in 30 minutes; not an attempt)', 'call.preview_skip', skipContact);
  choice('/api/v1/agent/preview/:contactId/cancel', 'Take back a call I asked for that has not been placed yet', 'call.preview_cancel', cancelDial);
}
