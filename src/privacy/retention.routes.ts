import { z } from '../zod.ts';
import type { App } from '../server/types.ts';
import { AppError } from '../server/errors.ts';
import { problemResponses, uuidSchema } from '../server/schemas.ts';
import { recordAuditEvent } from '../audit/audit-event.ts';
import { actorLabel, requestAudit } from '../server/request-audit.ts';
import type { SystemDb } from '../db/system-db.ts';
import type { Logger } from '../logger.ts';
import type { ContactsCrypto } from '../modules/contacts/contacts.service.ts';
import { runEvery } from '../background-task.ts';
import type { ErasureLedgerMirror } from './erasure.ts';
import { abandonLostSweep, beginSweep, checkPolicy, RETENTION_CATEGORIES, runSweep } from './retention.ts';
import { NODE_ID } from '../operations/node-id.ts';
import type { NodePresence } from '../operations/node-presence.ts';

const categorySchema = z.enum(RETENTION_CATEGORIES);
const policySchema = z.object({ category: categorySchema, retainDays: z.number().int(), action: z.enum(['delete', 'anonymise']), updatedAt: z.string(), updatedBy: z.string() });
const holdSchema = z.object({ id: z.string(), scope: z.enum(['contact', 'campaign']), contactId: z.string().nullable(), campaignId: z.string().nullable(), reason: z.string(), createdBy: z.string(), createdAt: z.string(), releasedAt: z.string().nullable(), releasedBy: z.string().nullable() });
const sweepSchema = z.object({ id: z.string(), dryRun: z.boolean(), state: z.string(), node: z.string(), requestedBy: z.string(), startedAt: z.string(), finishedAt: z.string().nullable(), report: z.record(z.string(), z.unknown()), errorCode: z.string().nullable() });

const access = { access: 'privacy:manage' } as const;

/**
 * /api/v1/privacy/retention-policies, /legal-holds and /retention-sweeps: the tenant's retention
 * schedule, the holds that override it, and sweeps (a dry run first, then for real) with their
 * reports. Sweeps started here run in the background on this node; poll the sweep for progress.
 */
export async function retentionRoutes(app: App, options: { crypto: ContactsCrypto; mirror?: ErasureLedgerMirror | undefined; logger: Logger }): Promise<void> {
  app.get('/api/v1/privacy/retention-policies', { config: access, schema: { summary: 'The retention schedule, with the legal minimum of each category', tags: ['privacy'], response: { 200: z.object({ items: z.array(policySchema) }), ...problemResponses(401, 403) } } }, async (request) => {
    const rows = await request.tenantDb.read((trx) => trx.selectFrom('retention_policies').selectAll().orderBy('category').execute());
    return { items: rows.map((row) => ({ category: row.category, retainDays: row.retain_days, action: row.action, updatedAt: row.updated_at.toISOString(), updatedBy: row.updated_by })) };
  });

  app.put('/api/v1/privacy/retention-policies/:category', { config: { ...access, stepUp: 'sessions' }, schema: { summary: 'Set how long a category is kept and what happens after (audit events: at least 365 days)', tags: ['privacy'], params: z.strictObject({ category: categorySchema }), body: z.strictObject({ retainDays: z.number().int().min(1).max(36_500), action: z.enum(['delete', 'anonymise']) }), response: { 200: policySchema, ...problemResponses(400, 401, 403) } } }, async (request) => {
    const { category } = request.params;
    const { retainDays, action } = request.body;
    checkPolicy(category, retainDays, action);
    const row = await request.tenantDb.transaction(async (trx) => {
      const saved = await trx
        .insertInto('retention_policies')
        .values({ category, retain_days: retainDays, action, updated_by: actorLabel(request) })
        .onConflict((conflict) => conflict.columns(['tenant_id', 'category']).doUpdateSet({ retain_days: retainDays, action, updated_by: actorLabel(request), updated_at: new Date() }))
        .returningAll()
        .executeTakeFirstOrThrow();
      await recordAuditEvent(trx, { ...requestAudit(request), action: 'privacy.retention_policy', outcome: 'success', target: { type: 'retention_policy', id: category }, details: { retainDays, action } });
      return saved;
    });
    return { category: row.category, retainDays: row.retain_days, action: row.action, updatedAt: row.updated_at.toISOString(), updatedBy: row.updated_by };
  });

  app.delete('/api/v1/privacy/retention-policies/:category', { config: { ...access, stepUp: 'sessions' }, schema: { summary: 'Remove a retention policy (the category is then kept until one is set)', tags: ['privacy'], params: z.strictObject({ category: categorySchema }), response: { 204: z.null(), ...problemResponses(400, 401, 403, 404) } } }, async (request, reply) => {
    await request.tenantDb.transaction(async (trx) => {
      const removed = await trx.deleteFrom('retention_policies').where('category', '=', request.params.category).executeTakeFirst();
      if (Number(removed.numDeletedRows) === 0) throw new AppError('not_found');
      await recordAuditEvent(trx, { ...requestAudit(request), action: 'privacy.retention_policy', outcome: 'success', target: { type: 'retention_policy', id: request.params.category }, details: { removed: true } });
    });
    return reply.code(204).send(null);
  });

  const presentHold = (row: { id: string; scope: 'contact' | 'campaign'; contact_id: string | null; campaign_id: string | null; reason: string; created_by: string; created_at: Date; released_at: Date | null; released_by: string | null }) => ({
    id: row.id,
    scope: row.scope,
    contactId: row.contact_id,
    campaignId: row.campaign_id,
    reason: row.reason,
    createdBy: row.created_by,
    createdAt: row.created_at.toISOString(),
    releasedAt: row.released_at?.toISOString() ?? null,
    releasedBy: row.released_by,
  });

  app.post('/api/v1/privacy/legal-holds', { config: access, schema: { summary: 'Put a contact, or a whole campaign, on legal hold: kept whatever retention or erasure says', tags: ['privacy'], body: z.strictObject({ contactId: uuidSchema.optional(), campaignId: uuidSchema.optional(), reason: z.string().trim().min(3).max(500) }), response: { 201: holdSchema, ...problemResponses(400, 401, 403, 404) } } }, async (request, reply) => {
    const { contactId, campaignId, reason } = request.body;
    if ((contactId === undefined) === (campaignId === undefined)) throw new AppError('validation_failed', 'Name exactly one of contactId and campaignId.');
    const row = await request.tenantDb.transaction(async (trx) => {
      const exists = contactId
        ? await trx.selectFrom('contacts').select('id').where('id', '=', contactId).executeTakeFirst()
        : await trx.selectFrom('campaigns').select('id').where('id', '=', campaignId ?? '').executeTakeFirst();
      if (!exists) throw new AppError('not_found');
      const hold = await trx
        .insertInto('legal_holds')
        .values({ scope: contactId ? 'contact' : 'campaign', contact_id: contactId ?? null, campaign_id: campaignId ?? null, reason, created_by: actorLabel(request) })
        .returningAll()
        .executeTakeFirstOrThrow();
      await recordAuditEvent(trx, { ...requestAudit(request), action: 'privacy.legal_hold', outcome: 'success', target: { type: 'legal_hold', id: hold.id }, details: { scope: hold.scope, contact: contactId ?? null, campaign: campaignId ?? null } });
      return hold;
    });
    return reply.code(201).send(presentHold(row));
  });

  app.get('/api/v1/privacy/legal-holds', { config: access, schema: { summary: 'Legal holds, those in force first', tags: ['privacy'], response: { 200: z.object({ items: z.array(holdSchema) }), ...problemResponses(401, 403) } } }, async (request) => {
    const rows = await request.tenantDb.read((trx) => trx.selectFrom('legal_holds').selectAll().orderBy('released_at', (order) => order.nullsFirst()).orderBy('created_at', 'desc').limit(1000).execute());
    return { items: rows.map(presentHold) };
  });

  app.post('/api/v1/privacy/legal-holds/:holdId/release', { config: { ...access, stepUp: 'sessions' }, schema: { summary: 'Release a legal hold (it stays on record)', tags: ['privacy'], params: z.strictObject({ holdId: uuidSchema }), response: { 200: holdSchema, ...problemResponses(400, 401, 403, 404, 409) } } }, async (request) => {
    const row = await request.tenantDb.transaction(async (trx) => {
      const released = await trx.updateTable('legal_holds').set({ released_at: new Date(), released_by: actorLabel(request) }).where('id', '=', request.params.holdId).where('released_at', 'is', null).returningAll().executeTakeFirst();
      if (!released) {
        const exists = await trx.selectFrom('legal_holds').select('id').where('id', '=', request.params.holdId).executeTakeFirst();
        throw exists ? new AppError('invalid_transition', 'The hold is already released.') : new AppError('not_found');
      }
      await recordAuditEvent(trx, { ...requestAudit(request), action: 'privacy.legal_hold', outcome: 'success', target: { type: 'legal_hold', id: released.id }, details: { released: true } });
      return released;
    });
    return presentHold(row);
  });

  const presentSweep = (row: { id: string; dry_run: boolean; state: string; node: string; requested_by: string; started_at: Date; finished_at: Date | null; report: Record<string, unknown>; error_code: string | null }) => ({
    id: row.id,
    dryRun: row.dry_run,
    state: row.state,
    node: row.node,
    requestedBy: row.requested_by,
    startedAt: row.started_at.toISOString(),
    finishedAt: row.finished_at?.toISOString() ?? null,
    report: row.report,
    errorCode: row.error_code,
  });

  app.post('/api/v1/privacy/retention-sweeps', { config: { ...access, stepUp: 'sessions' }, schema: { summary: 'Start a sweep now (dryRun: count only); one runs at a time per organisation', tags: ['privacy'], body: z.strictObject({ dryRun: z.boolean() }), response: { 202: z.object({ id: z.string() }), ...problemResponses(400, 401, 403, 409) } } }, async (request, reply) => {
    const sweepOptions = { dryRun: request.body.dryRun, requestedBy: actorLabel(request), node: NODE_ID, mirror: options.mirror };
    const id = await beginSweep(request.tenantDb, sweepOptions);
    if (!id) throw new AppError('conflict', 'A sweep is running already; wait for its report.');
    const tenantDb = request.tenantDb;
    void runSweep(tenantDb, options.crypto, id, sweepOptions).catch((error: unknown) => options.logger.error({ err: error instanceof Error ? { name: error.name } : undefined, sweep: id }, 'retention sweep failed'));
    return reply.code(202).send({ id });
  });

  app.get('/api/v1/privacy/retention-sweeps', { config: access, schema: { summary: 'Recent sweeps with their reports', tags: ['privacy'], response: { 200: z.object({ items: z.array(sweepSchema) }), ...problemResponses(401, 403) } } }, async (request) => {
    const rows = await request.tenantDb.read((trx) => trx.selectFrom('retention_sweeps').selectAll().orderBy('started_at', 'desc').limit(100).execute());
    return { items: rows.map(presentSweep) };
  });

  app.get('/api/v1/privacy/retention-sweeps/:sweepId', { config: access, schema: { summary: 'One sweep: progress while it runs, its report when done', tags: ['privacy'], params: z.strictObject({ sweepId: uuidSchema }), response: { 200: sweepSchema, ...problemResponses(400, 401, 403, 404) } } }, async (request) => {
    const row = await request.tenantDb.read((trx) => trx.selectFrom('retention_sweeps').selectAll().where('id', '=', request.params.sweepId).executeTakeFirst());
    if (!row) throw new AppError('not_found');
    return presentSweep(row);
  });
}

/**
 * The scheduled sweeper of `ringvakt serve`. Every `intervalMs` each node looks for tenants with
 * retention policies whose last real sweep is older than the interval, and sweeps them — one node
 * at a time per tenant (the running sweep's row is the lease). Every 5 s it also looks for sweeps
 * to resume: one whose node is gone (its presence lock is free) or that a stopping node gave up,
 * so that a sweep cut short by a node's death or a deploy goes on elsewhere within seconds.
 */
export function startRetentionService(options: {
  systemDb: SystemDb;
  crypto: () => Promise<ContactsCrypto>;
  mirror?: ErasureLedgerMirror | undefined;
  logger: Logger;
  intervalMs?: number;
  node?: string;
  presence?: Pick<NodePresence, 'settled'> | undefined;
}) {
  const intervalMs = options.intervalMs ?? 3_600_000;
  const node = options.node ?? NODE_ID;
  const dueCheckMs = Math.min(intervalMs, 60_000);
  let lastDueCheck = 0;
  return runEvery(
    'retention_sweeper',
    Math.min(dueCheckMs, RESUME_CHECK_MS),
    async (stopping) => {
      const presenceSettled = options.presence?.settled() === true;
      const resume = presenceSettled ? await options.systemDb.tenantsWithSweepsToResume() : [];
      const dueCheck = Date.now() - lastDueCheck >= dueCheckMs;
      if (resume.length === 0 && !dueCheck) return;
      if (dueCheck) lastDueCheck = Date.now();
      const tenants = new Set([...resume, ...(dueCheck ? await options.systemDb.tenantsWithRetentionPolicies() : [])]);
      const crypto = await options.crypto();
      for (const tenantId of tenants) {
        if (stopping()) return;
        // One tenant's failure (recorded on its sweep) does not hold up the others.
        try {
          const tenantDb = options.systemDb.inTenant(tenantId);
          await abandonLostSweep(tenantDb, { node, presenceSettled });
          const last = await tenantDb.read((trx) => trx.selectFrom('retention_sweeps').select(['started_at', 'state', 'error_code']).where('dry_run', '=', false).orderBy('started_at', 'desc').executeTakeFirst());
          let cutShort = last?.state === 'abandoned' && (last.error_code === 'node_lost' || last.error_code === 'node_stopped');
          // A sweep that keeps losing its node (it may be what brings nodes down) waits for the schedule.
          if (cutShort) {
            const lost = await tenantDb.read((trx) => trx.selectFrom('retention_sweeps').select((eb) => eb.fn.countAll<string>().as('n')).where('error_code', '=', 'node_lost').where('started_at', '>', new Date(Date.now() - 3_600_000)).executeTakeFirstOrThrow());
            if (Number(lost.n) >= MAX_LOST_PER_HOUR) cutShort = false;
          }
          if (last && !cutShort && Date.now() - last.started_at.getTime() < intervalMs) continue;
          const sweepOptions = { dryRun: false, requestedBy: 'schedule', node, mirror: options.mirror, stopping };
          const id = await beginSweep(tenantDb, sweepOptions);
          if (id) await runSweep(tenantDb, crypto, id, sweepOptions);
        } catch (error) {
          if (error instanceof Error && error.message === 'sweep_stopped') return;
          options.logger.error({ err: error instanceof Error ? { name: error.name } : undefined, tenant: tenantId }, 'scheduled retention sweep failed for a tenant');
        }
      }
    },
    (error) => options.logger.error({ err: error instanceof Error ? { name: error.name } : undefined }, 'scheduled retention sweep failed'),
  );
}

/** How often every node looks for a sweep to resume (a dead node's, or a stopped one's). */
const RESUME_CHECK_MS = 5_000;
/** Sweeps of one tenant lost with their node within an hour, after which no more are resumed at once. */
const MAX_LOST_PER_HOUR = 3;
