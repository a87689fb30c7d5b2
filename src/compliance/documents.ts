import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import contentDisposition from 'content-disposition';
import { sql } from '../db/kysely.ts';
import type { TenantTransaction } from '../db/tenant-db.ts';
import type { FieldCipher } from '../crypto/field-cipher.ts';
import { z } from '../zod.ts';
import { AppError } from '../server/errors.ts';
import { problemResponses, uuidSchema } from '../server/schemas.ts';
import type { App } from '../server/types.ts';
import { recordAuditEvent } from '../audit/audit-event.ts';
import { actorLabel, requestAudit } from '../server/request-audit.ts';
import { limited } from '../server/streamed-upload.ts';
import { loadCatalogue } from './catalogue.ts';

/**
 * The compliance center's documents. Organisational controls (screening, confidentiality
 * agreements, continuity exercises) are evidenced by what the organisation adds: a file or a link,
 * the date the evidence speaks for and the date it expires. Certifications and external audit
 * reports are added the same way and, when the operator shares them, listed in the trust report
 * (title, issuer, dates, SHA-256 of the file — the file itself goes to a buyer on request).
 *
 * Files are checked to be what they claim (PDF, PNG, JPEG or UTF-8 text, at most 10 MiB), sealed
 * under the tenant data key, and never replaced; a document is withdrawn, never deleted.
 */

export const MAX_DOCUMENT_BYTES = 10 * 1024 * 1024;
const MEDIA_TYPES = ['application/pdf', 'image/png', 'image/jpeg', 'text/plain'] as const;
type MediaType = (typeof MEDIA_TYPES)[number];

const day = z.iso.date();
// eslint-disable-next-line no-control-regex -- control characters are what a file name may not hold
const fileName = z.string().trim().min(1).max(200).regex(/^[^/\\\u0000-\u001f\u007f]+$/).refine((name) => !/[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/u.test(name), 'no control or format characters (such as right-to-left overrides)');
const EXTENSIONS: Record<MediaType, string> = { 'application/pdf': 'pdf', 'image/png': 'png', 'image/jpeg': 'jpg', 'text/plain': 'txt' };

/** The name a file is kept and offered under: the uploader's, with the extension of the type its bytes proved (never `.html`, `.bat`…). */
function storedName(name: string, type: MediaType): string {
  const base = [...name.replace(/\.[^.]*$/, '')].slice(0, 190).join('') || 'document';
  return `${base}.${EXTENSIONS[type]}`;
}

/**
 * The uploader's name for the file, from the upload's `Content-Disposition` header (RFC 6266,
 * `filename*` for names beyond ASCII), never from the URL: a name can name a person, and URLs are
 * written to the access logs of proxies and servers beyond Ringvakt's reach. In the database the
 * name is kept like the document's title: an organisational record behind `audit:read`.
 */
function uploadedName(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  // Node reads header bytes as Latin-1: raw UTF-8 in a plain `filename` would be stored garbled.
  if (/[^\u0020-\u007e]/.test(header)) throw new AppError('validation_failed', 'The Content-Disposition header must be ASCII: give a name beyond ASCII as filename*=UTF-8\'\'… (RFC 8187).', [{ path: 'headers/content-disposition', message: 'not ASCII' }]);
  let name: string | undefined;
  try {
    name = contentDisposition.parse(header).parameters['filename'];
  } catch {
    throw new AppError('validation_failed', 'The Content-Disposition header is not valid (RFC 6266).', [{ path: 'headers/content-disposition', message: 'not a valid Content-Disposition' }]);
  }
  if (name === undefined) return undefined;
  const checked = fileName.safeParse(name);
  if (!checked.success) throw new AppError('validation_failed', 'The file name is not allowed.', [{ path: 'headers/content-disposition', message: checked.error.issues[0]?.message ?? 'not allowed' }]);
  return checked.data;
}

/** RFC 5987 encoding for `filename*`: everything but unreserved characters percent-encoded. */
const rfc5987 = (value: string) => encodeURIComponent(value).replace(/['()*]/g, (char) => `%${char.charCodeAt(0).toString(16).toUpperCase()}`);
const documentKind = z.enum(['control_evidence', 'certification', 'audit_report']);
export const documentSchema = z.object({
  id: z.string(),
  kind: documentKind,
  controlId: z.string().nullable(),
  title: z.string(),
  issuer: z.string().nullable(),
  url: z.string().nullable(),
  file: z.object({ name: z.string().nullable(), mediaType: z.string(), bytes: z.number(), sha256: z.string() }).nullable(),
  evidenceDate: z.string(),
  expiresOn: z.string(),
  current: z.boolean(),
  sharedInReport: z.boolean(),
  addedBy: z.string(),
  addedAt: z.string(),
  withdrawnAt: z.string().nullable(),
});
export type ComplianceDocument = z.infer<typeof documentSchema>;

const createBody = z
  .strictObject({
    kind: documentKind,
    controlId: z.string().max(20).optional(),
    title: z.string().trim().min(1).max(200),
    issuer: z.string().trim().min(1).max(200).optional(),
    url: z.url({ protocol: /^https$/ }).max(2000).optional(),
    evidenceDate: day,
    expiresOn: day,
    sharedInReport: z.boolean().default(false),
  })
  .superRefine((body, context) => {
    if (body.kind === 'control_evidence' && !body.controlId) context.addIssue({ code: 'custom', path: ['controlId'], message: 'evidence names the control it evidences' });
    if (body.kind !== 'control_evidence' && body.controlId) context.addIssue({ code: 'custom', path: ['controlId'], message: 'only control evidence names a control' });
    if (body.kind !== 'control_evidence' && !body.issuer) context.addIssue({ code: 'custom', path: ['issuer'], message: 'a certification or audit report names who issued it' });
    if (body.expiresOn <= body.evidenceDate) context.addIssue({ code: 'custom', path: ['expiresOn'], message: 'after the evidence date' });
    // Evidence is renewed: at most three years (a certification's cycle), never "forever".
    else if (Date.parse(body.expiresOn) - Date.parse(body.evidenceDate) > 3 * 366 * 86_400_000) context.addIssue({ code: 'custom', path: ['expiresOn'], message: 'at most three years after the evidence date' });
  });

/** Today as the organisation's calendar sees it: UTC dates, as the API takes them. */
const today = (now: Date) => now.toISOString().slice(0, 10);

type Row = {
  id: string;
  kind: ComplianceDocument['kind'];
  control_id: string | null;
  title: string;
  issuer: string | null;
  url: string | null;
  file_name: string | null;
  media_type: string | null;
  file_bytes: number | null;
  file_sha256: Buffer | null;
  evidence_date: string;
  expires_on: string;
  shared_in_report: boolean;
  added_by: string;
  added_at: Date;
  withdrawn_at: Date | null;
};

function present(row: Row, now = new Date()): ComplianceDocument {
  return {
    id: row.id,
    kind: row.kind,
    controlId: row.control_id,
    title: row.title,
    issuer: row.issuer,
    url: row.url,
    file: row.file_sha256 && row.media_type && row.file_bytes ? { name: row.file_name, mediaType: row.media_type, bytes: row.file_bytes, sha256: row.file_sha256.toString('hex') } : null,
    evidenceDate: row.evidence_date,
    expiresOn: row.expires_on,
    current: isCurrent(row, now),
    sharedInReport: row.shared_in_report,
    addedBy: row.added_by,
    addedAt: row.added_at.toISOString(),
    withdrawnAt: row.withdrawn_at?.toISOString() ?? null,
  };
}

/** In force today: not withdrawn, dated no later than today, not expired, and backed by a file or a link. */
function isCurrent(row: Pick<Row, 'withdrawn_at' | 'evidence_date' | 'expires_on' | 'file_sha256' | 'url'>, now: Date): boolean {
  return row.withdrawn_at === null && row.evidence_date <= today(now) && row.expires_on >= today(now) && (row.file_sha256 !== null || row.url !== null);
}

/** The documents of a tenant (not their files), newest first; or the one with `id`, withdrawn or not. */
export async function listDocuments(trx: TenantTransaction, options: { includeWithdrawn?: boolean; id?: string } = {}): Promise<Row[]> {
  let query = trx
    .selectFrom('compliance_documents')
    .select(['id', 'kind', 'control_id', 'title', 'issuer', 'url', 'file_name', 'media_type', 'file_bytes', 'file_sha256', 'shared_in_report', 'added_by', 'added_at', 'withdrawn_at'])
    .select([sql<string>`evidence_date::text`.as('evidence_date'), sql<string>`expires_on::text`.as('expires_on')])
    .orderBy('added_at', 'desc')
    .orderBy('id');
  if (options.id) query = query.where('id', '=', options.id);
  else if (!options.includeWithdrawn) query = query.where('withdrawn_at', 'is', null);
  return query.execute();
}

/** Per control: its current evidence (for the control views, the report and the evidence check). */
export async function currentEvidence(trx: TenantTransaction, now = new Date()): Promise<Map<string, ComplianceDocument[]>> {
  const rows = (await listDocuments(trx)).filter((row) => row.kind === 'control_evidence' && isCurrent(row, now));
  const byControl = new Map<string, ComplianceDocument[]>();
  for (const row of rows) byControl.set(row.control_id as string, [...(byControl.get(row.control_id as string) ?? []), present(row, now)]);
  return byControl;
}

/** The certifications and audit reports the operator shares in the trust report, current ones only. */
export async function sharedAttestations(trx: TenantTransaction, now = new Date()): Promise<ComplianceDocument[]> {
  return (await listDocuments(trx)).filter((row) => row.kind !== 'control_evidence' && row.shared_in_report && isCurrent(row, now)).map((row) => present(row, now));
}

/** One document as the API shows it, once a write has changed it. */
async function documentAfter(trx: TenantTransaction, id: string): Promise<Row> {
  const [row] = await listDocuments(trx, { id });
  if (!row) throw new AppError('not_found', 'No such document.');
  return row;
}

/** Whether a file's first bytes are what its declared type says, and text is UTF-8 without control bytes. */
function matchesType(file: Buffer, type: MediaType): boolean {
  switch (type) {
    case 'application/pdf':
      return file.subarray(0, 5).toString('latin1') === '%PDF-';
    case 'image/png':
      return file.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));
    case 'image/jpeg':
      return file[0] === 0xff && file[1] === 0xd8 && file[2] === 0xff;
    case 'text/plain': {
      // eslint-disable-next-line no-control-regex -- the control bytes are what is refused
      return !/[\u0000-\u0008\u000e-\u001f]/.test(file.toString('utf8')) && Buffer.from(file.toString('utf8'), 'utf8').equals(file);
    }
  }
}

async function readAll(body: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of body) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

const where = (id: string) => ({ table: 'compliance_documents', recordId: id, field: 'file' });

export async function complianceDocumentRoutes(app: App, options: { cipher: FieldCipher }): Promise<void> {
  app.addContentTypeParser([...MEDIA_TYPES], (_request, payload, done) => done(null, payload));
  const read = { access: 'audit:read' } as const;
  const manage = { access: 'security:manage' } as const;
  const params = z.strictObject({ documentId: uuidSchema });

  app.get('/api/v1/compliance/documents', { config: read, schema: { summary: 'Manual evidence, certifications and audit reports (withdrawn ones with ?withdrawn=true)', tags: ['compliance'], querystring: z.strictObject({ withdrawn: z.enum(['true', 'false']).default('false') }), response: { 200: z.object({ items: z.array(documentSchema) }), ...problemResponses(400, 401, 403) } } }, async (request) => {
    const rows = await request.tenantDb.read((trx) => listDocuments(trx, { includeWithdrawn: request.query.withdrawn === 'true' }));
    return { items: rows.map((row) => present(row)) };
  });

  app.post('/api/v1/compliance/documents', { config: manage, schema: { summary: 'Add evidence for a control, a certification or an audit report (the file follows with PUT …/file, or give a link)', tags: ['compliance'], body: createBody, response: { 201: documentSchema, ...problemResponses(400, 401, 403) } } }, async (request, reply) => {
    const body = request.body;
    if (body.controlId && !loadCatalogue().controls.some((control) => control.id === body.controlId)) throw new AppError('validation_failed', 'No such control in the catalogue.', [{ path: 'body/controlId', message: 'unknown control' }]);
    const row = await request.tenantDb.transaction(async (trx) => {
      const created = await trx
        .insertInto('compliance_documents')
        .values({ kind: body.kind, control_id: body.controlId ?? null, title: body.title, issuer: body.issuer ?? null, url: body.url ?? null, evidence_date: body.evidenceDate, expires_on: body.expiresOn, shared_in_report: body.sharedInReport, added_by: actorLabel(request) })
        .returning('id')
        .executeTakeFirstOrThrow();
      await recordAuditEvent(trx, { ...requestAudit(request), action: 'compliance.document_add', outcome: 'success', target: { type: 'compliance_document', id: created.id }, details: { kind: body.kind, control: body.controlId ?? null, evidenceDate: body.evidenceDate, expiresOn: body.expiresOn, link: body.url !== undefined, shared: body.sharedInReport } });
      return documentAfter(trx, created.id);
    });
    return reply.code(201).send(present(row));
  });

  app.put('/api/v1/compliance/documents/:documentId/file', { config: { ...manage, streamedBody: true }, bodyLimit: MAX_DOCUMENT_BYTES, schema: { summary: 'The document’s file: PDF, PNG, JPEG or plain text, at most 10 MiB; given once, never replaced. Its name, if any, in a Content-Disposition header (`attachment; filename*=UTF-8\'\'…`), never in the URL', tags: ['compliance'], params, response: { 200: documentSchema, ...problemResponses(400, 401, 403, 404, 409, 413, 415) } } }, async (request) => {
    const name = uploadedName(request.headers['content-disposition']);
    // Another tenant's document, or none: 404 before anything about the body.
    const known = await request.tenantDb.read((trx) => trx.selectFrom('compliance_documents').select('id').where('id', '=', request.params.documentId).executeTakeFirst());
    if (!known) throw new AppError('not_found', 'No such document.');
    const type = (request.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase() as MediaType;
    const body = request.body as Readable | undefined;
    if (!MEDIA_TYPES.includes(type) || !body || typeof body.pipe !== 'function') throw new AppError('unsupported_media_type', 'Send the file as application/pdf, image/png, image/jpeg or text/plain.');
    const file = await readAll(limited(body, MAX_DOCUMENT_BYTES));
    if (file.length === 0) throw new AppError('validation_failed', 'The file is empty.', [{ path: 'body', message: 'empty' }]);
    if (!matchesType(file, type)) throw new AppError('validation_failed', `The file is not ${type}.`, [{ path: 'body', message: `not ${type}` }]);
    const sha256 = createHash('sha256').update(file).digest();
    const row = await request.tenantDb.transaction(async (trx) => {
      const existing = await trx.selectFrom('compliance_documents').select(['id', 'file_sha256', 'withdrawn_at']).where('id', '=', request.params.documentId).forUpdate().executeTakeFirst();
      if (!existing) throw new AppError('not_found', 'No such document.');
      if (existing.withdrawn_at) throw new AppError('conflict', 'The document is withdrawn.');
      if (existing.file_sha256) throw new AppError('conflict', 'The document has its file already: a file is never replaced. Withdraw the document and add a new one.');
      const sealed = await options.cipher.encryptBytes(trx, where(existing.id), file);
      await trx.updateTable('compliance_documents').set({ file_ciphertext: sealed, file_sha256: sha256, media_type: type, file_bytes: file.length, file_name: name ? storedName(name, type) : null }).where('id', '=', existing.id).execute();
      await recordAuditEvent(trx, { ...requestAudit(request), action: 'compliance.document_upload', outcome: 'success', target: { type: 'compliance_document', id: existing.id }, details: { mediaType: type, bytes: file.length, sha256: sha256.toString('hex') } });
      return documentAfter(trx, existing.id);
    });
    return present(row);
  });

  app.get('/api/v1/compliance/documents/:documentId/file', { config: read, schema: { summary: 'Download a document’s file (checked against its SHA-256; every download is audited)', tags: ['compliance'], params, response: { 200: z.any().describe('the file'), ...problemResponses(401, 403, 404) } } }, async (request, reply) => {
    const file = await request.tenantDb.transaction(async (trx) => {
      const row = await trx.selectFrom('compliance_documents').select(['id', 'file_ciphertext', 'file_sha256', 'media_type', 'file_name']).where('id', '=', request.params.documentId).executeTakeFirst();
      if (!row?.file_ciphertext || !row.file_sha256 || !row.media_type) throw new AppError('not_found', 'No such document with a file.');
      const plain = await options.cipher.decryptBytes(trx, where(row.id), row.file_ciphertext);
      // Sealed with its place (tenant, table, id, field): it can only be this document's file; the digest says it is the one added.
      if (!createHash('sha256').update(plain).digest().equals(row.file_sha256)) throw new Error('compliance document file does not match its digest');
      await recordAuditEvent(trx, { ...requestAudit(request), action: 'compliance.document_download', outcome: 'success', target: { type: 'compliance_document', id: row.id }, details: { bytes: plain.length } });
      return { plain, type: row.media_type, name: row.file_name };
    });
    // The stored name is the uploader's with the proven type's extension: offered only in its RFC 5987 form, never raw in the header.
    return reply
      .type(file.type)
      .header('cache-control', 'no-store')
      .header('content-disposition', `attachment; filename="document.${EXTENSIONS[file.type]}"${file.name ? `; filename*=UTF-8''${rfc5987(storedName(file.name, file.type))}` : ''}`)
      .send(file.plain);
  });

  app.post('/api/v1/compliance/documents/:documentId/share', { config: manage, schema: { summary: 'Share a certification or audit report in the trust report, or stop sharing it', tags: ['compliance'], params, body: z.strictObject({ shared: z.boolean() }), response: { 200: documentSchema, ...problemResponses(400, 401, 403, 404, 409) } } }, async (request) => {
    const row = await request.tenantDb.transaction(async (trx) => {
      const existing = await trx.selectFrom('compliance_documents').select(['id', 'kind', 'withdrawn_at']).where('id', '=', request.params.documentId).forUpdate().executeTakeFirst();
      if (!existing) throw new AppError('not_found', 'No such document.');
      if (existing.withdrawn_at) throw new AppError('conflict', 'The document is withdrawn.');
      if (existing.kind === 'control_evidence') throw new AppError('conflict', 'Control evidence is summarised in the report, not shared as a document.');
      await trx.updateTable('compliance_documents').set({ shared_in_report: request.body.shared }).where('id', '=', existing.id).execute();
      await recordAuditEvent(trx, { ...requestAudit(request), action: 'compliance.document_share', outcome: 'success', target: { type: 'compliance_document', id: existing.id }, details: { shared: request.body.shared } });
      return documentAfter(trx, existing.id);
    });
    return present(row);
  });

  app.post('/api/v1/compliance/documents/:documentId/withdraw', { config: manage, schema: { summary: 'Withdraw a document: it no longer evidences anything, and stays on the record', tags: ['compliance'], params, response: { 200: documentSchema, ...problemResponses(401, 403, 404, 409) } } }, async (request) => {
    const row = await request.tenantDb.transaction(async (trx) => {
      const existing = await trx.selectFrom('compliance_documents').select(['id', 'withdrawn_at']).where('id', '=', request.params.documentId).forUpdate().executeTakeFirst();
      if (!existing) throw new AppError('not_found', 'No such document.');
      if (existing.withdrawn_at) throw new AppError('conflict', 'The document is withdrawn already.');
      await trx.updateTable('compliance_documents').set({ withdrawn_at: new Date(), withdrawn_by: actorLabel(request), shared_in_report: false }).where('id', '=', existing.id).execute();
      await recordAuditEvent(trx, { ...requestAudit(request), action: 'compliance.document_withdraw', outcome: 'success', target: { type: 'compliance_document', id: existing.id } });
      return documentAfter(trx, existing.id);
    });
    return present(row);
  });
}
