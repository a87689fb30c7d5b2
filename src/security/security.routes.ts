import { randomBytes } from 'node:crypto';
import { z } from '../zod.ts';
import { recordAuditEvent } from '../audit/audit-event.ts';
import type { FieldCipher } from '../crypto/field-cipher.ts';
import { AppError } from '../server/errors.ts';
import { actorLabel, requestAudit } from '../server/request-audit.ts';
import { problemResponses, uuidSchema } from '../server/schemas.ts';
import type { App } from '../server/types.ts';
import { DETECTION_RULES, effectiveSettings, LEDGER_RULE_ID, RULES_BY_ID } from './detection-rules.ts';
import { principalOf } from '../server/access-control.ts';
import { checkWebhookUrl, MAX_WEBHOOKS } from './webhooks.ts';

const severitySchema = z.enum(['low', 'medium', 'high', 'critical']);
const access = { access: 'security:manage' } as const;
/** Changes to monitoring itself: a person signed in moments ago, never an API token (a stolen token must not turn monitoring off). */
const changes = { access: 'security:manage', stepUp: true } as const;

const alertSchema = z.object({
  id: z.string(),
  rule: z.string(),
  severity: severitySchema,
  subject: z.string(),
  summary: z.string(),
  state: z.enum(['open', 'acknowledged', 'resolved']),
  hits: z.number(),
  firstSeen: z.string(),
  lastSeen: z.string(),
  raisedAt: z.string(),
  evidence: z.array(z.string()),
  acknowledgedBy: z.string().nullable(),
  acknowledgedAt: z.string().nullable(),
  resolvedAt: z.string().nullable(),
});
const ruleSchema = z.object({ id: z.string(), title: z.string(), enabled: z.boolean(), threshold: z.number(), windowSeconds: z.number(), severity: severitySchema, defaults: z.object({ threshold: z.number(), windowSeconds: z.number(), severity: severitySchema }) });
const webhookSchema = z.object({ id: z.string(), url: z.string(), minSeverity: severitySchema, enabled: z.boolean(), createdAt: z.string(), createdBy: z.string() });

/**
 * The most events a second a rule may need: beyond it a rule could never fire (the ledger does
 * not take that many), so such a threshold is refused rather than silently never alerting.
 */
const MAX_EVENTS_PER_SECOND = 500;

/** The least threshold of rules that count everyday events: below it a rule fires on every typo or lookup. */
/** Rules that watch the ledger and the monitoring themselves: tunable, never off. */
const ALWAYS_ON: ReadonlySet<string> = new Set([LEDGER_RULE_ID, 'security.monitoring_changed']);

const MIN_THRESHOLD: Readonly<Record<string, number>> = { 'auth.failed_signins_account': 3, 'auth.credential_stuffing': 5, 'data.reveal_burst': 5, 'privilege.denied_burst': 3 };

type AlertRow = { id: string; rule_id: string; severity: 'low' | 'medium' | 'high' | 'critical'; subject: string; summary: string; state: 'open' | 'acknowledged' | 'resolved'; hits: number; first_seen: Date; last_seen: Date; raised_at: Date; evidence: string[]; acknowledged_by: string | null; acknowledged_at: Date | null; resolved_at: Date | null };
const presentAlert = (row: AlertRow) => ({
  id: row.id,
  rule: row.rule_id,
  severity: row.severity,
  subject: row.subject,
  summary: row.summary,
  state: row.state,
  hits: row.hits,
  firstSeen: row.first_seen.toISOString(),
  lastSeen: row.last_seen.toISOString(),
  raisedAt: row.raised_at.toISOString(),
  evidence: row.evidence.map(String),
  acknowledgedBy: row.acknowledged_by,
  acknowledgedAt: row.acknowledged_at?.toISOString() ?? null,
  resolvedAt: row.resolved_at?.toISOString() ?? null,
});

/**
 * /api/v1/security/alerts, /detection-rules and /alert-webhooks: the tenant's security alerts
 * (acknowledge, resolve), the detection rules with the tenant's tuning, and where alerts are sent.
 */
export async function securityMonitoringRoutes(app: App, options: { cipher: FieldCipher }): Promise<void> {
  app.get('/api/v1/security/alerts', { config: access, schema: { summary: 'Security alerts, newest first', tags: ['security'], querystring: z.strictObject({ state: z.enum(['open', 'acknowledged', 'resolved']).optional(), limit: z.coerce.number().int().min(1).max(200).default(50) }), response: { 200: z.object({ items: z.array(alertSchema) }), ...problemResponses(400, 401, 403) } } }, async (request) => {
    const rows = await request.tenantDb.read((trx) => {
      let query = trx.selectFrom('security_alerts').selectAll().orderBy('raised_at', 'desc').limit(request.query.limit);
      if (request.query.state) query = query.where('state', '=', request.query.state);
      return query.execute();
    });
    return { items: rows.map(presentAlert) };
  });

  for (const [verb, state] of [['acknowledge', 'acknowledged'], ['resolve', 'resolved']] as const) {
    app.post(`/api/v1/security/alerts/:alertId/${verb}`, { config: access, schema: { summary: `${verb === 'acknowledge' ? 'Acknowledge' : 'Resolve'} an alert`, tags: ['security'], params: z.strictObject({ alertId: uuidSchema }), response: { 200: alertSchema, ...problemResponses(400, 401, 403, 404, 409) } } }, async (request) => {
      const row = await request.tenantDb.transaction(async (trx) => {
        const current = await trx.selectFrom('security_alerts').select(['state', 'subject']).where('id', '=', request.params.alertId).forUpdate().executeTakeFirst();
        if (!current) throw new AppError('not_found');
        // Nobody closes the alert about themselves (an administrator just made, for one).
        const caller = principalOf(request);
        if (caller.userId && current.subject === `user:${caller.userId}`) throw new AppError('forbidden', 'This alert is about you: another security manager must handle it.');
        if (current.state === 'resolved' || current.state === state) throw new AppError('invalid_transition', `The alert is ${current.state} already.`);
        const now = new Date();
        const updated = await trx
          .updateTable('security_alerts')
          .set(state === 'acknowledged' ? { state, acknowledged_by: actorLabel(request), acknowledged_at: now } : { state, resolved_at: now, ...(current.state === 'open' ? { acknowledged_by: actorLabel(request), acknowledged_at: now } : {}) })
          .where('id', '=', request.params.alertId)
          .returningAll()
          .executeTakeFirstOrThrow();
        await recordAuditEvent(trx, { ...requestAudit(request), action: state === 'acknowledged' ? 'security.alert_acknowledged' : 'security.alert_resolved', outcome: 'success', target: { type: 'security_alert', id: updated.id }, details: { rule: updated.rule_id } });
        return updated;
      });
      return presentAlert(row);
    });
  }

  app.get('/api/v1/security/detection-rules', { config: access, schema: { summary: 'The detection rules with this organisation’s settings', tags: ['security'], response: { 200: z.object({ items: z.array(ruleSchema) }), ...problemResponses(401, 403) } } }, async (request) => {
    const settings = effectiveSettings(await request.tenantDb.read((trx) => trx.selectFrom('detection_rule_settings').selectAll().execute()));
    return { items: DETECTION_RULES.map((rule) => ({ id: rule.id, title: rule.title, ...(settings.get(rule.id) ?? { enabled: true, ...rule.defaults }), defaults: rule.defaults })) };
  });

  app.put('/api/v1/security/detection-rules/:ruleId', { config: changes, schema: { summary: 'Tune a rule: on or off, threshold, window, severity', tags: ['security'], params: z.strictObject({ ruleId: z.string().max(100) }), body: z.strictObject({ enabled: z.boolean(), threshold: z.number().int().min(1).max(1_000_000), windowSeconds: z.number().int().min(10).max(86_400), severity: severitySchema }), response: { 200: ruleSchema, ...problemResponses(400, 401, 403, 404) } } }, async (request) => {
    const rule = RULES_BY_ID.get(request.params.ruleId);
    if (!rule) throw new AppError('not_found', 'No such rule.');
    const { enabled, threshold, windowSeconds, severity } = request.body;
    if (!enabled && ALWAYS_ON.has(rule.id)) throw new AppError('rule_impossible', 'This rule watches the monitoring and the ledger themselves; it cannot be turned off.', [{ path: 'body/enabled', message: 'must be true' }]);
    if (threshold > windowSeconds * MAX_EVENTS_PER_SECOND) {
      throw new AppError('rule_impossible', `${threshold} events within ${windowSeconds} s is more than ${MAX_EVENTS_PER_SECOND} a second: the rule could never fire.`, [{ path: 'body/threshold', message: `at most ${windowSeconds * MAX_EVENTS_PER_SECOND} for this window` }]);
    }
    const least = MIN_THRESHOLD[rule.id];
    if (least !== undefined && threshold < least) {
      throw new AppError('rule_impossible', `A threshold below ${least} would alert on everyday events (a mistyped password, a single lookup).`, [{ path: 'body/threshold', message: `at least ${least}` }]);
    }
    await request.tenantDb.transaction(async (trx) => {
      const before = await trx.selectFrom('detection_rule_settings').selectAll().where('rule_id', '=', rule.id).executeTakeFirst();
      const values = { enabled, threshold, window_seconds: windowSeconds, severity, updated_by: actorLabel(request), updated_at: new Date() };
      await trx.insertInto('detection_rule_settings').values({ rule_id: rule.id, ...values }).onConflict((conflict) => conflict.columns(['tenant_id', 'rule_id']).doUpdateSet(values)).execute();
      const from = before ? { enabled: before.enabled, threshold: before.threshold, windowSeconds: before.window_seconds, severity: before.severity } : { enabled: true, ...rule.defaults };
      await recordAuditEvent(trx, { ...requestAudit(request), action: 'security.rule_update', outcome: 'success', target: { type: 'detection_rule', id: rule.id }, details: { fromEnabled: from.enabled, fromThreshold: from.threshold, fromWindowSeconds: from.windowSeconds, fromSeverity: from.severity, enabled, threshold, windowSeconds, severity } });
    });
    return { id: rule.id, title: rule.title, enabled, threshold, windowSeconds, severity, defaults: rule.defaults };
  });

  app.get('/api/v1/security/alert-webhooks', { config: access, schema: { summary: 'Where alerts are sent', tags: ['security'], response: { 200: z.object({ items: z.array(webhookSchema) }), ...problemResponses(401, 403) } } }, async (request) => {
    const rows = await request.tenantDb.read((trx) => trx.selectFrom('alert_webhooks').select(['id', 'url', 'min_severity', 'enabled', 'created_at', 'created_by']).orderBy('created_at').execute());
    return { items: rows.map((row) => ({ id: row.id, url: row.url, minSeverity: row.min_severity, enabled: row.enabled, createdAt: row.created_at.toISOString(), createdBy: row.created_by })) };
  });

  app.post('/api/v1/security/alert-webhooks', { config: changes, schema: { summary: 'Send alerts to a webhook (its signing secret is shown once)', tags: ['security'], body: z.strictObject({ url: z.string().min(8).max(2000), minSeverity: severitySchema.default('low') }), response: { 201: webhookSchema.extend({ secret: z.string() }), ...problemResponses(400, 401, 403) } } }, async (request, reply) => {
    const url = await checkWebhookUrl(request.body.url);
    const secret = randomBytes(32);
    const row = await request.tenantDb.transaction(async (trx) => {
      const count = await trx.selectFrom('alert_webhooks').select((eb) => eb.fn.countAll<string>().as('n')).executeTakeFirstOrThrow();
      if (Number(count.n) >= MAX_WEBHOOKS) throw new AppError('conflict', `At most ${MAX_WEBHOOKS} webhooks: remove one first.`);
      const created = await trx
        .insertInto('alert_webhooks')
        .values({ url: url.toString(), secret_ciphertext: Buffer.alloc(0), min_severity: request.body.minSeverity, created_by: actorLabel(request) })
        .returning(['id', 'url', 'min_severity', 'enabled', 'created_at', 'created_by'])
        .executeTakeFirstOrThrow();
      // Sealed as text (base64url) like every field the key rotation walks.
      const sealed = await options.cipher.encrypt(trx, { table: 'alert_webhooks', recordId: created.id, field: 'secret' }, secret.toString('base64url'));
      await trx.updateTable('alert_webhooks').set({ secret_ciphertext: sealed }).where('id', '=', created.id).execute();
      // The URL's host only: a path or query may carry a token of the receiver's.
      await recordAuditEvent(trx, { ...requestAudit(request), action: 'security.webhook_create', outcome: 'success', target: { type: 'alert_webhook', id: created.id }, details: { host: url.host, minSeverity: request.body.minSeverity } });
      return created;
    });
    // The secret is in this answer only: no cache may keep it.
    return reply.code(201).header('cache-control', 'no-store').send({ id: row.id, url: row.url, minSeverity: row.min_severity, enabled: row.enabled, createdAt: row.created_at.toISOString(), createdBy: row.created_by, secret: secret.toString('base64url') });
  });

  app.delete('/api/v1/security/alert-webhooks/:webhookId', { config: changes, schema: { summary: 'Stop sending alerts to a webhook', tags: ['security'], params: z.strictObject({ webhookId: uuidSchema }), response: { 204: z.null(), ...problemResponses(400, 401, 403, 404) } } }, async (request, reply) => {
    await request.tenantDb.transaction(async (trx) => {
      const gone = await trx.deleteFrom('alert_webhooks').where('id', '=', request.params.webhookId).returning('id').executeTakeFirst();
      if (!gone) throw new AppError('not_found');
      await recordAuditEvent(trx, { ...requestAudit(request), action: 'security.webhook_delete', outcome: 'success', target: { type: 'alert_webhook', id: gone.id } });
    });
    return reply.code(204).send(null);
  });
}
