import { randomUUID } from 'node:crypto';
import { z } from '../zod.ts';
import type { App } from '../server/types.ts';
import { AppError } from '../server/errors.ts';
import { problemResponses, uuidSchema } from '../server/schemas.ts';
import { recordAuditEvent } from '../audit/audit-event.ts';
import { actorLabel, requestAudit } from '../server/request-audit.ts';
import type { SystemDb } from '../db/system-db.ts';
import { loadContacts, setContactStatus, type ContactsCrypto } from '../modules/contacts/contacts.service.ts';
import { normaliseEmail } from '../modules/contacts/phone.ts';
import { addSuppression } from '../modules/suppression/suppression.service.ts';
import { eraseSubject, type ErasureLedgerMirror } from './erasure.ts';
import { buildBundle, EXPORT_LIFETIME_MS, newDownloadToken, openBundle, requireExportable, sealBundle, tokenHash } from './export-bundle.ts';
import { addRequestEvent, assignRequest, closeRequest, createRequest, deadlineOf, extendRequest, loadRequest, openVerificationNote, requireVerified, verifyRequest, type RequestRow } from './requests.ts';

const kinds = ['access', 'portability', 'rectification', 'restriction', 'objection', 'erasure'] as const;
const channels = ['email', 'phone', 'letter', 'web', 'in_person', 'other'] as const;
const methods = ['known_channel', 'document', 'callback', 'signed_letter', 'account_login', 'other'] as const;

const createBody = z.strictObject({
  kind: z.enum(kinds),
  channel: z.enum(channels),
  requester: z.strictObject({
    name: z.string().trim().min(1).max(200),
    email: z.string().max(254).optional(),
    phone: z.string().max(40).optional(),
    address: z.string().max(500).optional(),
  }),
  identifiers: z.strictObject({
    phone: z.string().min(1).max(40).optional(),
    region: z.string().regex(/^[A-Z]{2}$/).optional(),
    email: z.string().min(3).max(254).optional(),
    externalId: z.string().trim().min(1).max(200).optional(),
  }),
  receivedAt: z.iso.datetime({ offset: true }).optional(),
  officerId: uuidSchema.optional(),
});

const requestSchema = z.object({
  id: z.string(),
  reference: z.string(),
  kind: z.enum(kinds),
  status: z.enum(['received', 'verified', 'completed', 'rejected']),
  channel: z.enum(channels),
  receivedAt: z.string(),
  dueAt: z.string(),
  overdue: z.boolean(),
  daysLeft: z.number().int(),
  extensionMonths: z.number().int(),
  extensionReason: z.string().nullable(),
  officerId: z.string().nullable(),
  verifiedAt: z.string().nullable(),
  verificationMethod: z.enum(methods).nullable(),
  /** Known only once the identity is verified. */
  subjectsFound: z.number().int().nullable(),
  closedAt: z.string().nullable(),
  outcome: z.string().nullable(),
});

function present(row: RequestRow): z.infer<typeof requestSchema> {
  const deadline = deadlineOf(row);
  return {
    id: row.id,
    reference: row.reference,
    kind: row.kind,
    status: row.status,
    channel: row.channel,
    receivedAt: row.received_at.toISOString(),
    dueAt: deadline.dueAt,
    overdue: deadline.overdue,
    daysLeft: deadline.daysLeft,
    extensionMonths: row.extension_months,
    extensionReason: row.extension_reason,
    officerId: row.officer_id,
    verifiedAt: row.verified_at?.toISOString() ?? null,
    verificationMethod: row.verification_method,
    subjectsFound: row.status === 'received' ? null : row.subject_ids.length,
    closedAt: row.closed_at?.toISOString() ?? null,
    outcome: row.outcome,
  };
}

const params = z.strictObject({ requestId: uuidSchema });
const access = { access: 'privacy:manage' } as const;

/**
 * /api/v1/privacy/requests: data-subject requests as cases, and what answers them — the export
 * bundle, erasure, restriction and objection. Only `privacy:manage` (privacy officers, the owner);
 * agents, supervisors and administrators cannot act on them. Every step is audited and on the
 * case's timeline.
 */
export async function privacyRequestRoutes(app: App, options: { crypto: ContactsCrypto; systemDb: SystemDb; mirror?: ErasureLedgerMirror | undefined }): Promise<void> {
  const { crypto } = options;

  app.post('/api/v1/privacy/requests', { config: access, schema: { summary: 'Record a data-subject request (the answer says nothing of whether the subject exists)', tags: ['privacy'], body: createBody, response: { 201: requestSchema, ...problemResponses(400, 401, 403, 409) } } }, async (request, reply) => {
    const receivedAt = request.body.receivedAt ? new Date(request.body.receivedAt) : new Date();
    // The month runs from receipt: a request cannot be received in the future.
    if (receivedAt.getTime() > Date.now() + 60_000) throw new AppError('validation_failed', 'A request is received in the past or now.', [{ path: 'body/receivedAt', message: 'not in the future' }]);
    const row = await request.tenantDb.transaction(async (trx) => {
      const created = await createRequest(trx, crypto, { ...request.body, receivedAt }, actorLabel(request));
      await recordAuditEvent(trx, { ...requestAudit(request), action: 'privacy.request.received', outcome: 'success', target: { type: 'privacy_request', id: created.id }, details: { reference: created.reference, kind: created.kind, channel: created.channel } });
      return created;
    });
    return reply.code(201).send(present(row));
  });

  app.get('/api/v1/privacy/requests', { config: access, schema: { summary: 'Requests, open ones first by deadline', tags: ['privacy'], querystring: z.strictObject({ status: z.enum(['open', 'closed', 'all']).default('open') }), response: { 200: z.object({ items: z.array(requestSchema) }), ...problemResponses(400, 401, 403) } } }, async (request) => {
    const rows = await request.tenantDb.read(async (trx) => {
      let query = trx.selectFrom('privacy_requests').selectAll().orderBy('due_at').limit(500);
      if (request.query.status === 'open') query = query.where('status', 'in', ['received', 'verified']);
      if (request.query.status === 'closed') query = query.where('status', 'in', ['completed', 'rejected']);
      return query.execute();
    });
    return { items: rows.map(present) };
  });

  app.get('/api/v1/privacy/requests/:requestId', { config: access, schema: { summary: 'One request with its timeline', tags: ['privacy'], params, response: { 200: requestSchema.extend({ verificationNote: z.string().nullable(), timeline: z.array(z.object({ at: z.string(), actor: z.string(), step: z.string(), details: z.record(z.string(), z.unknown()) })) }), ...problemResponses(400, 401, 403, 404) } } }, async (request) =>
    request.tenantDb.read(async (trx) => {
      const row = await loadRequest(trx, request.params.requestId);
      const events = await trx.selectFrom('privacy_request_events').select(['at', 'actor', 'step', 'details']).where('request_id', '=', row.id).orderBy('id').execute();
      return { ...present(row), verificationNote: await openVerificationNote(trx, crypto, row), timeline: events.map((event) => ({ at: event.at.toISOString(), actor: event.actor, step: event.step, details: event.details })) };
    }),
  );

  app.post('/api/v1/privacy/requests/:requestId/verify', { config: { ...access, stepUp: 'sessions' }, schema: { summary: "Record how the requester's identity was verified; then the subject is looked up", tags: ['privacy'], params, body: z.strictObject({ method: z.enum(methods), note: z.string().max(1000).optional() }), response: { 200: requestSchema, ...problemResponses(400, 401, 403, 404, 409) } } }, async (request) => {
    const row = await request.tenantDb.transaction(async (trx) => {
      const verified = await verifyRequest(trx, crypto, request.params.requestId, request.body, actorLabel(request));
      await recordAuditEvent(trx, { ...requestAudit(request), action: 'privacy.request.verified', outcome: 'success', target: { type: 'privacy_request', id: verified.id }, details: { method: request.body.method, subjectsFound: verified.subject_ids.length } });
      return verified;
    });
    return present(row);
  });

  app.post('/api/v1/privacy/requests/:requestId/extend', { config: access, schema: { summary: 'Extend the deadline by one or two further months, with the reason', tags: ['privacy'], params, body: z.strictObject({ months: z.union([z.literal(1), z.literal(2)]), reason: z.string().trim().min(10).max(1000) }), response: { 200: requestSchema, ...problemResponses(400, 401, 403, 404, 409) } } }, async (request) => {
    const row = await request.tenantDb.transaction(async (trx) => {
      const extended = await extendRequest(trx, request.params.requestId, request.body.months, request.body.reason, actorLabel(request));
      await recordAuditEvent(trx, { ...requestAudit(request), action: 'privacy.request.extended', outcome: 'success', target: { type: 'privacy_request', id: extended.id }, details: { months: request.body.months, dueAt: extended.due_at.toISOString() } });
      return extended;
    });
    return present(row);
  });

  app.post('/api/v1/privacy/requests/:requestId/assign', { config: access, schema: { summary: 'Put a privacy officer in charge', tags: ['privacy'], params, body: z.strictObject({ officerId: uuidSchema }), response: { 200: requestSchema, ...problemResponses(400, 401, 403, 404, 409) } } }, async (request) => {
    const row = await request.tenantDb.transaction(async (trx) => {
      const assigned = await assignRequest(trx, request.params.requestId, request.body.officerId, actorLabel(request));
      await recordAuditEvent(trx, { ...requestAudit(request), action: 'privacy.request.assigned', outcome: 'success', target: { type: 'privacy_request', id: assigned.id }, details: { officerId: request.body.officerId } });
      return assigned;
    });
    return present(row);
  });

  app.post('/api/v1/privacy/requests/:requestId/close', { config: access, schema: { summary: 'Complete or reject the request, with the outcome told to the requester', tags: ['privacy'], params, body: z.strictObject({ status: z.enum(['completed', 'rejected']), outcome: z.string().trim().min(1).max(1000) }), response: { 200: requestSchema, ...problemResponses(400, 401, 403, 404, 409) } } }, async (request) => {
    const row = await request.tenantDb.transaction(async (trx) => {
      const closed = await closeRequest(trx, request.params.requestId, request.body.status, request.body.outcome, actorLabel(request));
      await recordAuditEvent(trx, { ...requestAudit(request), action: `privacy.request.${request.body.status}`, outcome: 'success', target: { type: 'privacy_request', id: closed.id }, details: { overdue: deadlineOf(closed).overdue } });
      return closed;
    });
    return present(row);
  });

  app.post('/api/v1/privacy/requests/:requestId/export', { config: { ...access, stepUp: 'sessions' }, schema: { summary: 'Build the encrypted export bundle; the answer carries its single-use download token, shown once', tags: ['privacy'], params, response: { 201: z.object({ exportId: z.string(), token: z.string(), expiresAt: z.string(), files: z.number().int(), bytes: z.number().int() }), ...problemResponses(400, 401, 403, 404, 409) } } }, async (request, reply) => {
    const result = await request.tenantDb.transaction(async (trx) => {
      const row = await loadRequest(trx, request.params.requestId, { forUpdate: true });
      requireVerified(row);
      requireExportable(row);
      const profile = await trx.selectFrom('privacy_profiles').select('controller_name').executeTakeFirst();
      const { zip, files } = await buildBundle(trx, crypto, row, profile?.controller_name ?? null);
      const { token, key, tokenSha256 } = newDownloadToken();
      const exportId = randomUUID();
      const expiresAt = new Date(Date.now() + EXPORT_LIFETIME_MS);
      await trx
        .insertInto('privacy_exports')
        .values({ id: exportId, request_id: row.id, token_sha256: tokenSha256, bundle_sealed: sealBundle(key, zip, trx.tenantId, exportId), bundle_bytes: zip.length, files, created_by: actorLabel(request), expires_at: expiresAt })
        .execute();
      await addRequestEvent(trx, row.id, actorLabel(request), 'exported', { exportId, files, bytes: zip.length });
      await recordAuditEvent(trx, { ...requestAudit(request), action: 'privacy.export.created', outcome: 'success', target: { type: 'privacy_request', id: row.id }, details: { exportId, subjects: row.subject_ids.length, files, bytes: zip.length } });
      return { exportId, token, expiresAt: expiresAt.toISOString(), files, bytes: zip.length };
    });
    return reply.code(201).send(result);
  });

  // The requester downloads without an account: the token (in the body, never in a URL) is the
  // whole credential, and the bundle's key. Single use; expired or used → the same answer.
  app.post('/api/v1/privacy/downloads', { config: { access: 'public' }, schema: { summary: 'Download an export bundle once with its token (a ZIP)', tags: ['privacy'], body: z.strictObject({ token: z.string().regex(/^[A-Za-z0-9_-]{43}$/) }), response: { 200: z.any(), ...problemResponses(400, 410) } } }, async (request, reply) => {
    const hash = tokenHash(request.body.token);
    const tenantId = await options.systemDb.privacyExportTenant(hash);
    if (!tenantId) throw new AppError('download_link_invalid');
    const bundle = await options.systemDb.inTenant(tenantId).transaction(async (trx) => {
      const row = await trx.selectFrom('privacy_exports').selectAll().where('token_sha256', '=', hash).forUpdate().executeTakeFirst();
      const fresh = row && row.bundle_sealed && row.downloaded_at === null && row.expires_at.getTime() > Date.now();
      if (!row || !fresh || !row.bundle_sealed) {
        if (row) await recordAuditEvent(trx, { actor: { type: 'anonymous', id: 'download' }, sourceIp: request.ip, requestId: request.id, action: 'privacy.export.downloaded', outcome: 'denied', target: { type: 'privacy_export', id: row.id }, details: { reason: row.downloaded_at ? 'used' : 'expired' } });
        return undefined;
      }
      const zip = openBundle(request.body.token, row.bundle_sealed, tenantId, row.id);
      await trx.updateTable('privacy_exports').set({ downloaded_at: new Date(), bundle_sealed: null }).where('id', '=', row.id).execute();
      await addRequestEvent(trx, row.request_id, 'requester', 'downloaded', { exportId: row.id });
      await recordAuditEvent(trx, { actor: { type: 'anonymous', id: 'download' }, sourceIp: request.ip, requestId: request.id, action: 'privacy.export.downloaded', outcome: 'success', target: { type: 'privacy_export', id: row.id }, details: { bytes: zip.length } });
      return zip;
    });
    if (!bundle) throw new AppError('download_link_invalid');
    return reply
      .header('content-type', 'application/zip')
      .header('content-disposition', 'attachment; filename="personal-data.zip"')
      .header('cache-control', 'no-store')
      .send(bundle);
  });

  app.post('/api/v1/privacy/requests/:requestId/erase', { config: { ...access, stepUp: 'sessions' }, schema: { summary: "Erase the request's subjects (crypto-shredding, erasure ledger); refused whole under a legal hold or during a call", tags: ['privacy'], params, response: { 200: z.object({ erased: z.number().int(), recordingsDeleted: z.number().int() }), ...problemResponses(400, 401, 403, 404, 409) } } }, async (request) =>
    request.tenantDb.transaction(async (trx) => {
      const row = await loadRequest(trx, request.params.requestId, { forUpdate: true });
      requireVerified(row);
      if (row.kind !== 'erasure') throw new AppError('invalid_transition', `A ${row.kind} request does not erase.`);
      let erased = 0;
      let recordingsDeleted = 0;
      // All or none: one subject under a legal hold stops the whole request, with the reason.
      for (const subjectId of row.subject_ids) {
        const outcome = await eraseSubject(trx, crypto, subjectId, { reason: 'request', requestId: row.id, mirror: options.mirror });
        if (outcome.erased) erased += 1;
        recordingsDeleted += outcome.recordingsDeleted;
        if (outcome.erased) await recordAuditEvent(trx, { ...requestAudit(request), action: 'contact.erase', outcome: 'success', target: { type: 'contact', id: subjectId }, details: { method: 'crypto_shredding', request: row.reference, recordingsDeleted: outcome.recordingsDeleted } });
      }
      await addRequestEvent(trx, row.id, actorLabel(request), 'erased', { subjects: erased, recordingsDeleted });
      return { erased, recordingsDeleted };
    }),
  );

  app.post('/api/v1/privacy/requests/:requestId/restrict', { config: access, schema: { summary: "Restrict the subjects' processing: kept, but never dialed, exported or used", tags: ['privacy'], params, response: { 200: z.object({ restricted: z.number().int() }), ...problemResponses(400, 401, 403, 404, 409) } } }, async (request) =>
    request.tenantDb.transaction(async (trx) => {
      const row = await loadRequest(trx, request.params.requestId, { forUpdate: true });
      requireVerified(row);
      if (row.kind !== 'restriction') throw new AppError('invalid_transition', `A ${row.kind} request does not restrict.`);
      let restricted = 0;
      for (const subjectId of row.subject_ids) {
        const current = await trx.selectFrom('contacts').select('status').where('id', '=', subjectId).executeTakeFirst();
        if (!current || current.status === 'erased' || current.status === 'restricted') continue;
        await setContactStatus(trx, subjectId, 'restricted');
        restricted += 1;
        await recordAuditEvent(trx, { ...requestAudit(request), action: 'contact.status', outcome: 'success', target: { type: 'contact', id: subjectId }, details: { from: current.status, to: 'restricted', request: row.reference } });
      }
      await addRequestEvent(trx, row.id, actorLabel(request), 'restricted', { subjects: restricted });
      return { restricted };
    }),
  );

  app.post('/api/v1/privacy/requests/:requestId/object', { config: access, schema: { summary: "Honour an objection to direct marketing: every number and address of the subjects is suppressed at once", tags: ['privacy'], params, response: { 200: z.object({ suppressed: z.number().int() }), ...problemResponses(400, 401, 403, 404, 409) } } }, async (request) =>
    request.tenantDb.transaction(async (trx) => {
      const row = await loadRequest(trx, request.params.requestId, { forUpdate: true });
      requireVerified(row);
      if (row.kind !== 'objection') throw new AppError('invalid_transition', `A ${row.kind} request is not an objection.`);
      const contacts = await loadContacts(trx, crypto, row.subject_ids);
      let suppressed = 0;
      for (const [subjectId, contact] of contacts) {
        if (contact.row.status === 'erased') continue;
        const values: { channel: 'phone' | 'email'; value: string }[] = contact.data.phones.map((phone) => ({ channel: 'phone' as const, value: phone.e164 }));
        const email = contact.data.email === null ? undefined : normaliseEmail(contact.data.email);
        if (email) values.push({ channel: 'email', value: email });
        for (const value of values) {
          await addSuppression(trx, crypto, { ...value, scope: 'tenant', reason: 'objection', source: `privacy request ${row.reference}`, contactId: subjectId, createdBy: actorLabel(request) });
          suppressed += 1;
        }
        if (contact.row.status === 'active') await setContactStatus(trx, subjectId, 'do_not_contact');
        await recordAuditEvent(trx, { ...requestAudit(request), action: 'contact.objection', outcome: 'success', target: { type: 'contact', id: subjectId }, details: { suppressed: values.length, request: row.reference } });
      }
      await addRequestEvent(trx, row.id, actorLabel(request), 'objection_honoured', { suppressed });
      return { suppressed };
    }),
  );
}
