import { sql } from '../../db/kysely.ts';
import { z } from '../../zod.ts';
import { recordAuditEvent } from '../../audit/audit-event.ts';
import { publicKeys } from '../../audit/signing-key.ts';
import { verifyTenantLedger } from '../../audit/verify-audit-log.ts';
import type { SystemDb } from '../../db/system-db.ts';
import { AppError } from '../../server/errors.ts';
import { principalOf } from '../../server/access-control.ts';
import { requestAudit } from '../../server/request-audit.ts';
import { problemResponses } from '../../server/schemas.ts';
import type { App } from '../../server/types.ts';

const searchQuery = z.strictObject({
  action: z.string().regex(/^[a-z_]+(\.[a-z_]+)*\.?$/, 'an action or an action prefix such as auth.').optional(),
  outcome: z.enum(['success', 'denied', 'failed']).optional(),
  actorId: z.uuid().optional(),
  from: z.iso.datetime({ offset: true }).optional(),
  to: z.iso.datetime({ offset: true }).optional(),
  /** Keyset pagination: events older than this id (the last one of the previous page). */
  before: z.string().regex(/^\d{1,18}$/, 'an event id from a previous page').optional(),
  limit: z.coerce.number().int().min(1).max(200).default(50),
});

const eventSchema = z.object({
  id: z.string(),
  leafIndex: z.number().nullable(),
  occurredAt: z.string(),
  actorType: z.string(),
  actorId: z.string().nullable(),
  action: z.string(),
  targetType: z.string().nullable(),
  targetId: z.string().nullable(),
  outcome: z.string(),
  sourceIp: z.string().nullable(),
  details: z.record(z.string(), z.unknown()),
});

const HOUR_MS = 3_600_000;

/**
 * What the security center shows (`audit:read`): the newest audit events with filters, failed
 * sign-ins per hour, and a verification of the tenant's whole ledger on demand. Audit rows carry
 * no personal data by construction (audit-event.ts), so they are shown as stored.
 */
export async function securityCenterRoutes(app: App, options: { systemDb: SystemDb }): Promise<void> {
  /** Tenants whose ledger this process is verifying now: one run per tenant per process at a time (a full recompute is heavy). */
  const verifying = new Set<string>();

  app.get(
    '/api/v1/audit/search',
    {
      config: { access: 'audit:read', stepUp: 'sessions' },
      schema: {
        summary: 'The newest audit events, filtered by action (or prefix), outcome, actor and time; newest first',
        tags: ['audit'],
        querystring: searchQuery,
        response: { 200: z.object({ items: z.array(eventSchema), next: z.string().nullable() }), ...problemResponses(400, 401, 403) },
      },
    },
    async (request) => {
      const { action, outcome, actorId, from, to, before, limit } = request.query;
      return request.tenantDb.transaction(async (trx) => {
        let query = trx
          .selectFrom('audit_events')
          .select(['id', 'leaf_index', 'occurred_at', 'actor_type', 'actor_id', 'action', 'target_type', 'target_id', 'outcome', 'source_ip', 'details'])
          .orderBy('id', 'desc')
          .limit(limit + 1);
        if (action !== undefined) query = action.endsWith('.') ? query.where('action', 'like', `${action}%`) : query.where('action', '=', action);
        if (outcome !== undefined) query = query.where('outcome', '=', outcome);
        if (actorId !== undefined) query = query.where('actor_id', '=', actorId);
        if (from !== undefined) query = query.where('occurred_at', '>=', new Date(from));
        if (to !== undefined) query = query.where('occurred_at', '<', new Date(to));
        if (before !== undefined) query = query.where(sql<boolean>`id < ${before}::bigint`);
        const rows = await query.execute();
        const page = rows.slice(0, limit);
        // Reading the log is itself on the record (the rows carry actor ids and addresses).
        await recordAuditEvent(trx, {
          ...requestAudit(request),
          action: 'audit.search',
          outcome: 'success',
          details: { action: action ?? null, outcome: outcome ?? null, actorId: actorId ?? null, from: from ?? null, to: to ?? null, returned: page.length },
        });
        return {
          items: page.map((row) => ({
            id: String(row.id),
            leafIndex: row.leaf_index === null ? null : Number(row.leaf_index),
            occurredAt: row.occurred_at.toISOString(),
            actorType: row.actor_type,
            actorId: row.actor_id,
            action: row.action,
            targetType: row.target_type,
            targetId: row.target_id,
            outcome: row.outcome,
            sourceIp: row.source_ip,
            details: row.details,
          })),
          next: rows.length > limit ? String(page.at(-1)?.id) : null,
        };
      });
    },
  );

  app.get(
    '/api/v1/audit/sign-in-failures',
    {
      config: { access: 'audit:read' },
      schema: {
        summary: 'Failed and refused sign-ins per hour over the last hours (default 24, at most 168)',
        tags: ['audit'],
        querystring: z.strictObject({ hours: z.coerce.number().int().min(1).max(168).default(24) }),
        response: { 200: z.object({ buckets: z.array(z.object({ hour: z.string(), failed: z.number(), lockouts: z.number() })) }), ...problemResponses(400, 401, 403) },
      },
    },
    async (request) => {
      const hours = request.query.hours;
      const end = Math.ceil(Date.now() / HOUR_MS) * HOUR_MS;
      const start = end - hours * HOUR_MS;
      const rows = await request.tenantDb.transaction((trx) =>
        trx
          .selectFrom('audit_events')
          .select([
            // Hours of UTC, whatever the session's time zone (a half-hour zone would misalign date_trunc).
            sql<Date>`date_bin('1 hour', occurred_at, TIMESTAMPTZ '2000-01-01 00:00:00+00')`.as('hour'),
            sql<number>`count(*) FILTER (WHERE action IN ('auth.login', 'auth.mfa_verify', 'auth.reauthenticate') AND outcome <> 'success')::int`.as('failed'),
            sql<number>`count(*) FILTER (WHERE action = 'auth.lockout')::int`.as('lockouts'),
          ])
          .where('occurred_at', '>=', new Date(start))
          .where('action', 'in', ['auth.login', 'auth.mfa_verify', 'auth.reauthenticate', 'auth.lockout'])
          .groupBy(sql`1`)
          .execute(),
      );
      const byHour = new Map(rows.map((row) => [new Date(row.hour).getTime(), row]));
      const buckets = [];
      for (let at = start; at < end; at += HOUR_MS) {
        const row = byHour.get(at);
        buckets.push({ hour: new Date(at).toISOString(), failed: row?.failed ?? 0, lockouts: row?.lockouts ?? 0 });
      }
      return { buckets };
    },
  );

  app.post(
    '/api/v1/audit/verify',
    {
      config: { access: 'audit:read' },
      schema: {
        summary: 'Recompute this tenant’s whole audit ledger now (every leaf, node, tree head and signature) and say whether it holds',
        tags: ['audit'],
        response: {
          200: z.object({
            ok: z.boolean(),
            problem: z.string().nullable(),
            events: z.number(),
            sealed: z.number(),
            checkpoints: z.number(),
            checkpoint: z.object({ treeSize: z.number(), signedAt: z.string(), rootHash: z.string() }).nullable(),
            tookMs: z.number(),
          }),
          ...problemResponses(401, 403, 409),
        },
      },
    },
    async (request) => {
      const principal = principalOf(request);
      if (verifying.has(principal.tenantId)) throw new AppError('conflict', 'A verification of this ledger is already running.');
      verifying.add(principal.tenantId);
      try {
        const started = performance.now();
        const keys = await publicKeys(options.systemDb);
        const verdict = await request.tenantDb.snapshot((trx) => verifyTenantLedger(trx, keys));
        const head = await request.tenantDb.read((trx) =>
          trx.selectFrom('audit_checkpoints').select(['tree_size', 'signed_at', 'root_hash']).orderBy('tree_size', 'desc').limit(1).executeTakeFirst(),
        );
        const tookMs = Math.round(performance.now() - started);
        await request.tenantDb.transaction((trx) =>
          recordAuditEvent(trx, { ...requestAudit(request), action: 'audit.verify', outcome: verdict.ok ? 'success' : 'failed', details: { tookMs } }),
        );
        return {
          ok: verdict.ok,
          problem: verdict.ok ? null : verdict.problem,
          events: verdict.ok ? verdict.events : 0,
          sealed: verdict.ok ? verdict.sealed : 0,
          checkpoints: verdict.ok ? verdict.checkpoints : 0,
          checkpoint: head ? { treeSize: Number(head.tree_size), signedAt: head.signed_at.toISOString(), rootHash: head.root_hash.toString('hex') } : null,
          tookMs,
        };
      } finally {
        verifying.delete(principal.tenantId);
      }
    },
  );
}
