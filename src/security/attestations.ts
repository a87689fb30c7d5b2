import { createHash } from 'node:crypto';
import { z } from '../zod.ts';
import { sql } from '../db/kysely.ts';
import type { TenantTransaction } from '../db/tenant-db.ts';
import { recordAuditEvent } from '../audit/audit-event.ts';
import { announceAuthChange } from '../modules/access/auth-changes.ts';
import { AppError } from '../server/errors.ts';
import { actorLabel, requestAudit } from '../server/request-audit.ts';
import { principalOf } from '../server/access-control.ts';
import { problemResponses, uuidSchema } from '../server/schemas.ts';
import type { App } from '../server/types.ts';

/**
 * Security awareness: the tenant publishes its security policy and its training material, each a
 * document (a link, or the text itself) with a version. Every person who signs in must
 * acknowledge the current version of each before they may do anything else, again when a new
 * version is published, and again a year after they last did. The acknowledgements are kept
 * (append-only) as the evidence that each user was trained.
 *
 * The gate is in access control (src/server/access-control.ts): a session whose user owes an
 * acknowledgement is refused with `attestation_required` on every route but the few a person
 * needs to read and acknowledge (`beforeAttestation`). API tokens are not gated: they are for
 * integrations, and cutting an import off when a policy changes would be an outage; the
 * completion report names who owes one. Those who manage security may publish and read the
 * documents and the completion report while they owe an acknowledgement themselves (a policy
 * with a mistake must be fixable by the people who maintain it).
 */

/** An acknowledgement holds for a year. */
export const ATTESTATION_VALID_MS = 365 * 86_400_000;

/**
 * When the user's acknowledgements run out: 0 when one is owed now, +Infinity when the tenant has
 * published nothing. Read with the credential and cached with it; publishing a version or
 * acknowledging one announces an auth change, so no node keeps a stale answer.
 */
export async function attestationDueAt(trx: TenantTransaction, userId: string): Promise<number> {
  const rows = await sql<{ last: Date | null }>`
    SELECT (SELECT max(a.acknowledged_at) FROM security_attestations a WHERE a.user_id = ${userId} AND a.document_id = d.id) AS last
      FROM security_documents d
     WHERE d.superseded_at IS NULL`.execute(trx);
  let due = Number.POSITIVE_INFINITY;
  for (const row of rows.rows) due = Math.min(due, row.last ? row.last.getTime() + ATTESTATION_VALID_MS : 0);
  return due;
}

const kindSchema = z.enum(['policy', 'training']);
const documentSchema = z.object({
  id: z.string(),
  kind: kindSchema,
  title: z.string(),
  version: z.string(),
  url: z.string().nullable(),
  sha256: z.string(),
  publishedAt: z.string(),
  publishedBy: z.string(),
  current: z.boolean(),
});
type DocumentRow = { id: string; kind: 'policy' | 'training'; title: string; version: string; url: string | null; content_sha256: Buffer; published_at: Date; published_by: string; superseded_at: Date | null };
const presentDocument = (row: DocumentRow) => ({
  id: row.id,
  kind: row.kind,
  title: row.title,
  version: row.version,
  url: row.url,
  sha256: row.content_sha256.toString('hex'),
  publishedAt: row.published_at.toISOString(),
  publishedBy: row.published_by,
  current: row.superseded_at === null,
});
const documentColumns = ['id', 'kind', 'title', 'version', 'url', 'content_sha256', 'published_at', 'published_by', 'superseded_at'] as const;

const publishBody = z
  .strictObject({
    kind: kindSchema,
    title: z.string().trim().min(1).max(200),
    version: z.string().regex(/^[0-9A-Za-z][0-9A-Za-z._-]{0,39}$/, 'letters, digits, dot, dash or underscore; at most 40'),
    url: z.url({ protocol: /^https$/, error: 'an https:// address' }).max(2000).optional(),
    content: z.string().min(1).max(100_000).optional(),
  })
  .refine((body) => body.url !== undefined || body.content !== undefined, { message: 'a link (url) or the text (content) of the document', path: ['url'] });

export async function attestationRoutes(app: App): Promise<void> {
  app.post('/api/v1/security/documents', { config: { access: 'security:manage', stepUp: true, beforeAttestation: true }, schema: { summary: 'Publish a version of the security policy or the training: everyone must acknowledge it', tags: ['security'], body: publishBody, response: { 201: documentSchema, ...problemResponses(400, 401, 403, 409) } } }, async (request, reply) => {
    const body = request.body;
    // The digest is of what people acknowledge: the text, or the link when the text is elsewhere.
    const digest = createHash('sha256').update(body.content ?? body.url ?? '').digest();
    const row = await request.tenantDb.transaction(async (trx) => {
      // One publisher per tenant and kind at a time: two at once must not both supersede.
      await sql`SELECT pg_advisory_xact_lock(hashtext(${`${trx.tenantId}:security_documents:${body.kind}`}))`.execute(trx);
      const taken = await trx.selectFrom('security_documents').select('id').where('kind', '=', body.kind).where('version', '=', body.version).executeTakeFirst();
      if (taken) throw new AppError('conflict', `Version ${body.version} of the ${body.kind} was published already: give the new one a new version.`);
      const now = new Date();
      await trx.updateTable('security_documents').set({ superseded_at: now }).where('kind', '=', body.kind).where('superseded_at', 'is', null).execute();
      const created = await trx
        .insertInto('security_documents')
        .values({ kind: body.kind, title: body.title, version: body.version, url: body.url ?? null, content: body.content ?? null, content_sha256: digest, published_by: actorLabel(request), published_at: now })
        .returning(documentColumns)
        .executeTakeFirstOrThrow();
      await recordAuditEvent(trx, { ...requestAudit(request), action: 'security.document_publish', outcome: 'success', target: { type: 'security_document', id: created.id }, details: { kind: body.kind, version: body.version, sha256: digest.toString('hex') } });
      // Every session re-reads what its user owes: from the next request on, all must acknowledge.
      announceAuthChange(trx);
      return created;
    });
    return reply.code(201).send(presentDocument(row));
  });

  app.get('/api/v1/security/documents', { config: { access: 'security:manage', beforeAttestation: true }, schema: { summary: 'Every published version of the policy and the training', tags: ['security'], response: { 200: z.object({ items: z.array(documentSchema) }), ...problemResponses(401, 403) } } }, async (request) => {
    const rows = await request.tenantDb.read((trx) => trx.selectFrom('security_documents').select(documentColumns).orderBy('published_at', 'desc').limit(500).execute());
    return { items: rows.map(presentDocument) };
  });

  const completionSchema = z.object({
    documents: z.array(documentSchema),
    users: z.array(z.object({ userId: z.string(), role: z.string(), status: z.string(), acknowledged: z.array(z.object({ documentId: z.string(), at: z.string().nullable() })), complete: z.boolean(), dueAt: z.string().nullable() })),
    summary: z.object({ activeUsers: z.number(), complete: z.number(), percent: z.number() }),
  });
  app.get('/api/v1/security/attestations', { config: { access: 'security:manage', beforeAttestation: true }, schema: { summary: 'Who has acknowledged the current policy and training (the evidence of training)', tags: ['security'], response: { 200: completionSchema, ...problemResponses(401, 403) } } }, async (request) =>
    request.tenantDb.read(async (trx) => {
      const documents = await trx.selectFrom('security_documents').select(documentColumns).where('superseded_at', 'is', null).orderBy('kind').execute();
      const users = await trx.selectFrom('users').select(['id', 'role', 'status']).where('status', '<>', 'invited').orderBy('id').limit(10_000).execute();
      const acks = await trx
        .selectFrom('security_attestations')
        .select(['user_id', 'document_id', (eb) => eb.fn.max('acknowledged_at').as('at')])
        .where('document_id', 'in', documents.length > 0 ? documents.map((doc) => doc.id) : ['00000000-0000-0000-0000-000000000000'])
        .groupBy(['user_id', 'document_id'])
        .execute();
      const byUser = new Map<string, Map<string, Date>>();
      for (const ack of acks) {
        const map = byUser.get(ack.user_id) ?? new Map<string, Date>();
        map.set(ack.document_id, new Date(ack.at as unknown as string));
        byUser.set(ack.user_id, map);
      }
      const now = Date.now();
      const presented = users.map((user) => {
        const mine = byUser.get(user.id);
        const acknowledged = documents.map((doc) => ({ documentId: doc.id, at: mine?.get(doc.id)?.toISOString() ?? null }));
        const lapses = documents.map((doc) => (mine?.get(doc.id)?.getTime() ?? Number.NEGATIVE_INFINITY) + ATTESTATION_VALID_MS);
        const due = lapses.length === 0 ? Number.POSITIVE_INFINITY : Math.min(...lapses);
        return { userId: user.id, role: user.role, status: user.status, acknowledged, complete: due > now, dueAt: Number.isFinite(due) ? new Date(due).toISOString() : null };
      });
      const active = presented.filter((user) => user.status === 'active');
      const complete = active.filter((user) => user.complete).length;
      return { documents: documents.map(presentDocument), users: presented, summary: { activeUsers: active.length, complete, percent: active.length === 0 ? 100 : Math.floor((complete / active.length) * 1000) / 10 } };
    }),
  );

  // The person's own side: read what is owed, and acknowledge it. Reachable while one is owed.
  const own = { access: 'authenticated', sessionOnly: true, beforeAttestation: true } as const;
  app.get('/api/v1/me/security-documents', { config: own, schema: { summary: 'The current policy and training, with whether you have acknowledged them', tags: ['security'], response: { 200: z.object({ items: z.array(documentSchema.extend({ content: z.string().nullable(), acknowledgedAt: z.string().nullable(), due: z.boolean() })) }), ...problemResponses(401, 403) } } }, async (request) => {
    const userId = principalOf(request).userId;
    const rows = await request.tenantDb.read((trx) =>
      trx
        .selectFrom('security_documents as d')
        .select([...documentColumns.map((column) => `d.${column}` as const), 'd.content'])
        .select((eb) => eb.selectFrom('security_attestations as a').select((inner) => inner.fn.max('a.acknowledged_at').as('at')).whereRef('a.document_id', '=', 'd.id').where('a.user_id', '=', userId).as('acknowledged_at'))
        .where('d.superseded_at', 'is', null)
        .orderBy('d.kind')
        .execute(),
    );
    const now = Date.now();
    return {
      items: rows.map((row) => {
        const at = row.acknowledged_at ? new Date(row.acknowledged_at as unknown as string) : null;
        return { ...presentDocument(row), content: row.content, acknowledgedAt: at?.toISOString() ?? null, due: !at || at.getTime() + ATTESTATION_VALID_MS <= now };
      }),
    };
  });

  app.post('/api/v1/me/security-documents/:documentId/acknowledge', { config: own, schema: { summary: 'Acknowledge that you have read the policy or completed the training', tags: ['security'], params: z.strictObject({ documentId: uuidSchema }), body: z.strictObject({ sha256: z.string().regex(/^[0-9a-f]{64}$/) }), response: { 204: z.null(), ...problemResponses(400, 401, 403, 404, 409) } } }, async (request, reply) => {
    const userId = principalOf(request).userId;
    await request.tenantDb.transaction(async (trx) => {
      const doc = await trx.selectFrom('security_documents').select(['id', 'kind', 'version', 'content_sha256', 'superseded_at']).where('id', '=', request.params.documentId).executeTakeFirst();
      if (!doc) throw new AppError('not_found');
      if (doc.superseded_at) throw new AppError('invalid_transition', 'A newer version has been published since: acknowledge that one.');
      // The person acknowledges what they were shown: a document changed meanwhile is refused.
      if (doc.content_sha256.toString('hex') !== request.body.sha256) throw new AppError('invalid_transition', 'The document is not the one you were shown: read it again.');
      // Acknowledged already and not due: nothing new to record (repeats add no rows, events or cache flushes).
      const last = await trx.selectFrom('security_attestations').select((eb) => eb.fn.max('acknowledged_at').as('at')).where('user_id', '=', userId).where('document_id', '=', doc.id).executeTakeFirst();
      if (last?.at && new Date(last.at as unknown as string).getTime() + ATTESTATION_VALID_MS > Date.now()) return;
      await trx.insertInto('security_attestations').values({ user_id: userId, document_id: doc.id }).execute();
      await recordAuditEvent(trx, { ...requestAudit(request), action: 'security.attestation', outcome: 'success', target: { type: 'security_document', id: doc.id }, details: { kind: doc.kind, version: doc.version } });
      announceAuthChange(trx);
    });
    return reply.code(204).send(null);
  });
}
