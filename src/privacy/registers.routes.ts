import type { FastifyRequest } from 'fastify';
import { z } from '../zod.ts';
import type { App } from '../server/types.ts';
import { AppError } from '../server/errors.ts';
import { problemResponses, uuidSchema } from '../server/schemas.ts';
import { recordAuditEvent } from '../audit/audit-event.ts';
import { actorLabel, requestAudit } from '../server/request-audit.ts';
import type { Selectable } from '../db/kysely.ts';
import type { ProcessorsTable } from '../db/schema.ts';
import { nextBreachReference } from './requests.ts';
import { buildRopa, ropaPdf } from './ropa.ts';
import { dateText } from './dates.ts';
import { dueReminders, REMINDER_DAYS } from './reminders.ts';
import { checkDecisions, deadlineOfBreach, isLate, notificationText, type BreachRow } from './breaches.ts';

const access = { access: 'privacy:manage' } as const;
const date = z.iso.date();
const timestamp = z.iso.datetime({ offset: true });
const labels = z.array(z.string().trim().min(1).max(100)).max(20);

const profileBody = z.strictObject({
  controllerName: z.string().trim().min(1).max(200),
  controllerAddress: z.string().trim().max(500).optional(),
  dpoName: z.string().trim().max(200).optional(),
  dpoEmail: z.string().trim().max(254).optional(),
  supervisoryAuthority: z.string().trim().max(200).optional(),
});

const certification = z.strictObject({ kind: z.enum(['soc2', 'iso27001', 'other']), reference: z.string().trim().min(1).max(200), expiresOn: date.nullable() });
const processorBody = z.strictObject({
  name: z.string().trim().min(1).max(200),
  service: z.string().trim().min(1).max(200),
  dataCategories: labels.default([]),
  location: z.string().trim().min(2).max(100),
  transferSafeguard: z.string().trim().max(200).nullable().default(null),
  dpaSignedOn: date.nullable().default(null),
  dpaExpiresOn: date.nullable().default(null),
  certifications: z.array(certification).max(10).default([]),
});
const processorSchema = z.object({ id: z.string(), name: z.string(), service: z.string(), dataCategories: z.array(z.string()), location: z.string(), transferSafeguard: z.string().nullable(), dpaSignedOn: z.string().nullable(), dpaExpiresOn: z.string().nullable(), certifications: z.array(z.object({ kind: z.string(), reference: z.string(), expiresOn: z.string().nullable() })) });

const breachBody = z.strictObject({
  title: z.string().trim().min(1).max(200),
  description: z.string().trim().min(1).max(4000),
  occurredAt: timestamp.optional(),
  detectedAt: timestamp,
  awareAt: timestamp.optional(),
  dataCategories: labels.default([]),
  subjectCategories: labels.default([]),
  approxSubjects: z.number().int().min(0).optional(),
  approxRecords: z.number().int().min(0).optional(),
  dataEncrypted: z.boolean().default(false),
  consequences: z.string().trim().max(4000).optional(),
  measures: z.string().trim().max(4000).optional(),
});
const breachPatch = breachBody.omit({ detectedAt: true, awareAt: true }).partial().strict();
const breachSchema = z.object({
  id: z.string(),
  reference: z.string(),
  title: z.string(),
  status: z.enum(['open', 'closed']),
  detectedAt: z.string(),
  awareAt: z.string(),
  authorityDueAt: z.string(),
  hoursLeft: z.number().int(),
  overdue: z.boolean(),
  dataCategories: z.array(z.string()),
  subjectCategories: z.array(z.string()),
  approxSubjects: z.number().int().nullable(),
  approxRecords: z.number().int().nullable(),
  dataEncrypted: z.boolean(),
  authorityDecision: z.string().nullable(),
  authorityReason: z.string().nullable(),
  authorityNotifiedAt: z.string().nullable(),
  subjectsDecision: z.string().nullable(),
  subjectsReason: z.string().nullable(),
  subjectsNotifiedAt: z.string().nullable(),
  lateReason: z.string().nullable(),
});

const presentProcessor = (row: Selectable<ProcessorsTable>) => ({
  id: row.id,
  name: row.name,
  service: row.service,
  dataCategories: row.data_categories,
  location: row.location,
  transferSafeguard: row.transfer_safeguard,
  dpaSignedOn: dateText(row.dpa_signed_on),
  dpaExpiresOn: dateText(row.dpa_expires_on),
  certifications: row.certifications,
});

const presentBreach = (row: BreachRow) => ({
  id: row.id,
  reference: row.reference,
  title: row.title,
  status: row.status,
  detectedAt: row.detected_at.toISOString(),
  awareAt: row.aware_at.toISOString(),
  ...deadlineOfBreach(row),
  dataCategories: row.data_categories,
  subjectCategories: row.subject_categories,
  approxSubjects: row.approx_subjects,
  approxRecords: row.approx_records,
  dataEncrypted: row.data_encrypted,
  authorityDecision: row.authority_decision,
  authorityReason: row.authority_reason,
  authorityNotifiedAt: row.authority_notified_at?.toISOString() ?? null,
  subjectsDecision: row.subjects_decision,
  subjectsReason: row.subjects_reason,
  subjectsNotifiedAt: row.subjects_notified_at?.toISOString() ?? null,
  lateReason: row.late_reason,
});


/**
 * /api/v1/privacy/profile, /processors, /breaches and /reminders: who the controller is, the
 * processors with their agreements and certifications, and the breach register with its
 * 72-hour clock, decisions, timeline and notification texts.
 */
export async function privacyRegisterRoutes(app: App): Promise<void> {
  app.get('/api/v1/privacy/profile', { config: access, schema: { summary: 'The controller and its data protection officer', tags: ['privacy'], response: { 200: profileBody.extend({ controllerName: z.string() }).partial(), ...problemResponses(401, 403) } } }, async (request) => {
    const row = await request.tenantDb.read((trx) => trx.selectFrom('privacy_profiles').selectAll().executeTakeFirst());
    if (!row) return {};
    return { controllerName: row.controller_name, controllerAddress: row.controller_address ?? undefined, dpoName: row.dpo_name ?? undefined, dpoEmail: row.dpo_email ?? undefined, supervisoryAuthority: row.supervisory_authority ?? undefined };
  });

  app.put('/api/v1/privacy/profile', { config: access, schema: { summary: 'Set the controller and its data protection officer', tags: ['privacy'], body: profileBody, response: { 204: z.null(), ...problemResponses(400, 401, 403) } } }, async (request, reply) => {
    const body = request.body;
    const values = { controller_name: body.controllerName, controller_address: body.controllerAddress ?? null, dpo_name: body.dpoName ?? null, dpo_email: body.dpoEmail ?? null, supervisory_authority: body.supervisoryAuthority ?? null, updated_at: new Date() };
    await request.tenantDb.transaction(async (trx) => {
      await trx.insertInto('privacy_profiles').values(values).onConflict((conflict) => conflict.column('tenant_id').doUpdateSet(values)).execute();
      await recordAuditEvent(trx, { ...requestAudit(request), action: 'privacy.profile', outcome: 'success', target: { type: 'privacy_profile', id: request.tenantDb.tenantId }, details: {} });
    });
    return reply.code(204).send(null);
  });

  app.post('/api/v1/privacy/processors', { config: access, schema: { summary: 'Add a processor (carrier, hosting, e-mail…) with its agreement and certifications', tags: ['privacy'], body: processorBody, response: { 201: processorSchema, ...problemResponses(400, 401, 403, 409) } } }, async (request, reply) => {
    const body = request.body;
    if (body.dpaSignedOn && body.dpaExpiresOn && body.dpaExpiresOn <= body.dpaSignedOn) throw new AppError('validation_failed', 'The agreement ends after it was signed.', [{ path: 'body/dpaExpiresOn', message: 'after dpaSignedOn' }]);
    const row = await request.tenantDb.transaction(async (trx) => {
      const existing = await trx.selectFrom('processors').select('id').where('name', '=', body.name).where('service', '=', body.service).executeTakeFirst();
      if (existing) throw new AppError('conflict', 'This processor is registered for this service already.');
      const created = await trx
        .insertInto('processors')
        .values({ name: body.name, service: body.service, data_categories: body.dataCategories, location: body.location, transfer_safeguard: body.transferSafeguard, dpa_signed_on: body.dpaSignedOn, dpa_expires_on: body.dpaExpiresOn, certifications: JSON.stringify(body.certifications) })
        .returningAll()
        .executeTakeFirstOrThrow();
      await recordAuditEvent(trx, { ...requestAudit(request), action: 'privacy.processor', outcome: 'success', target: { type: 'processor', id: created.id }, details: { added: true } });
      return created;
    });
    return reply.code(201).send(presentProcessor(row));
  });

  app.get('/api/v1/privacy/processors', { config: access, schema: { summary: 'The processor register', tags: ['privacy'], response: { 200: z.object({ items: z.array(processorSchema) }), ...problemResponses(401, 403) } } }, async (request) => {
    const rows = await request.tenantDb.read((trx) => trx.selectFrom('processors').selectAll().orderBy('name').execute());
    return { items: rows.map(presentProcessor) };
  });

  app.put('/api/v1/privacy/processors/:processorId', { config: access, schema: { summary: "Replace a processor's entry", tags: ['privacy'], params: z.strictObject({ processorId: uuidSchema }), body: processorBody, response: { 200: processorSchema, ...problemResponses(400, 401, 403, 404) } } }, async (request) => {
    const body = request.body;
    const row = await request.tenantDb.transaction(async (trx) => {
      const updated = await trx
        .updateTable('processors')
        .set({ name: body.name, service: body.service, data_categories: body.dataCategories, location: body.location, transfer_safeguard: body.transferSafeguard, dpa_signed_on: body.dpaSignedOn, dpa_expires_on: body.dpaExpiresOn, certifications: JSON.stringify(body.certifications), updated_at: new Date() })
        .where('id', '=', request.params.processorId)
        .returningAll()
        .executeTakeFirst();
      if (!updated) throw new AppError('not_found');
      await recordAuditEvent(trx, { ...requestAudit(request), action: 'privacy.processor', outcome: 'success', target: { type: 'processor', id: updated.id }, details: { updated: true } });
      return updated;
    });
    return presentProcessor(row);
  });

  app.post('/api/v1/privacy/breaches', { config: access, schema: { summary: 'Record a personal-data breach; the 72-hour clock runs from awareness', tags: ['privacy'], body: breachBody, response: { 201: breachSchema, ...problemResponses(400, 401, 403) } } }, async (request, reply) => {
    const body = request.body;
    const detectedAt = new Date(body.detectedAt);
    const awareAt = body.awareAt ? new Date(body.awareAt) : detectedAt;
    if (awareAt.getTime() < detectedAt.getTime()) throw new AppError('validation_failed', 'Awareness cannot come before detection.', [{ path: 'body/awareAt', message: 'on or after detectedAt' }]);
    if (detectedAt.getTime() > Date.now() + 60_000) throw new AppError('validation_failed', 'A breach is detected in the past.', [{ path: 'body/detectedAt', message: 'not in the future' }]);
    // The 72 hours run from awareness: it cannot be put off into the future.
    if (awareAt.getTime() > Date.now() + 60_000) throw new AppError('validation_failed', 'Awareness lies in the past or now.', [{ path: 'body/awareAt', message: 'not in the future' }]);
    const row = await request.tenantDb.transaction(async (trx) => {
      const created = await trx
        .insertInto('breaches')
        .values({
          reference: await nextBreachReference(trx, awareAt),
          title: body.title,
          description: body.description,
          occurred_at: body.occurredAt ? new Date(body.occurredAt) : null,
          detected_at: detectedAt,
          aware_at: awareAt,
          data_categories: body.dataCategories,
          subject_categories: body.subjectCategories,
          approx_subjects: body.approxSubjects ?? null,
          approx_records: body.approxRecords ?? null,
          data_encrypted: body.dataEncrypted,
          consequences: body.consequences ?? null,
          measures: body.measures ?? null,
          created_by: actorLabel(request),
        })
        .returningAll()
        .executeTakeFirstOrThrow();
      await trx.insertInto('breach_events').values({ breach_id: created.id, actor: actorLabel(request), entry: 'Breach recorded' }).execute();
      await recordAuditEvent(trx, { ...requestAudit(request), action: 'privacy.breach', outcome: 'success', target: { type: 'breach', id: created.id }, details: { step: 'recorded', reference: created.reference } });
      return created;
    });
    return reply.code(201).send(presentBreach(row));
  });

  app.get('/api/v1/privacy/breaches', { config: access, schema: { summary: 'The breach register, open breaches first by deadline', tags: ['privacy'], response: { 200: z.object({ items: z.array(breachSchema) }), ...problemResponses(401, 403) } } }, async (request) => {
    const rows = await request.tenantDb.read((trx) => trx.selectFrom('breaches').selectAll().orderBy('status', 'desc').orderBy('aware_at').limit(500).execute());
    return { items: rows.map(presentBreach) };
  });

  const breachParams = z.strictObject({ breachId: uuidSchema });

  app.get('/api/v1/privacy/breaches/:breachId', { config: access, schema: { summary: 'One breach with its timeline', tags: ['privacy'], params: breachParams, response: { 200: breachSchema.extend({ description: z.string(), consequences: z.string().nullable(), measures: z.string().nullable(), timeline: z.array(z.object({ at: z.string(), actor: z.string(), entry: z.string() })) }), ...problemResponses(400, 401, 403, 404) } } }, async (request) =>
    request.tenantDb.read(async (trx) => {
      const row = await trx.selectFrom('breaches').selectAll().where('id', '=', request.params.breachId).executeTakeFirst();
      if (!row) throw new AppError('not_found');
      const events = await trx.selectFrom('breach_events').select(['at', 'actor', 'entry']).where('breach_id', '=', row.id).orderBy('id').execute();
      return { ...presentBreach(row), description: row.description, consequences: row.consequences, measures: row.measures, timeline: events.map((event) => ({ at: event.at.toISOString(), actor: event.actor, entry: event.entry })) };
    }),
  );

  /** Loads an open breach for a change, records the timeline entry and audit event, returns the row. */
  const change = async (request: FastifyRequest, step: string, code: string, update: (row: BreachRow) => Partial<Omit<BreachRow, 'id' | 'tenant_id'>>): Promise<BreachRow> =>
    request.tenantDb.transaction(async (trx) => {
      const { breachId } = request.params as { breachId: string };
      const row = await trx.selectFrom('breaches').selectAll().where('id', '=', breachId).forUpdate().executeTakeFirst();
      if (!row) throw new AppError('not_found');
      if (row.status === 'closed') throw new AppError('invalid_transition', 'The breach is closed.');
      const values = update(row);
      const updated = Object.keys(values).length === 0 ? row : await trx.updateTable('breaches').set(values).where('id', '=', breachId).returningAll().executeTakeFirstOrThrow();
      await trx.insertInto('breach_events').values({ breach_id: breachId, actor: actorLabel(request), entry: step }).execute();
      await recordAuditEvent(trx, { ...requestAudit(request), action: 'privacy.breach', outcome: 'success', target: { type: 'breach', id: breachId }, details: { step: code } });
      return updated;
    });

  app.patch('/api/v1/privacy/breaches/:breachId', { config: access, schema: { summary: 'Update what is known (in phases)', tags: ['privacy'], params: breachParams, body: breachPatch, response: { 200: breachSchema, ...problemResponses(400, 401, 403, 404, 409) } } }, async (request) => {
    const body = request.body;
    const row = await change(request, `Updated: ${Object.keys(body).join(', ') || 'nothing'}`, 'updated', () => ({
      ...(body.title !== undefined ? { title: body.title } : {}),
      ...(body.description !== undefined ? { description: body.description } : {}),
      ...(body.occurredAt !== undefined ? { occurred_at: new Date(body.occurredAt) } : {}),
      ...(body.dataCategories !== undefined ? { data_categories: body.dataCategories } : {}),
      ...(body.subjectCategories !== undefined ? { subject_categories: body.subjectCategories } : {}),
      ...(body.approxSubjects !== undefined ? { approx_subjects: body.approxSubjects } : {}),
      ...(body.approxRecords !== undefined ? { approx_records: body.approxRecords } : {}),
      ...(body.dataEncrypted !== undefined ? { data_encrypted: body.dataEncrypted } : {}),
      ...(body.consequences !== undefined ? { consequences: body.consequences } : {}),
      ...(body.measures !== undefined ? { measures: body.measures } : {}),
    }));
    return presentBreach(row);
  });

  const decision = z.strictObject({ reason: z.string().trim().min(10).max(2000) });
  app.post('/api/v1/privacy/breaches/:breachId/decisions', {
    config: access,
    schema: {
      summary: 'Decide, with reasons, whether to notify the authority and the people affected',
      tags: ['privacy'],
      params: breachParams,
      body: z.strictObject({
        authority: decision.extend({ decision: z.enum(['notify', 'not_required']) }).optional(),
        subjects: decision.extend({ decision: z.enum(['notify', 'not_required_low_risk', 'not_required_encrypted', 'not_required_mitigated', 'public_communication']) }).optional(),
      }),
      response: { 200: breachSchema, ...problemResponses(400, 401, 403, 404, 409) },
    },
  }, async (request) => {
    const { authority, subjects } = request.body;
    if (!authority && !subjects) throw new AppError('validation_failed', 'Give the authority decision, the subjects decision, or both.');
    const row = await change(request, `Decided: ${[authority ? `authority ${authority.decision}` : '', subjects ? `subjects ${subjects.decision}` : ''].filter(Boolean).join('; ')}`, 'decided', (current) => {
      if (subjects) checkDecisions(current, subjects.decision);
      return {
        ...(authority ? { authority_decision: authority.decision, authority_reason: authority.reason } : {}),
        ...(subjects ? { subjects_decision: subjects.decision, subjects_reason: subjects.reason } : {}),
      };
    });
    return presentBreach(row);
  });

  app.post('/api/v1/privacy/breaches/:breachId/notified', { config: access, schema: { summary: 'Record that the authority or the people were notified (after 72 hours: with the reasons for the delay)', tags: ['privacy'], params: breachParams, body: z.strictObject({ to: z.enum(['authority', 'subjects']), at: timestamp, lateReason: z.string().trim().min(10).max(2000).optional() }), response: { 200: breachSchema, ...problemResponses(400, 401, 403, 404, 409) } } }, async (request) => {
    const { to, lateReason } = request.body;
    const at = new Date(request.body.at);
    const row = await change(request, `Notified the ${to === 'authority' ? 'supervisory authority' : 'people affected'}`, `notified_${to}`, (current) => {
      const decided = to === 'authority' ? current.authority_decision : current.subjects_decision;
      if (decided !== 'notify' && !(to === 'subjects' && decided === 'public_communication')) throw new AppError('invalid_transition', `Decide to notify the ${to} first.`);
      if (at.getTime() < current.aware_at.getTime() || at.getTime() > Date.now() + 60_000) throw new AppError('validation_failed', 'The notification time lies between awareness and now.', [{ path: 'body/at', message: 'between awareAt and now' }]);
      if (to === 'authority' && isLate(current, at) && !lateReason) throw new AppError('validation_failed', 'Notified after 72 hours: give the reasons for the delay (Art. 33(1)).', [{ path: 'body/lateReason', message: 'required after 72 hours' }]);
      return to === 'authority' ? { authority_notified_at: at, ...(lateReason ? { late_reason: lateReason } : {}) } : { subjects_notified_at: at };
    });
    return presentBreach(row);
  });

  app.post('/api/v1/privacy/breaches/:breachId/timeline', { config: access, schema: { summary: 'Add an entry to the timeline', tags: ['privacy'], params: breachParams, body: z.strictObject({ entry: z.string().trim().min(1).max(2000) }), response: { 200: breachSchema, ...problemResponses(400, 401, 403, 404, 409) } } }, async (request) => presentBreach(await change(request, request.body.entry, 'timeline_entry', () => ({}))));

  app.post('/api/v1/privacy/breaches/:breachId/close', { config: access, schema: { summary: 'Close a breach once both decisions are made and carried out', tags: ['privacy'], params: breachParams, response: { 200: breachSchema, ...problemResponses(400, 401, 403, 404, 409) } } }, async (request) => {
    const row = await change(request, 'Closed', 'closed', (current) => {
      if (!current.authority_decision || !current.subjects_decision) throw new AppError('invalid_transition', 'Both decisions, with their reasons, come before closing.');
      if (current.authority_decision === 'notify' && !current.authority_notified_at) throw new AppError('invalid_transition', 'The authority is to be notified first.');
      if (current.subjects_decision === 'notify' && !current.subjects_notified_at) throw new AppError('invalid_transition', 'The people affected are to be notified first.');
      return { status: 'closed', closed_at: new Date() };
    });
    return presentBreach(row);
  });

  app.get('/api/v1/privacy/breaches/:breachId/notification', { config: access, schema: { summary: 'The notification text, filled from the register (Art. 33(3) for the authority, Art. 34(2) for the people)', tags: ['privacy'], params: breachParams, querystring: z.strictObject({ to: z.enum(['authority', 'subjects']).default('authority') }), response: { 200: z.string(), ...problemResponses(400, 401, 403, 404) } } }, async (request, reply) => {
    const text = await request.tenantDb.read(async (trx) => {
      const row = await trx.selectFrom('breaches').selectAll().where('id', '=', request.params.breachId).executeTakeFirst();
      if (!row) throw new AppError('not_found');
      const profile = await trx.selectFrom('privacy_profiles').selectAll().executeTakeFirst();
      return notificationText(row, profile, request.query.to);
    });
    return reply.header('content-type', 'text/plain; charset=utf-8').send(text);
  });

  app.get('/api/v1/privacy/reminders', { config: access, schema: { summary: `What needs the privacy officer: agreements and certifications ending within ${REMINDER_DAYS} days, requests and breaches near their deadlines`, tags: ['privacy'], response: { 200: z.object({ items: z.array(z.object({ kind: z.string(), id: z.string(), label: z.string(), dueAt: z.string(), overdue: z.boolean() })) }), ...problemResponses(401, 403) } } }, async (request) => ({
    items: await request.tenantDb.read((trx) => dueReminders(trx)),
  }));
}

/** GET /api/v1/privacy/records-of-processing: the Art. 30 record, generated, as JSON or PDF. */
export async function ropaRoutes(app: App): Promise<void> {
  app.get('/api/v1/privacy/records-of-processing', { config: access, schema: { summary: 'Records of processing activities (Art. 30), generated from campaigns, queues, processors and retention policies; JSON or PDF', tags: ['privacy'], querystring: z.strictObject({ format: z.enum(['json', 'pdf']).default('json') }), response: { 200: z.any(), ...problemResponses(400, 401, 403) } } }, async (request, reply) => {
    const ropa = await request.tenantDb.read((trx) => buildRopa(trx));
    if (request.query.format === 'json') return ropa;
    const pdf = await ropaPdf(ropa);
    return reply.header('content-type', 'application/pdf').header('content-disposition', 'attachment; filename="records-of-processing.pdf"').send(pdf);
  });
}
