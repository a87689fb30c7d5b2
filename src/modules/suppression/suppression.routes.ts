import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { limited, withUploadSlot } from '../../server/streamed-upload.ts';
import { z } from '../../zod.ts';
import type { App } from '../../server/types.ts';
import { AppError } from '../../server/errors.ts';
import { problemResponses, uuidSchema } from '../../server/schemas.ts';
import { recordAuditEvent } from '../../audit/audit-event.ts';
import { actorLabel, requestAudit } from '../../server/request-audit.ts';
import type { RegistryFormat } from '../../db/schema.ts';
import { maskEmail, maskPhone, normaliseEmail, normalisePhone, isSupportedRegion } from '../contacts/phone.ts';
import type { ContactsCrypto } from '../contacts/contacts.service.ts';
import { addSuppression, checkSuppressed, replaceRegistry, type Channel } from './suppression.service.ts';
import { registryBatches, RegistryFileError, registryFormats } from './registry-formats.ts';

const reasons = ['request', 'objection', 'withdrawal', 'complaint', 'abandoned', 'other'] as const;

const valueFields = {
  phone: z.string().min(1).max(40).optional(),
  /** Region for a phone number without a country code. */
  region: z.string().regex(/^[A-Z]{2}$/).optional(),
  email: z.string().min(3).max(254).optional(),
};

const addBody = z.strictObject({
  ...valueFields,
  scope: z.enum(['tenant', 'campaign']).default('tenant'),
  campaignId: uuidSchema.optional(),
  reason: z.enum(reasons),
  source: z.string().trim().min(1).max(200),
  expiresAt: z.iso.datetime({ offset: true }).optional(),
});

const checkBody = z.strictObject({ ...valueFields, campaignId: uuidSchema.optional() });

const suppressionSchema = z.object({
  id: z.string(),
  channel: z.enum(['phone', 'email']),
  masked: z.string(),
  scope: z.enum(['tenant', 'campaign', 'registry']),
  campaignId: z.string().nullable(),
  registryId: z.string().nullable(),
  reason: z.string(),
  source: z.string(),
  expiresAt: z.string().nullable(),
  createdAt: z.string(),
});

const checkSchema = z.object({
  suppressed: z.boolean(),
  matches: z.array(z.object({ id: z.string(), scope: z.enum(['tenant', 'campaign', 'registry']), campaignId: z.string().nullable(), registryId: z.string().nullable(), reason: z.string(), expiresAt: z.string().nullable() })),
});

const registrySchema = z.object({ id: z.string(), format: z.string(), name: z.string(), entries: z.number().int(), rejected: z.number().int(), validUntil: z.string().nullable(), importedAt: z.string() });

/** The one value a body names, normalised; a clear error when it names none, both, or a bad one. */
function valueOf(body: { phone?: string | undefined; region?: string | undefined; email?: string | undefined }): { channel: Channel; value: string } {
  if ((body.phone === undefined) === (body.email === undefined)) throw new AppError('validation_failed', 'Give exactly one of phone and email.');
  if (body.phone !== undefined) {
    if (body.region !== undefined && !isSupportedRegion(body.region)) throw new AppError('validation_failed', 'region: not a supported region');
    const parsed = normalisePhone(body.phone, body.region ?? 'ZZ');
    if (typeof parsed === 'string') throw new AppError('phone_invalid', 'phone: not a valid number (give the region for a number without a country code)');
    return { channel: 'phone', value: parsed.e164 };
  }
  const email = normaliseEmail(body.email ?? '');
  if (!email) throw new AppError('email_invalid', 'email: not an e-mail address');
  return { channel: 'email', value: email };
}

export const REGISTRY_MAX_BYTES = 2 * 1024 ** 3;

export async function suppressionRoutes(app: App, crypto: ContactsCrypto): Promise<void> {
  // Registry files arrive as raw text: the route streams them, never buffering a whole file.
  app.addContentTypeParser(['text/plain', 'text/csv'], (_request, payload, done) => done(null, payload));

  app.post(
    '/api/v1/suppressions',
    {
      config: { access: 'contacts:manage' },
      schema: { summary: 'Suppress a number or e-mail address, tenant-wide or for one campaign', tags: ['suppression'], body: addBody, response: { 201: suppressionSchema, ...problemResponses(400, 401, 403, 404) } },
    },
    async (request, reply) => {
      const body = request.body;
      const { channel, value } = valueOf(body);
      if ((body.scope === 'campaign') !== (body.campaignId !== undefined)) throw new AppError('validation_failed', 'campaignId: named exactly for a campaign suppression');
      const created = await request.tenantDb.transaction(async (trx) => {
        const id = await addSuppression(trx, crypto, {
          channel,
          value,
          scope: body.scope,
          campaignId: body.campaignId ?? null,
          reason: body.reason,
          source: body.source,
          expiresAt: body.expiresAt ? new Date(body.expiresAt) : null,
          createdBy: actorLabel(request),
        });
        await recordAuditEvent(trx, { ...requestAudit(request), action: 'suppression.add', outcome: 'success', target: { type: 'suppression', id }, details: { channel, scope: body.scope, campaign: body.campaignId ?? null, reason: body.reason } });
        return trx.selectFrom('suppressions').selectAll().where('id', '=', id).executeTakeFirstOrThrow();
      });
      return reply.code(201).send(presentSuppression(created, value));
    },
  );

  app.get(
    '/api/v1/suppressions',
    {
      config: { access: 'contacts:read' },
      schema: {
        summary: 'Tenant and campaign suppressions, masked (registry entries are counted on their registry)',
        tags: ['suppression'],
        querystring: z.strictObject({ after: uuidSchema.optional(), limit: z.coerce.number().int().min(1).max(200).default(50) }),
        response: { 200: z.object({ items: z.array(suppressionSchema), nextAfter: z.string().nullable() }), ...problemResponses(400, 401, 403) },
      },
    },
    async (request) =>
      request.tenantDb.read(async (trx) => {
        let query = trx.selectFrom('suppressions').selectAll().where('scope', '<>', 'registry').where('lifted_at', 'is', null).orderBy('id').limit(request.query.limit);
        if (request.query.after) query = query.where('id', '>', request.query.after);
        const rows = await query.execute();
        const items = [];
        for (const row of rows) items.push(presentSuppression(row, await crypto.cipher.decrypt(trx, { table: 'suppressions', recordId: row.id, field: 'value' }, row.value_ciphertext)));
        const last = rows.at(-1);
        return { items, nextAfter: rows.length === request.query.limit && last ? last.id : null };
      }),
  );

  app.delete(
    '/api/v1/suppressions/:suppressionId',
    {
      config: { access: 'contacts:manage', stepUp: 'sessions' },
      schema: { summary: 'Lift a tenant or campaign suppression', tags: ['suppression'], params: z.strictObject({ suppressionId: uuidSchema }), response: { 204: z.null(), ...problemResponses(400, 401, 403, 404, 409) } },
    },
    async (request, reply) => {
      const id = request.params.suppressionId;
      await request.tenantDb.transaction(async (trx) => {
        const row = await trx.selectFrom('suppressions').select(['scope', 'reason']).where('id', '=', id).where('lifted_at', 'is', null).executeTakeFirst();
        if (!row) throw new AppError('not_found');
        if (row.scope === 'registry') throw new AppError('conflict', 'Registry entries change only with a new registry file.');
        if (row.reason === 'objection') throw new AppError('conflict', 'An objection is lifted by the person, as a new consent, not by removing the suppression.');
        // Lifted, not deleted: the entry and every match recorded against it stay as history.
        await trx.updateTable('suppressions').set({ lifted_at: new Date(), lifted_by: actorLabel(request) }).where('id', '=', id).execute();
        await recordAuditEvent(trx, { ...requestAudit(request), action: 'suppression.remove', outcome: 'success', target: { type: 'suppression', id }, details: { scope: row.scope, reason: row.reason } });
      });
      return reply.code(204).send(null);
    },
  );

  app.post(
    '/api/v1/suppressions/check',
    {
      config: { access: 'contacts:read' },
      schema: { summary: 'Is this number or address suppressed (tenant, campaign, national registries)? Every match is recorded', tags: ['suppression'], body: checkBody, response: { 200: checkSchema, ...problemResponses(400, 401, 403, 404) } },
    },
    async (request) => {
      const { channel, value } = valueOf(request.body);
      const campaignId = request.body.campaignId;
      return request.tenantDb.transaction(async (trx) => {
        if (campaignId) {
          const campaign = await trx.selectFrom('campaigns').select('id').where('id', '=', campaignId).executeTakeFirst();
          if (!campaign) throw new AppError('not_found', 'No such campaign.');
        }
        const matches = await checkSuppressed(trx, crypto, channel, value, { context: 'check', ...(campaignId ? { campaignId } : {}) });
        if (matches.length > 0) {
          await recordAuditEvent(trx, { ...requestAudit(request), action: 'suppression.check', outcome: 'success', target: { type: 'suppression', id: matches[0]?.id ?? '' }, details: { channel, matches: matches.length, campaign: campaignId ?? null } });
        }
        return {
          suppressed: matches.length > 0,
          matches: matches.map((match) => ({ ...match, expiresAt: match.expiresAt ? match.expiresAt.toISOString() : null })),
        };
      });
    },
  );

  app.get(
    '/api/v1/suppression-registries',
    {
      config: { access: 'contacts:read' },
      schema: { summary: 'National do-not-call registry files in force', tags: ['suppression'], response: { 200: z.object({ items: z.array(registrySchema), formats: z.record(z.string(), z.string()) }), ...problemResponses(401, 403) } },
    },
    async (request) =>
      request.tenantDb.read(async (trx) => {
        const rows = await trx.selectFrom('suppression_registries').selectAll().orderBy('format').execute();
        return {
          items: rows.map((row) => ({ id: row.id, format: row.format, name: row.name, entries: Number(row.entries), rejected: Number(row.rejected), validUntil: row.valid_until ? row.valid_until.toISOString() : null, importedAt: row.imported_at.toISOString() })),
          formats: Object.fromEntries(Object.entries(registryFormats).map(([format, described]) => [format, described.label])),
        };
      }),
  );

  app.put(
    '/api/v1/suppression-registries/:format',
    {
      config: { access: 'contacts:manage', streamedBody: true },
      bodyLimit: REGISTRY_MAX_BYTES,
      schema: {
        summary: "Load a national registry file (text/plain, streamed); it replaces that registry's entries in one transaction",
        tags: ['suppression'],
        params: z.strictObject({ format: z.enum(['no_reservasjon', 'uk_tps', 'us_dnc', 'e164_list']) }),
        querystring: z.strictObject({ name: z.string().trim().min(1).max(200).optional(), validUntil: z.iso.datetime({ offset: true }).optional() }),
        response: { 200: registrySchema, ...problemResponses(400, 401, 403, 413, 415) },
      },
    },
    async (request) => {
      const format = request.params.format as RegistryFormat;
      const body = request.body as unknown;
      if (!body || typeof (body as Readable).pipe !== 'function') throw new AppError('unsupported_media_type', 'Send the file as text/plain.');
      const hash = createHash('sha256');
      const source = limited(body as Readable, REGISTRY_MAX_BYTES, hash);
      const stats = { rejected: 0, lines: 0 };
      try {
        return await withUploadSlot(() => request.tenantDb.transaction(async (trx) => {
          const name = request.query.name ?? registryFormats[format].label;
          const validUntil = request.query.validUntil ? new Date(request.query.validUntil) : null;
          const { id, entries } = await replaceRegistry(trx, crypto, { format, name, validUntil, createdBy: actorLabel(request) }, registryBatches(source, format, stats));
          if (entries === 0) throw new AppError('registry_invalid', 'The file holds no number of this registry format.');
          const fileSha256 = hash.digest();
          await trx.updateTable('suppression_registries').set({ rejected: stats.rejected, file_sha256: fileSha256 }).where('id', '=', id).execute();
          await recordAuditEvent(trx, {
            ...requestAudit(request),
            action: 'suppression.registry_import',
            outcome: 'success',
            target: { type: 'suppression_registry', id },
            details: { format, entries, rejected: stats.rejected, lines: stats.lines, fileSha256: fileSha256.toString('hex') },
          });
          const row = await trx.selectFrom('suppression_registries').selectAll().where('id', '=', id).executeTakeFirstOrThrow();
          return { id, format, name: row.name, entries: Number(row.entries), rejected: Number(row.rejected), validUntil: row.valid_until ? row.valid_until.toISOString() : null, importedAt: row.imported_at.toISOString() };
        }));
      } catch (error) {
        if (error instanceof RegistryFileError) throw new AppError('registry_invalid', error.message);
        throw error;
      }
    },
  );
}

function presentSuppression(
  row: { id: string; channel: 'phone' | 'email'; scope: 'tenant' | 'campaign' | 'registry'; campaign_id: string | null; registry_id: string | null; reason: string; source: string; expires_at: Date | null; created_at: Date },
  value: string,
) {
  return {
    id: row.id,
    channel: row.channel,
    masked: row.channel === 'phone' ? maskPhone(value) : maskEmail(value),
    scope: row.scope,
    campaignId: row.campaign_id,
    registryId: row.registry_id,
    reason: row.reason,
    source: row.source,
    expiresAt: row.expires_at ? row.expires_at.toISOString() : null,
    createdAt: row.created_at.toISOString(),
  };
}
