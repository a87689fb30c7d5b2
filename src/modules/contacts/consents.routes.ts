import type { App } from '../../server/types.ts';
import { AppError } from '../../server/errors.ts';
import { problemResponses } from '../../server/schemas.ts';
import { recordAuditEvent } from '../../audit/audit-event.ts';
import { actorLabel, requestAudit } from '../../server/request-audit.ts';
import type { TenantTransaction } from '../../db/tenant-db.ts';
import { addSuppression } from '../suppression/suppression.service.ts';
import { requireContact, type ContactsCrypto } from './contacts.service.ts';
import { consentBodySchema, consentStateSchema, contactParamsSchema } from './contacts.schemas.ts';

/**
 * Consent and lawful basis per contact and purpose: an append-only history of grants (with their
 * basis), withdrawals and objections, and the state it adds up to. An objection to sales calls
 * suppresses every number and the e-mail of the contact in the same transaction.
 */
export async function consentsRoutes(app: App, crypto: ContactsCrypto): Promise<void> {
  app.get(
    '/api/v1/contacts/:contactId/consents',
    {
      config: { access: 'contacts:read' },
      schema: {
        summary: "A contact's consent and lawful basis per purpose, with the full history",
        tags: ['contacts'],
        params: contactParamsSchema,
        response: { 200: consentStateSchema, ...problemResponses(400, 401, 403, 404) },
      },
    },
    async (request) => request.tenantDb.read((trx) => consentState(trx, request.params.contactId)),
  );

  app.post(
    '/api/v1/contacts/:contactId/consents',
    {
      config: { access: 'contacts:manage' },
      schema: {
        summary: 'Record a grant, withdrawal or objection (an objection to sales calls suppresses the contact at once)',
        tags: ['contacts'],
        params: contactParamsSchema,
        body: consentBodySchema,
        response: { 201: consentStateSchema, ...problemResponses(400, 401, 403, 404, 410) },
      },
    },
    async (request, reply) => {
      const id = request.params.contactId;
      const body = request.body;
      if ((body.action === 'grant') !== (body.basis !== undefined)) {
        throw new AppError('validation_failed', 'basis: a grant names its lawful basis, a withdrawal or objection does not');
      }
      const state = await request.tenantDb.transaction(async (trx) => {
        const contact = await requireContact(trx, crypto, id);
        if (contact.row.status === 'erased') throw new AppError('contact_erased');
        const recordedBy = actorLabel(request);
        await trx
          .insertInto('consent_events')
          .values({
            contact_id: id,
            purpose: body.purpose,
            action: body.action,
            basis: body.basis ?? null,
            source: body.source,
            evidence_ref: body.evidenceRef ?? null,
            occurred_at: body.occurredAt ? new Date(body.occurredAt) : new Date(),
            recorded_by: recordedBy,
          })
          .execute();
        let suppressed = 0;
        // Art. 21(3) GDPR: after an objection to direct marketing, no more marketing — at once.
        if (body.action === 'object' && body.purpose === 'sales') {
          for (const phone of contact.data.phones) {
            await addSuppression(trx, crypto, { channel: 'phone', value: phone.e164, scope: 'tenant', reason: 'objection', source: 'consent objection', contactId: id, createdBy: recordedBy });
            suppressed += 1;
          }
          if (contact.data.email) {
            await addSuppression(trx, crypto, { channel: 'email', value: contact.data.email, scope: 'tenant', reason: 'objection', source: 'consent objection', contactId: id, createdBy: recordedBy });
            suppressed += 1;
          }
        }
        await recordAuditEvent(trx, {
          ...requestAudit(request),
          action: 'contact.consent',
          outcome: 'success',
          target: { type: 'contact', id },
          details: { purpose: body.purpose, consentAction: body.action, basis: body.basis ?? null, source: body.source, suppressionsAdded: suppressed },
        });
        return consentState(trx, id);
      });
      return reply.code(201).send(state);
    },
  );
}

async function consentState(trx: TenantTransaction, contactId: string) {
  const contact = await trx.selectFrom('contacts').select('id').where('id', '=', contactId).executeTakeFirst();
  if (!contact) throw new AppError('not_found');
  const history = await trx
    .selectFrom('consent_events')
    .select(['id', 'purpose', 'action', 'basis', 'source', 'evidence_ref', 'occurred_at', 'recorded_at', 'recorded_by'])
    .where('contact_id', '=', contactId)
    .orderBy('recorded_at', 'desc')
    .orderBy('id')
    .limit(500)
    .execute();
  const current = (['sales', 'survey', 'service'] as const).map((purpose) => {
    const newest = history.find((event) => event.purpose === purpose);
    return { purpose, allowed: newest?.action === 'grant', basis: newest?.action === 'grant' ? newest.basis : null, since: newest ? newest.occurred_at.toISOString() : null };
  });
  return {
    current,
    history: history.map((event) => ({
      id: event.id,
      purpose: event.purpose,
      action: event.action,
      basis: event.basis,
      source: event.source,
      evidenceRef: event.evidence_ref,
      occurredAt: event.occurred_at.toISOString(),
      recordedAt: event.recorded_at.toISOString(),
      recordedBy: event.recorded_by,
    })),
  };
}
