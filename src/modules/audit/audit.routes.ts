import { Readable } from 'node:stream';
import { z } from '../../zod.ts';
import { recordAuditEvent } from '../../audit/audit-event.ts';
import { exportSealedEvents, latestSignedTreeHead, proveConsistency, proveInclusion, prunedBeforeLeaf } from '../../audit/audit-reader.ts';
import type { SystemDb } from '../../db/system-db.ts';
import { AppError } from '../../server/errors.ts';
import { problemResponses } from '../../server/schemas.ts';
import type { App } from '../../server/types.ts';

/** A non-negative integer in a query string: digits only (no "", "1e3" or "0x10"), exact in a double. */
const position = z
  .string()
  .regex(/^\d{1,15}$/, 'must be a non-negative integer')
  .transform(Number);

const exportQuerySchema = z.strictObject({
  since: z.iso.datetime({ offset: true }).optional(),
  afterLeaf: position.optional(),
});

const treeHeadSchema = z.object({
  treeSize: z.number().int(),
  rootHash: z.string(),
  signedAt: z.string(),
  signingKeyId: z.string(),
  publicKey: z.string().describe('Ed25519 public key, DER SubjectPublicKeyInfo, base64'),
  signature: z.string().describe('Ed25519 signature of the checkpoint message, base64'),
});

const inclusionQuerySchema = z.strictObject({ leaf: position, size: position.optional() });
const inclusionSchema = z.object({ leafIndex: z.number().int(), treeSize: z.number().int(), leafHash: z.string(), proof: z.array(z.string()) });
const consistencyQuerySchema = z.strictObject({ from: position, to: position });
const consistencySchema = z.object({ from: z.number().int(), to: z.number().int(), proof: z.array(z.string()) });

/**
 * The ledger for auditors (`audit:read`): a streamed export of sealed events for a SIEM, the
 * newest signed tree head, and RFC 9162 inclusion and consistency proofs to check it against.
 */
export async function auditRoutes(app: App, options: { systemDb: SystemDb }): Promise<void> {
  const publicKeyOf = async (keyId: string) => (await options.systemDb.auditSigningKeys()).find((key) => key.keyId === keyId)?.publicKey;

  app.get(
    '/api/v1/audit/events',
    {
      config: { access: 'audit:read', stepUp: 'sessions' },
      schema: {
        summary: 'Export sealed audit events as JSON lines, in leaf order',
        description:
          'Streams application/x-ndjson, one sealed event per line, in leaf order. Pass the last leafIndex you received as ' +
          '`afterLeaf` to continue; leaf indices have no gaps, so nothing is missed. Each export is itself audited.',
        tags: ['audit'],
        security: [{ bearer: [] }],
        querystring: exportQuerySchema,
        response: { 200: z.string().describe('JSON lines'), ...problemResponses(400, 401, 403, 409) },
      },
    },
    async (request, reply) => {
      const principal = request.principal;
      if (!principal) throw new AppError('unauthenticated');
      const since = request.query.since === undefined ? undefined : new Date(request.query.since);
      const afterLeaf = request.query.afterLeaf;
      // Resuming from before a retention cut would silently skip removed events: say so instead.
      const cut = await request.tenantDb.read((trx) => prunedBeforeLeaf(trx));
      if (afterLeaf !== undefined && afterLeaf + 1 < cut) {
        throw new AppError('conflict', `Events before leaf ${cut} were removed under the retention procedure; resume from afterLeaf=${cut - 1}.`);
      }
      await request.tenantDb.transaction((trx) =>
        recordAuditEvent(trx, {
          action: 'audit.export',
          outcome: 'success',
          actor: { type: 'api_token', id: principal.credential.id },
          sourceIp: request.ip,
          requestId: request.id,
          details: { user: principal.userId, since: since?.toISOString() ?? null, afterLeaf: afterLeaf ?? null, channel: 'api' },
        }),
      );
      const events = exportSealedEvents(request.tenantDb, { since, afterLeaf });
      const lines = Readable.from(
        (async function* () {
          for await (const event of events) yield JSON.stringify(event) + '\n';
        })(),
      );
      lines.on('error', (error) => request.log.error({ err: error }, 'audit export failed while streaming'));
      // A stream is written as it comes: no response serializer runs on it.
      return reply.type('application/x-ndjson; charset=utf-8').send(lines as unknown as string);
    },
  );

  app.get(
    '/api/v1/audit/checkpoint',
    {
      config: { access: 'audit:read' },
      schema: {
        summary: 'The newest signed tree head of the audit ledger',
        tags: ['audit'],
        security: [{ bearer: [] }],
        response: { 200: treeHeadSchema, ...problemResponses(401, 403, 404) },
      },
    },
    async (request) => {
      const head = await request.tenantDb.read((trx) => latestSignedTreeHead(trx, publicKeyOf));
      if (!head) throw new AppError('not_found', 'No checkpoint has been signed yet.');
      return head;
    },
  );

  app.get(
    '/api/v1/audit/proofs/inclusion',
    {
      config: { access: 'audit:read' },
      schema: {
        summary: 'Proof that a sealed event is in the tree of a given size (RFC 9162)',
        tags: ['audit'],
        security: [{ bearer: [] }],
        querystring: inclusionQuerySchema,
        response: { 200: inclusionSchema, ...problemResponses(400, 401, 403) },
      },
    },
    async (request) => request.tenantDb.read((trx) => proveInclusion(trx, request.query.leaf, request.query.size)),
  );

  app.get(
    '/api/v1/audit/proofs/consistency',
    {
      config: { access: 'audit:read' },
      schema: {
        summary: 'Proof that the tree of one size is a prefix of the tree of a larger size (RFC 9162)',
        tags: ['audit'],
        security: [{ bearer: [] }],
        querystring: consistencyQuerySchema,
        response: { 200: consistencySchema, ...problemResponses(400, 401, 403) },
      },
    },
    async (request) => request.tenantDb.read((trx) => proveConsistency(trx, request.query.from, request.query.to)),
  );
}
