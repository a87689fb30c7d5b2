import { Readable } from 'node:stream';
import { z } from '../../zod.ts';
import { stringify } from '../../csv.ts';
import type { App } from '../../server/types.ts';
import { AppError } from '../../server/errors.ts';
import { problemResponses, uuidSchema } from '../../server/schemas.ts';
import { recordAuditEvent } from '../../audit/audit-event.ts';
import { requestAudit } from '../../server/request-audit.ts';
import type { TenantTransaction } from '../../db/tenant-db.ts';
import { isSupportedRegion } from './phone.ts';
import { loadContacts, loadFieldDefinitions, type ContactsCrypto, type LoadedContact } from './contacts.service.ts';
import type { ContactFieldDefinition } from './contact-record.ts';
import { CSV_OUT, neutraliseCell } from './csv-safety.ts';

const listSchema = z.object({
  id: z.string(),
  name: z.string(),
  defaultRegion: z.string(),
  campaignId: z.string().nullable(),
  members: z.number().int(),
  createdAt: z.string(),
});
const listBody = z.strictObject({
  name: z.string().trim().min(1).max(200),
  defaultRegion: z.string().regex(/^[A-Z]{2}$/, 'an ISO 3166 alpha-2 code'),
  campaignId: uuidSchema.nullable().optional(),
});
const listPatch = listBody.partial().strict();
const listParams = z.strictObject({ listId: uuidSchema });
const membersBody = z.strictObject({ add: z.array(uuidSchema).max(1000).default([]), remove: z.array(uuidSchema).max(1000).default([]) });


async function presentList(trx: TenantTransaction, listId: string) {
  const list = await trx
    .selectFrom('contact_lists')
    .select(['id', 'name', 'default_region', 'campaign_id', 'created_at'])
    .select((eb) => eb.selectFrom('contact_list_members').select((inner) => inner.fn.countAll<string>().as('n')).whereRef('contact_list_members.list_id', '=', 'contact_lists.id').as('members'))
    .where('id', '=', listId)
    .executeTakeFirst();
  if (!list) throw new AppError('not_found');
  return { id: list.id, name: list.name, defaultRegion: list.default_region, campaignId: list.campaign_id, members: Number(list.members ?? 0), createdAt: list.created_at.toISOString() };
}

async function assertCampaign(trx: TenantTransaction, campaignId: string | null | undefined): Promise<void> {
  if (!campaignId) return;
  const campaign = await trx.selectFrom('campaigns').select('id').where('id', '=', campaignId).executeTakeFirst();
  if (!campaign) throw new AppError('not_found', 'No such campaign.');
}

function isUniqueName(error: unknown): boolean {
  return (error as { code?: string }).code === '23505';
}

export async function listsRoutes(app: App, crypto: ContactsCrypto): Promise<void> {
  app.get(
    '/api/v1/lists',
    {
      config: { access: 'contacts:read' },
      schema: { summary: 'Contact lists', tags: ['lists'], response: { 200: z.object({ items: z.array(listSchema) }), ...problemResponses(401, 403) } },
    },
    async (request) =>
      request.tenantDb.read(async (trx) => {
        const lists = await trx.selectFrom('contact_lists').select('id').orderBy('name').limit(1000).execute();
        const items = [];
        for (const list of lists) items.push(await presentList(trx, list.id));
        return { items };
      }),
  );

  app.post(
    '/api/v1/lists',
    {
      config: { access: 'contacts:manage' },
      schema: { summary: 'Create a contact list', tags: ['lists'], body: listBody, response: { 201: listSchema, ...problemResponses(400, 401, 403, 404, 409) } },
    },
    async (request, reply) => {
      const { name, defaultRegion, campaignId } = request.body;
      if (!isSupportedRegion(defaultRegion)) throw new AppError('validation_failed', 'defaultRegion: not a supported region');
      const list = await request.tenantDb.transaction(async (trx) => {
        await assertCampaign(trx, campaignId);
        const created = await trx
          .insertInto('contact_lists')
          .values({ name, default_region: defaultRegion, campaign_id: campaignId ?? null })
          .onConflict((conflict) => conflict.columns(['tenant_id', 'name']).doNothing())
          .returning('id')
          .executeTakeFirst();
        if (!created) throw new AppError('conflict', 'A list with this name exists.');
        await recordAuditEvent(trx, { ...requestAudit(request), action: 'contact_list.create', outcome: 'success', target: { type: 'contact_list', id: created.id }, details: { defaultRegion, campaign: campaignId ?? null } });
        return presentList(trx, created.id);
      });
      return reply.code(201).send(list);
    },
  );

  app.get(
    '/api/v1/lists/:listId',
    {
      config: { access: 'contacts:read' },
      schema: { summary: 'One contact list', tags: ['lists'], params: listParams, response: { 200: listSchema, ...problemResponses(400, 401, 403, 404) } },
    },
    async (request) => request.tenantDb.read((trx) => presentList(trx, request.params.listId)),
  );

  app.patch(
    '/api/v1/lists/:listId',
    {
      config: { access: 'contacts:manage' },
      schema: { summary: 'Rename a list, change its region, or assign it to a campaign', tags: ['lists'], params: listParams, body: listPatch, response: { 200: listSchema, ...problemResponses(400, 401, 403, 404, 409) } },
    },
    async (request) => {
      const { name, defaultRegion, campaignId } = request.body;
      if (defaultRegion !== undefined && !isSupportedRegion(defaultRegion)) throw new AppError('validation_failed', 'defaultRegion: not a supported region');
      return request.tenantDb.transaction(async (trx) => {
        await presentList(trx, request.params.listId);
        await assertCampaign(trx, campaignId);
        try {
          await trx
            .updateTable('contact_lists')
            .set({
              ...(name !== undefined ? { name } : {}),
              ...(defaultRegion !== undefined ? { default_region: defaultRegion } : {}),
              ...(campaignId !== undefined ? { campaign_id: campaignId } : {}),
            })
            .where('id', '=', request.params.listId)
            .execute();
        } catch (error) {
          if (isUniqueName(error)) throw new AppError('conflict', 'A list with this name exists.');
          throw error;
        }
        await recordAuditEvent(trx, {
          ...requestAudit(request),
          action: 'contact_list.update',
          outcome: 'success',
          target: { type: 'contact_list', id: request.params.listId },
          details: { changed: Object.keys(request.body).join(','), campaign: campaignId ?? null },
        });
        return presentList(trx, request.params.listId);
      });
    },
  );

  app.post(
    '/api/v1/lists/:listId/members',
    {
      config: { access: 'contacts:manage' },
      schema: { summary: 'Add contacts to a list, or take them off', tags: ['lists'], params: listParams, body: membersBody, response: { 200: listSchema, ...problemResponses(400, 401, 403, 404) } },
    },
    async (request) => {
      const { add, remove } = request.body;
      const listId = request.params.listId;
      return request.tenantDb.transaction(async (trx) => {
        await presentList(trx, listId);
        if (add.length > 0) {
          const known = await trx.selectFrom('contacts').select('id').where('id', 'in', add).where('status', '<>', 'erased').execute();
          if (known.length !== new Set(add).size) throw new AppError('not_found', 'Some of those contacts do not exist.');
          await trx
            .insertInto('contact_list_members')
            .values(known.map((contact) => ({ list_id: listId, contact_id: contact.id })))
            .onConflict((conflict) => conflict.columns(['tenant_id', 'list_id', 'contact_id']).doNothing())
            .execute();
        }
        if (remove.length > 0) await trx.deleteFrom('contact_list_members').where('list_id', '=', listId).where('contact_id', 'in', remove).execute();
        await recordAuditEvent(trx, { ...requestAudit(request), action: 'contact_list.members', outcome: 'success', target: { type: 'contact_list', id: listId }, details: { added: add.length, removed: remove.length } });
        return presentList(trx, listId);
      });
    },
  );

  app.get(
    '/api/v1/lists/:listId/export',
    {
      // Bulk personal data: its own permission, a fresh sign-in, and an audit event with the count.
      config: { access: 'contacts:export', stepUp: 'sessions' },
      schema: { summary: "Export a list's contacts with their full values as CSV (cells neutralised against formula injection)", tags: ['lists'], params: listParams, response: { 200: z.string().describe('text/csv'), ...problemResponses(400, 401, 403, 404) } },
    },
    async (request, reply) => {
      const listId = request.params.listId;
      const tenantDb = request.tenantDb;
      // The export is audited (with the number of contacts) before the first byte leaves.
      const definitions = await tenantDb.transaction(async (trx) => {
        await presentList(trx, listId);
        const fields = [...(await loadFieldDefinitions(trx)).values()];
        const counted = await trx.selectFrom('contact_list_members').select((eb) => eb.fn.countAll<string>().as('n')).where('list_id', '=', listId).executeTakeFirstOrThrow();
        await recordAuditEvent(trx, { ...requestAudit(request), action: 'contact_list.export', outcome: 'success', target: { type: 'contact_list', id: listId }, details: { contacts: Number(counted.n) } });
        return fields;
      });
      // Then streamed, 500 contacts a page (keyset on the contact id): memory stays flat for any list.
      async function* pages() {
        yield stringify([['id', 'external_id', 'status', 'name', 'phone_1', 'phone_2', 'phone_3', 'email', 'address', 'birth_date', 'notes', 'time_zone', ...definitions.map((field) => field.key)]], CSV_OUT);
        let after = '00000000-0000-0000-0000-000000000000';
        for (;;) {
          const page = await tenantDb.read(async (trx) => {
            const members = await trx.selectFrom('contact_list_members').select('contact_id').where('list_id', '=', listId).where('contact_id', '>', after).orderBy('contact_id').limit(500).execute();
            const contacts = await loadContacts(trx, crypto, members.map((member) => member.contact_id));
            const rows = members.flatMap((member) => {
              const contact = contacts.get(member.contact_id);
              return contact ? [exportRow(contact, definitions)] : [];
            });
            return { rows, last: members.at(-1)?.contact_id };
          });
          if (page.rows.length > 0) yield stringify(page.rows.map((cells) => cells.map(neutraliseCell)), CSV_OUT);
          if (!page.last) return;
          after = page.last;
        }
      }
      return reply
        .header('content-type', 'text/csv; charset=utf-8')
        .header('content-disposition', 'attachment; filename="contacts.csv"')
        .header('cache-control', 'no-store')
        .send(Readable.from(pages(), { objectMode: false }) as unknown as string);
    },
  );
}

/** One contact as a row of the list export: full values, the way the CSV header names them. */
function exportRow(contact: LoadedContact, definitions: readonly ContactFieldDefinition[]): string[] {
  const { data, row } = contact;
  // Restricted processing (Art. 18): kept, never exported — the row says so and carries no values.
  if (row.status === 'restricted') return [row.id, '', row.status, ...Array.from({ length: 9 + definitions.length }, () => '')];
  const address = data.address ? [data.address.line1, data.address.line2, data.address.postalCode, data.address.city, data.address.region, data.address.country].filter(Boolean).join(', ') : '';
  return [
    row.id,
    data.externalId ?? '',
    row.status,
    data.name ?? '',
    data.phones[0]?.e164 ?? '',
    data.phones[1]?.e164 ?? '',
    data.phones[2]?.e164 ?? '',
    data.email ?? '',
    address,
    data.birthDate ?? '',
    data.notes ?? '',
    data.timeZones.join(' '),
    ...definitions.map((field) => String((field.personal ? data.personalFields : data.fields)[field.key] ?? '')),
  ];
}
