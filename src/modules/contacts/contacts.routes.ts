import { z } from '../../zod.ts';
import type { App } from '../../server/types.ts';
import { eraseSubject, type ErasureLedgerMirror } from '../../privacy/erasure.ts';
import { AppError } from '../../server/errors.ts';
import { problemResponses } from '../../server/schemas.ts';
import { recordAuditEvent, recordAuditEventAlone } from '../../audit/audit-event.ts';
import { principalOf } from '../../server/access-control.ts';
import { requestAudit } from '../../server/request-audit.ts';
import type { TenantTransaction } from '../../db/tenant-db.ts';
import type { ContactData } from './contact-record.ts';
import { maskEmail, maskPhone, normaliseEmail, normalisePhone, isInternationalForm, isSupportedRegion } from './phone.ts';
import {
  auditDigests,
  beginLookup,
  createContact,
  loadFieldDefinitions,
  requireContact,
  setContactStatus,
  takeRevealBudget,
  tenantDefaultRegion,
  updateContact,
  type ContactsCrypto,
  type LoadedContact,
} from './contacts.service.ts';
import { searchContacts, type ContactQuery } from './contact-search.ts';
import {
  contactListSchema,
  contactParamsSchema,
  contactSchema,
  createContactSchema,
  createFieldSchema,
  fieldDefinitionSchema,
  revealedSchema,
  revealSchema,
  listContactsQuerySchema,
  searchContactsBodySchema,
  statusBodySchema,
  updateContactSchema,
} from './contacts.schemas.ts';

/** The view of contacts:read: masked numbers and e-mail, flags for the values it may not see. */
export function presentContact(contact: LoadedContact) {
  const { row, data } = contact;
  return {
    id: row.id,
    externalId: data.externalId,
    status: row.status,
    name: data.name,
    phones: data.phones.map((phone) => ({ kind: phone.kind, masked: maskPhone(phone.e164), region: normalisedRegion(phone.e164) })),
    email: data.email === null ? null : { masked: maskEmail(data.email) },
    hasAddress: data.address !== null,
    hasBirthDate: data.birthDate !== null,
    notes: data.notes,
    fields: data.fields,
    personalFieldsSet: Object.keys(data.personalFields).sort(),
    timeZones: data.timeZones,
    timeZoneSource: data.timeZoneSource,
    createdAt: row.created_at.toISOString(),
    updatedAt: row.updated_at.toISOString(),
  };
}

function normalisedRegion(e164: string): string | null {
  const parsed = normalisePhone(e164, 'ZZ');
  return typeof parsed === 'string' ? null : (parsed.region ?? null);
}

async function requireList(trx: TenantTransaction, listId: string) {
  const list = await trx.selectFrom('contact_lists').select(['id', 'default_region']).where('id', '=', listId).executeTakeFirst();
  if (!list) throw new AppError('not_found', 'No such list.');
  return list;
}

export async function contactsRoutes(app: App, options: ContactsCrypto & { erasureMirror?: ErasureLedgerMirror | undefined }): Promise<void> {
  const crypto: ContactsCrypto = { cipher: options.cipher, keyring: options.keyring };
  const { cipher } = crypto;

  app.post(
    '/api/v1/contacts',
    {
      config: { access: 'contacts:manage' },
      schema: {
        summary: 'Create a contact (personal values are encrypted under its own key)',
        tags: ['contacts'],
        body: createContactSchema,
        response: { 201: contactSchema, ...problemResponses(400, 401, 403, 404, 409) },
      },
    },
    async (request, reply) => {
      const { listId, defaultRegion, ...input } = request.body;
      const contact = await request.tenantDb.transaction(async (trx) => {
        const list = listId ? await requireList(trx, listId) : undefined;
        const region = defaultRegion ?? list?.default_region ?? (await tenantDefaultRegion(trx));
        const { id, data } = await createContact(trx, crypto, input, { defaultRegion: region });
        if (list) await trx.insertInto('contact_list_members').values({ list_id: list.id, contact_id: id }).execute();
        const fields = (Object.keys(data) as (keyof ContactData)[]).filter((key) => JSON.stringify(data[key]) !== 'null');
        await recordAuditEvent(trx, {
          ...requestAudit(request),
          action: 'contact.create',
          outcome: 'success',
          target: { type: 'contact', id },
          details: { list: list?.id ?? null, fields: fields.join(','), ...(await auditDigests(trx, cipher, data, fields)) },
        });
        return requireContact(trx, crypto, id);
      });
      return reply.code(201).send(presentContact(contact));
    },
  );

  /** One page of contacts for a search, masked, in id order after the cursor. */
  const page = async (trx: TenantTransaction, query: ContactQuery, e164?: string, email?: string) => {
    const { contacts, nextAfter } = await searchContacts(trx, crypto, query, e164, email);
    return { items: contacts.map(presentContact), nextAfter };
  };

  app.get(
    '/api/v1/contacts',
    {
      config: { access: 'contacts:read' },
      schema: {
        summary: 'Contacts of a list or with a status, masked; cursor pagination (lookups by phone, e-mail or external id: POST /api/v1/contacts/search)',
        tags: ['contacts'],
        querystring: listContactsQuerySchema,
        response: { 200: contactListSchema, ...problemResponses(400, 401, 403) },
      },
    },
    async (request) => request.tenantDb.read((trx) => page(trx, request.query)),
  );

  app.post(
    '/api/v1/contacts/search',
    {
      config: { access: 'contacts:read' },
      schema: {
        summary: 'Find contacts by phone or e-mail (blind index), external id, list or status; masked; each lookup by phone, e-mail or external id is audited and counts against an hourly budget',
        tags: ['contacts'],
        body: searchContactsBodySchema,
        response: { 200: contactListSchema, ...problemResponses(400, 401, 403, 429) },
      },
    },
    async (request) => {
      const query = request.body;
      if (query.region !== undefined && !isSupportedRegion(query.region)) throw new AppError('validation_failed', 'region: not a supported ISO 3166 region');
      const by = query.phone !== undefined ? 'phone' : query.email !== undefined ? 'email' : query.externalId !== undefined ? 'externalId' : null;
      const principal = principalOf(request);
      try {
        return await request.tenantDb.transaction(async (trx) => {
          let e164: string | undefined;
          if (query.phone !== undefined) {
            // A number written with its country code needs no default region (nor a query for it).
            const region = query.region ?? (isInternationalForm(query.phone) ? '' : await tenantDefaultRegion(trx));
            const parsed = normalisePhone(query.phone, region);
            if (typeof parsed === 'string') throw new AppError('phone_invalid', 'phone: not a valid number for its country');
            e164 = parsed.e164;
          }
          let email: string | undefined;
          if (query.email !== undefined) {
            email = normaliseEmail(query.email);
            if (email === undefined) throw new AppError('email_invalid', 'email: not an e-mail address');
          }
          // Each answer tells whether a value belongs to a contact: budgeted, so that nobody can
          // walk the number space, and audited (which kind of lookup and how many found, no value).
          // The budget is taken before the search starts: a lookup over budget searches nothing
          // (nor does its answer take longer when the number exists).
          if (by !== null) await beginLookup(trx, principal.userId);
          const result = await page(trx, query, e164, email);
          if (by !== null) {
            await recordAuditEvent(trx, { ...requestAudit(request), action: 'contact.lookup', outcome: 'success', details: { by, found: result.items.length } });
          }
          return result;
        });
      } catch (error) {
        if (error instanceof AppError && error.code === 'lookup_limit') {
          await recordAuditEventAlone(request.tenantDb, { ...requestAudit(request), action: 'contact.lookup', outcome: 'denied', details: { by: by ?? 'none', reason: 'lookup_limit' } });
        }
        throw error;
      }
    },
  );

  app.get(
    '/api/v1/contacts/:contactId',
    {
      config: { access: 'contacts:read' },
      schema: {
        summary: 'One contact, masked',
        tags: ['contacts'],
        params: contactParamsSchema,
        response: { 200: contactSchema, ...problemResponses(400, 401, 403, 404) },
      },
    },
    async (request) => presentContact(await request.tenantDb.read((trx) => requireContact(trx, crypto, request.params.contactId))),
  );

  app.patch(
    '/api/v1/contacts/:contactId',
    {
      config: { access: 'contacts:manage' },
      schema: {
        summary: "Change a contact's values (each one given replaces the stored one; null clears it)",
        tags: ['contacts'],
        params: contactParamsSchema,
        body: updateContactSchema,
        response: { 200: contactSchema, ...problemResponses(400, 401, 403, 404, 409, 410) },
      },
    },
    async (request) => {
      const id = request.params.contactId;
      const contact = await request.tenantDb.transaction(async (trx) => {
        const { after, changed } = await updateContact(trx, crypto, id, request.body);
        if (changed.length > 0) {
          await recordAuditEvent(trx, {
            ...requestAudit(request),
            action: 'contact.update',
            outcome: 'success',
            target: { type: 'contact', id },
            details: { changed: changed.join(','), ...(await auditDigests(trx, cipher, after, changed)) },
          });
        }
        return requireContact(trx, crypto, id);
      });
      return presentContact(contact);
    },
  );

  app.put(
    '/api/v1/contacts/:contactId/status',
    {
      config: { access: 'contacts:manage' },
      schema: {
        summary: 'Set the lifecycle state: active, do_not_contact or restricted (erasure is DELETE)',
        tags: ['contacts'],
        params: contactParamsSchema,
        body: statusBodySchema,
        response: { 200: contactSchema, ...problemResponses(400, 401, 403, 404, 410) },
      },
    },
    async (request) => {
      const id = request.params.contactId;
      const mayRestrict = principalOf(request).permissions.has('privacy:manage');
      const contact = await request.tenantDb.transaction(async (trx) => {
        // Restriction (Art. 18) is the privacy officer's: neither set nor lifted by anyone else.
        if (!mayRestrict) {
          const current = await trx.selectFrom('contacts').select('status').where('id', '=', id).executeTakeFirst();
          if (request.body.status === 'restricted' || current?.status === 'restricted') throw new AppError('forbidden', 'Only a privacy officer restricts a contact or lifts a restriction.');
        }
        const before = await setContactStatus(trx, id, request.body.status);
        await recordAuditEvent(trx, {
          ...requestAudit(request),
          action: 'contact.status',
          outcome: 'success',
          target: { type: 'contact', id },
          details: { from: before, to: request.body.status },
        });
        return requireContact(trx, crypto, id);
      });
      return presentContact(contact);
    },
  );

  app.delete(
    '/api/v1/contacts/:contactId',
    {
      config: { access: 'privacy:manage', stepUp: 'sessions' },
      schema: {
        summary: "Erase a contact: its key is destroyed, so every copy of its personal data is unreadable (refused under a legal hold or during a call)",
        tags: ['contacts'],
        params: contactParamsSchema,
        response: { 204: z.null(), ...problemResponses(400, 401, 403, 404, 409) },
      },
    },
    async (request, reply) => {
      const id = request.params.contactId;
      await request.tenantDb.transaction(async (trx) => {
        const outcome = await eraseSubject(trx, crypto, id, { reason: 'operator', mirror: options.erasureMirror });
        if (outcome.erased) await recordAuditEvent(trx, { ...requestAudit(request), action: 'contact.erase', outcome: 'success', target: { type: 'contact', id }, details: { method: 'crypto_shredding', recordingsDeleted: outcome.recordingsDeleted } });
      });
      return reply.code(204).send(null);
    },
  );

  app.post(
    '/api/v1/contacts/:contactId/reveal',
    {
      config: { access: 'contacts:reveal' },
      schema: {
        summary: 'Reveal full personal values of one contact (audited, limited per user and hour)',
        tags: ['contacts'],
        params: contactParamsSchema,
        body: revealSchema,
        response: { 200: revealedSchema, ...problemResponses(400, 401, 403, 404, 409, 410, 429) },
      },
    },
    async (request) => {
      const id = request.params.contactId;
      const { fields, reason } = request.body;
      const principal = principalOf(request);
      try {
        return await request.tenantDb.transaction(async (trx) => {
          const contact = await requireContact(trx, crypto, id);
          if (contact.row.status === 'erased') throw new AppError('contact_erased');
          // Restricted processing (Art. 18): kept, not used — only the privacy officer still sees it.
          if (contact.row.status === 'restricted' && !principal.permissions.has('privacy:manage')) throw new AppError('contact_restricted');
          const { used, limit } = await takeRevealBudget(trx, principal.userId, fields.length);
          // One event per field: who, which contact, which field (and why), never the value.
          for (const field of fields) {
            await recordAuditEvent(trx, { ...requestAudit(request), action: 'contact.reveal', outcome: 'success', target: { type: 'contact', id }, details: { field, reason } });
          }
          const { data } = contact;
          return {
            id,
            ...(fields.includes('phones') ? { phones: data.phones.map((phone) => ({ kind: phone.kind, number: phone.e164 })) } : {}),
            ...(fields.includes('email') ? { email: data.email } : {}),
            ...(fields.includes('address') ? { address: data.address } : {}),
            ...(fields.includes('birthDate') ? { birthDate: data.birthDate } : {}),
            ...(fields.includes('personalFields') ? { personalFields: data.personalFields } : {}),
            remainingThisHour: Math.max(0, limit - used),
          };
        });
      } catch (error) {
        if (error instanceof AppError && error.code === 'reveal_limit') {
          await recordAuditEventAlone(request.tenantDb, { ...requestAudit(request), action: 'contact.reveal', outcome: 'denied', target: { type: 'contact', id }, details: { fields: fields.join(','), reason: 'reveal_limit' } });
        }
        throw error;
      }
    },
  );

  app.get(
    '/api/v1/contact-fields',
    {
      config: { access: 'contacts:read' },
      schema: { summary: 'Custom contact fields of the tenant', tags: ['contacts'], response: { 200: z.object({ items: z.array(fieldDefinitionSchema) }), ...problemResponses(401, 403) } },
    },
    async (request) => ({ items: [...(await request.tenantDb.read((trx) => loadFieldDefinitions(trx))).values()] }),
  );

  app.post(
    '/api/v1/contact-fields',
    {
      config: { access: 'contacts:manage' },
      schema: {
        summary: 'Define a custom contact field with a type and a personal-data flag',
        tags: ['contacts'],
        body: createFieldSchema,
        response: { 201: fieldDefinitionSchema, ...problemResponses(400, 401, 403, 409) },
      },
    },
    async (request, reply) => {
      const field = request.body;
      await request.tenantDb.transaction(async (trx) => {
        const inserted = await trx.insertInto('contact_fields').values(field).onConflict((conflict) => conflict.columns(['tenant_id', 'key']).doNothing()).returning('key').executeTakeFirst();
        if (!inserted) throw new AppError('conflict', 'A field with this key exists.');
        await recordAuditEvent(trx, { ...requestAudit(request), action: 'contact_field.create', outcome: 'success', target: { type: 'contact_field', id: field.key }, details: { type: field.type, personal: field.personal } });
      });
      return reply.code(201).send(field);
    },
  );
}
