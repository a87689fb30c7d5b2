import { z } from '../../zod.ts';
import { uuidSchema } from '../../server/schemas.ts';
import { revealableFields } from './contacts.service.ts';

const phoneKind = z.enum(['mobile', 'home', 'work', 'other']);
const customValue = z.union([z.string().max(1000), z.number(), z.boolean()]);

export const addressSchema = z.strictObject({
  line1: z.string().trim().max(200).optional(),
  line2: z.string().trim().max(200).optional(),
  postalCode: z.string().trim().max(20).optional(),
  city: z.string().trim().max(100).optional(),
  region: z.string().trim().max(100).optional(),
  country: z.string().regex(/^[A-Z]{2}$/, 'an ISO 3166 alpha-2 code').optional(),
});

const contactBody = {
  externalId: z.string().trim().min(1).max(200).nullable().optional(),
  name: z.string().trim().min(1).max(200).nullable().optional(),
  phones: z.array(z.strictObject({ kind: phoneKind.default('mobile'), number: z.string().min(1).max(40) })).max(10).optional(),
  email: z.string().trim().max(254).nullable().optional(),
  address: addressSchema.nullable().optional(),
  birthDate: z.string().regex(/^\d{4}-\d{2}-\d{2}$/, 'YYYY-MM-DD').nullable().optional(),
  notes: z.string().max(4000).nullable().optional(),
  fields: z.record(z.string().max(40), customValue.nullable()).optional(),
  /** An IANA zone that overrides the one derived from the number or address; null derives again. */
  timeZone: z.string().max(64).nullable().optional(),
};

export const createContactSchema = z.strictObject({
  ...contactBody,
  /** ISO 3166 region for numbers without a country code; default: the list's, or the tenant's. */
  defaultRegion: z.string().regex(/^[A-Z]{2}$/).optional(),
  listId: uuidSchema.optional(),
});

export const updateContactSchema = z.strictObject(contactBody);

export const contactParamsSchema = z.strictObject({ contactId: uuidSchema });

export const contactStatusSchema = z.enum(['active', 'do_not_contact', 'restricted', 'erased']);

/**
 * What a reader with contacts:read sees: masked numbers and e-mail, whether the other personal
 * values exist, never the values. Fastify serialises through this schema, so a value not named
 * here cannot reach the response whatever the handler returns.
 */
export const contactSchema = z.object({
  id: z.string(),
  externalId: z.string().nullable(),
  status: contactStatusSchema,
  name: z.string().nullable(),
  phones: z.array(z.object({ kind: phoneKind, masked: z.string(), region: z.string().nullable() })),
  email: z.object({ masked: z.string() }).nullable(),
  hasAddress: z.boolean(),
  hasBirthDate: z.boolean(),
  notes: z.string().nullable(),
  fields: z.record(z.string(), customValue),
  personalFieldsSet: z.array(z.string()),
  timeZones: z.array(z.string()),
  timeZoneSource: z.enum(['override', 'address', 'number', 'region', 'unknown']),
  createdAt: z.string(),
  updatedAt: z.string(),
});

export const contactListSchema = z.object({ items: z.array(contactSchema), nextAfter: z.string().nullable() });

/** GET /api/v1/contacts: filters that carry no personal data (a URL is logged by proxies). */
export const listContactsQuerySchema = z.strictObject({
  listId: uuidSchema.optional(),
  status: contactStatusSchema.optional(),
  after: uuidSchema.optional(),
  limit: z.coerce.number().int().min(1).max(100).default(50),
});

/**
 * POST /api/v1/contacts/search: a lookup by phone, e-mail or external id travels in the body, never
 * in a URL, and counts against the user's hourly lookup budget.
 */
export const searchContactsBodySchema = z.strictObject({
  phone: z.string().min(1).max(40).optional(),
  /** Region for a phone number written without a country code. */
  region: z.string().regex(/^[A-Z]{2}$/).optional(),
  email: z.string().min(3).max(254).optional(),
  externalId: z.string().min(1).max(200).optional(),
  listId: uuidSchema.optional(),
  status: contactStatusSchema.optional(),
  after: uuidSchema.optional(),
  limit: z.number().int().min(1).max(100).default(50),
});

export const revealSchema = z.strictObject({
  fields: z.array(z.enum(revealableFields)).min(1).max(revealableFields.length),
  /** Why: kept in the audit event (for example "callback requested"); no personal data. */
  reason: z.string().trim().min(3).max(200),
});

export const revealedSchema = z.object({
  id: z.string(),
  phones: z.array(z.object({ kind: phoneKind, number: z.string() })).optional(),
  email: z.string().nullable().optional(),
  address: addressSchema.nullable().optional(),
  birthDate: z.string().nullable().optional(),
  personalFields: z.record(z.string(), customValue).optional(),
  remainingThisHour: z.number().int(),
});

export const statusBodySchema = z.strictObject({ status: z.enum(['active', 'do_not_contact', 'restricted']) });

export const fieldDefinitionSchema = z.object({
  key: z.string(),
  label: z.string(),
  type: z.enum(['text', 'number', 'date', 'boolean']),
  personal: z.boolean(),
});

export const createFieldSchema = z.strictObject({
  key: z.string().regex(/^[a-z][a-z0-9_]{0,39}$/, 'lower-case letters, digits and _; starts with a letter'),
  label: z.string().trim().min(1).max(100),
  type: z.enum(['text', 'number', 'date', 'boolean']),
  personal: z.boolean(),
});

export const consentBodySchema = z.strictObject({
  purpose: z.enum(['sales', 'survey', 'service']),
  action: z.enum(['grant', 'withdraw', 'object']),
  basis: z.enum(['consent', 'legitimate_interest', 'contract']).optional(),
  source: z.string().trim().min(1).max(200),
  evidenceRef: z.string().trim().min(1).max(500).optional(),
  occurredAt: z.iso.datetime({ offset: true }).optional(),
});

export const consentSchema = z.object({
  id: z.string(),
  purpose: z.enum(['sales', 'survey', 'service']),
  action: z.enum(['grant', 'withdraw', 'object']),
  basis: z.enum(['consent', 'legitimate_interest', 'contract']).nullable(),
  source: z.string(),
  evidenceRef: z.string().nullable(),
  occurredAt: z.string(),
  recordedAt: z.string(),
  recordedBy: z.string(),
});

export const consentStateSchema = z.object({
  current: z.array(
    z.object({
      purpose: z.enum(['sales', 'survey', 'service']),
      /** May we contact for this purpose: the newest entry is a grant. */
      allowed: z.boolean(),
      basis: z.enum(['consent', 'legitimate_interest', 'contract']).nullable(),
      since: z.string().nullable(),
    }),
  ),
  history: z.array(consentSchema),
});
