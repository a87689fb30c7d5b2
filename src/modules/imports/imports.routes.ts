import { Readable } from 'node:stream';
import { z } from '../../zod.ts';
import { stringify } from '../../csv.ts';
import type { App } from '../../server/types.ts';
import { AppError } from '../../server/errors.ts';
import { problemResponses, uuidSchema } from '../../server/schemas.ts';
import { recordAuditEvent } from '../../audit/audit-event.ts';
import { actorLabel, requestAudit } from '../../server/request-audit.ts';
import type { TenantDb, TenantTransaction } from '../../db/tenant-db.ts';
import type { ContactsCrypto } from '../contacts/contacts.service.ts';
import { CSV_OUT, neutraliseCell } from '../contacts/csv-safety.ts';
import { limited, withUploadSlot } from '../../server/streamed-upload.ts';
import { mappingSchema } from './mapping-schema.ts';
import { MAX_FILE_BYTES, storeUpload } from './import-upload.ts';

const createImportSchema = z.strictObject({
  listId: uuidSchema,
  /** CSV header → target; see the API documentation of import targets. */
  mapping: mappingSchema,
  /** link: a row that matches an existing contact adds it to the list; reject: it is a reject. */
  onExisting: z.enum(['link', 'reject']).default('link'),
  /** skip: a row with a suppressed number is not imported (data minimisation); keep: imported, counted. */
  onSuppressed: z.enum(['skip', 'keep']).default('skip'),
  delimiter: z.enum([',', ';']).optional(),
  /**
   * The lawful basis the organisation holds for every person in the file (where the campaign's
   * jurisdiction requires one, as the Nordic/EU profile does): a grant is recorded for each contact
   * the import creates. An existing contact keeps its own history: an import never overrides a
   * withdrawal or an objection.
   */
  lawfulBasis: z
    .strictObject({
      purpose: z.enum(['sales', 'survey', 'service']),
      basis: z.enum(['consent', 'legitimate_interest', 'contract']),
      /** Where the basis comes from, e.g. "web form, newsletter sign-up 2026". */
      source: z.string().trim().min(1).max(200),
      evidenceRef: z.string().trim().min(1).max(500).optional(),
    })
    .optional(),
});

export const importSchema = z.object({
  id: z.string(),
  listId: z.string(),
  state: z.enum(['awaiting_file', 'queued', 'running', 'done', 'failed', 'cancelled']),
  fileBytes: z.number().int(),
  fileRows: z.number().int(),
  rowsDone: z.number().int(),
  created: z.number().int(),
  linked: z.number().int(),
  rejected: z.number().int(),
  suppressed: z.number().int(),
  rowsPerSecond: z.number().nullable(),
  etaSeconds: z.number().nullable(),
  error: z.object({ code: z.string(), detail: z.string().nullable() }).nullable(),
  createdAt: z.string(),
  startedAt: z.string().nullable(),
  finishedAt: z.string().nullable(),
});

const params = z.strictObject({ importId: uuidSchema });

export async function importView(trx: TenantTransaction, importId: string) {
  const row = await trx.selectFrom('contact_imports').selectAll().where('id', '=', importId).executeTakeFirst();
  if (!row) throw new AppError('not_found');
  const done = Number(row.rows_done);
  const total = Number(row.file_rows);
  const end = row.finished_at ?? new Date();
  const seconds = row.started_at ? Math.max(0.001, (end.getTime() - row.started_at.getTime()) / 1000) : null;
  const rate = seconds && done > 0 ? done / seconds : null;
  return {
    id: row.id,
    listId: row.list_id,
    state: row.state,
    fileBytes: Number(row.file_bytes),
    fileRows: total,
    rowsDone: done,
    created: Number(row.rows_created),
    linked: Number(row.rows_linked),
    rejected: Number(row.rows_rejected),
    suppressed: Number(row.rows_suppressed),
    rowsPerSecond: rate === null ? null : Math.round(rate),
    etaSeconds: rate && (row.state === 'running' || row.state === 'queued') ? Math.ceil((total - done) / rate) : row.state === 'done' ? 0 : null,
    error: row.error_code ? { code: row.error_code, detail: row.error_detail } : null,
    createdAt: row.created_at.toISOString(),
    startedAt: row.started_at ? row.started_at.toISOString() : null,
    finishedAt: row.finished_at ? row.finished_at.toISOString() : null,
  };
}

export async function createImport(
  trx: TenantTransaction,
  body: z.infer<typeof createImportSchema>,
  createdBy: string,
): Promise<string> {
  const list = await trx.selectFrom('contact_lists').select('id').where('id', '=', body.listId).executeTakeFirst();
  if (!list) throw new AppError('not_found', 'No such list.');
  const created = await trx
    .insertInto('contact_imports')
    .values({
      list_id: body.listId,
      mapping: JSON.stringify(body.mapping),
      options: JSON.stringify({
        onExisting: body.onExisting,
        onSuppressed: body.onSuppressed,
        ...(body.delimiter ? { delimiter: body.delimiter } : {}),
        ...(body.lawfulBasis ? { lawfulBasis: body.lawfulBasis } : {}),
      }),
      created_by: createdBy,
    })
    .returning('id')
    .executeTakeFirstOrThrow();
  return created.id;
}

export { createImportSchema };

/**
 * The reject file: row number, column header, reason code and a sentence — never a cell value.
 * Headers come from the uploaded file, so every cell is neutralised against formula injection.
 * Streamed a page at a time (keyset on the row number): memory stays flat however many rows failed.
 */
export function rejectsCsv(tenantDb: TenantDb, importId: string): Readable {
  const PAGE = 5_000;
  async function* pages() {
    yield stringify([['row', 'column', 'reason', 'detail']], CSV_OUT);
    let after = 0;
    for (;;) {
      const rows = await tenantDb.read((trx) =>
        trx
          .selectFrom('contact_import_rejects')
          .select(['row_number', 'column_name', 'reason', 'detail'])
          .where('import_id', '=', importId)
          .where('row_number', '>', String(after))
          .orderBy('row_number')
          .limit(PAGE)
          .execute(),
      );
      if (rows.length > 0) yield stringify(rows.map((row) => [String(row.row_number), row.column_name ?? '', row.reason, row.detail ?? ''].map(neutraliseCell)), CSV_OUT);
      if (rows.length < PAGE) return;
      after = Number(rows.at(-1)?.row_number);
    }
  }
  return Readable.from(pages(), { objectMode: false });
}

export async function importsRoutes(app: App, crypto: ContactsCrypto): Promise<void> {
  app.addContentTypeParser(['text/csv', 'text/plain', 'application/octet-stream'], (_request, payload, done) => done(null, payload));

  app.post(
    '/api/v1/contact-imports',
    {
      config: { access: 'contacts:manage' },
      schema: { summary: 'Start a CSV import into a list: the mapping and options; the file follows with PUT …/file', tags: ['imports'], body: createImportSchema, response: { 201: importSchema, ...problemResponses(400, 401, 403, 404) } },
    },
    async (request, reply) => {
      const view = await request.tenantDb.transaction(async (trx) => {
        const id = await createImport(trx, request.body, actorLabel(request));
        await recordAuditEvent(trx, { ...requestAudit(request), action: 'contact_import.create', outcome: 'success', target: { type: 'contact_import', id }, details: { list: request.body.listId, columns: Object.keys(request.body.mapping).length, lawfulBasis: request.body.lawfulBasis ? `${request.body.lawfulBasis.purpose}:${request.body.lawfulBasis.basis}` : null } });
        return importView(trx, id);
      });
      return reply.code(201).send(view);
    },
  );

  app.put(
    '/api/v1/contact-imports/:importId/file',
    {
      config: { access: 'contacts:manage', streamedBody: true },
      bodyLimit: MAX_FILE_BYTES,
      schema: {
        summary: 'Upload the CSV file (text/csv, streamed, up to 2 GiB). It is checked whole before any row is imported',
        tags: ['imports'],
        params,
        response: { 202: importSchema, ...problemResponses(400, 401, 403, 404, 409, 413, 415) },
      },
    },
    async (request, reply) => {
      const importId = request.params.importId;
      // Another tenant's import, or none: 404 before anything about the body.
      await request.tenantDb.read((trx) => importView(trx, importId));
      const body = request.body as unknown;
      if (!body || typeof (body as Readable).pipe !== 'function') throw new AppError('unsupported_media_type', 'Send the file as text/csv.');
      const result = await withUploadSlot(() => storeUpload(request.tenantDb, crypto.cipher, importId, limited(body as Readable, MAX_FILE_BYTES)));
      const view = await request.tenantDb.transaction(async (trx) => {
        await recordAuditEvent(trx, {
          ...requestAudit(request),
          action: 'contact_import.upload',
          outcome: 'success',
          target: { type: 'contact_import', id: importId },
          details: { bytes: result.fileBytes, rows: result.fileRows, delimiter: result.delimiter, fileSha256: result.sha256 },
        });
        return importView(trx, importId);
      });
      return reply.code(202).send(view);
    },
  );

  app.get(
    '/api/v1/contact-imports/:importId',
    {
      config: { access: 'contacts:manage' },
      schema: { summary: 'Progress of an import: rows done, rows per second, time left, counts', tags: ['imports'], params, response: { 200: importSchema, ...problemResponses(400, 401, 403, 404) } },
    },
    async (request) => request.tenantDb.read((trx) => importView(trx, request.params.importId)),
  );

  app.get(
    '/api/v1/contact-imports/:importId/rejects',
    {
      config: { access: 'contacts:manage' },
      schema: { summary: 'The reject file: row number, column, reason (no cell values)', tags: ['imports'], params, response: { 200: z.string().describe('text/csv'), ...problemResponses(400, 401, 403, 404) } },
    },
    async (request, reply) => {
      await request.tenantDb.read((trx) => importView(trx, request.params.importId));
      const csv = rejectsCsv(request.tenantDb, request.params.importId);
      return reply.header('content-type', 'text/csv; charset=utf-8').header('content-disposition', 'attachment; filename="rejects.csv"').header('cache-control', 'no-store').send(csv as unknown as string);
    },
  );

  app.post(
    '/api/v1/contact-imports/:importId/cancel',
    {
      config: { access: 'contacts:manage' },
      schema: { summary: 'Cancel an import that has not finished (rows already imported stay; the stored file is deleted)', tags: ['imports'], params, response: { 200: importSchema, ...problemResponses(400, 401, 403, 404, 409) } },
    },
    async (request) =>
      request.tenantDb.transaction(async (trx) => {
        const importId = request.params.importId;
        const row = await trx.selectFrom('contact_imports').select('state').where('id', '=', importId).forUpdate().executeTakeFirst();
        if (!row) throw new AppError('not_found');
        if (row.state === 'done' || row.state === 'failed' || row.state === 'cancelled') throw new AppError('conflict', 'This import has ended.');
        await trx.updateTable('contact_imports').set({ state: 'cancelled', finished_at: new Date(), lease_owner: null, lease_until: null }).where('id', '=', importId).execute();
        await trx.deleteFrom('contact_import_chunks').where('import_id', '=', importId).execute();
        await recordAuditEvent(trx, { ...requestAudit(request), action: 'contact_import.cancel', outcome: 'success', target: { type: 'contact_import', id: importId }, details: { from: row.state } });
        return importView(trx, importId);
      }),
  );
}
