import type { TenantTransaction } from '../db/tenant-db.ts';
import type { Severity } from '../db/schema.ts';
import { recordAuditEvent } from '../audit/audit-event.ts';
import { publish } from '../realtime/realtime.ts';
import { RULES_BY_ID, SEVERITY_RANK, STORM_RULE_ID, type RuleSettings } from './detection-rules.ts';
import type { Hit } from './detector.ts';

/**
 * The alert store. A hit on a rule and subject that has an open (or acknowledged) alert seen
 * within the rule's window adds to that alert's count and evidence; otherwise it raises a new
 * alert — audited, published to the tenant's security console, and queued for its webhooks. New
 * alerts are rate-limited per tenant: beyond MAX_NEW_PER_MINUTE, low and medium hits fold into
 * one `monitor.alert_storm` alert with a count, so a flood never becomes thousands of alerts;
 * high and critical ones always raise their own (a flood must not hide an escalation).
 * Repeats are sent to webhooks at most every REPEAT_DELIVERY_MS per alert.
 */

export const MAX_NEW_PER_MINUTE = 20;
const REPEAT_DELIVERY_MS = 5 * 60_000;

export type AlertOutcome = { raised: string[]; updated: string[]; stormed: number };
export type RaisedAlert = { id: string; ruleId: string; severity: Severity; summary: string };
/** Told of every new alert in its transaction (the monitor e-mails the security contacts). */
export type OnRaised = (trx: TenantTransaction, alert: RaisedAlert) => Promise<void>;

async function enqueueDeliveries(trx: TenantTransaction, alertId: string, severity: Severity, hits: number): Promise<void> {
  const hooks = await trx.selectFrom('alert_webhooks').select(['id', 'min_severity']).where('enabled', '=', true).execute();
  const wanted = hooks.filter((hook) => SEVERITY_RANK[hook.min_severity] <= SEVERITY_RANK[severity]);
  if (wanted.length > 0) await trx.insertInto('alert_deliveries').values(wanted.map((hook) => ({ alert_id: alertId, webhook_id: hook.id, hits }))).execute();
}

function summaryOf(ruleId: string, subject: string, count: number, windowSeconds: number): string {
  const title = RULES_BY_ID.get(ruleId)?.title ?? (ruleId === STORM_RULE_ID ? 'More alerts than the rate limit allows' : ruleId);
  const window = windowSeconds >= 3600 ? `${Math.round(windowSeconds / 360) / 10} h` : windowSeconds >= 60 ? `${Math.round(windowSeconds / 6) / 10} min` : `${windowSeconds} s`;
  return `${title}: ${count} within ${window} (${subject})`.slice(0, 500);
}

/** Saves the hits of one batch, in the transaction that also advances the detector's cursor. */
export async function recordHits(trx: TenantTransaction, hits: readonly Hit[], settings: ReadonlyMap<string, RuleSettings>, now: Date, onRaised?: OnRaised): Promise<AlertOutcome> {
  const outcome: AlertOutcome = { raised: [], updated: [], stormed: 0 };
  if (hits.length === 0) return outcome;
  const recent = await trx.selectFrom('security_alerts').select((eb) => eb.fn.countAll<string>().as('n')).where('raised_at', '>', new Date(now.getTime() - 60_000)).where('rule_id', '<>', STORM_RULE_ID).executeTakeFirstOrThrow();
  let budget = MAX_NEW_PER_MINUTE - Number(recent.n);
  const stormEvidence: string[] = [];
  // Most severe first; high and critical alerts are never held back by the limit, so a flood of
  // lesser alerts cannot hide an escalation in the storm.
  const ordered = [...hits].sort((a, b) => SEVERITY_RANK[settings.get(b.ruleId)?.severity ?? 'low'] - SEVERITY_RANK[settings.get(a.ruleId)?.severity ?? 'low']);
  for (const hit of ordered) {
    const setting = settings.get(hit.ruleId);
    if (!setting) continue;
    const open = await trx
      .selectFrom('security_alerts')
      .select(['id', 'hits', 'severity', 'evidence'])
      .where('rule_id', '=', hit.ruleId)
      .where('subject', '=', hit.subject)
      .where('state', '<>', 'resolved')
      .where('last_seen', '>', new Date(hit.firstSeen.getTime() - setting.windowSeconds * 1000))
      .orderBy('last_seen', 'desc')
      .forUpdate()
      .executeTakeFirst();
    if (open) {
      const evidence = [...open.evidence, ...hit.evidence.filter((id) => !open.evidence.includes(id))].slice(-100);
      await trx.updateTable('security_alerts').set({ hits: open.hits + hit.newEvents, last_seen: hit.lastSeen, evidence, summary: summaryOf(hit.ruleId, hit.subject, open.hits + hit.newEvents, setting.windowSeconds) }).where('id', '=', open.id).execute();
      outcome.updated.push(open.id);
      const lastSent = await trx.selectFrom('alert_deliveries').select((eb) => eb.fn.max('created_at').as('at')).where('alert_id', '=', open.id).executeTakeFirst();
      if (!lastSent?.at || now.getTime() - new Date(lastSent.at).getTime() >= REPEAT_DELIVERY_MS) await enqueueDeliveries(trx, open.id, open.severity, open.hits + hit.newEvents);
      continue;
    }
    if (budget <= 0 && SEVERITY_RANK[setting.severity] < SEVERITY_RANK.high) {
      outcome.stormed += 1;
      stormEvidence.push(...hit.evidence.slice(-5));
      continue;
    }
    budget -= 1;
    const raised = await trx
      .insertInto('security_alerts')
      .values({ rule_id: hit.ruleId, severity: setting.severity, subject: hit.subject, summary: summaryOf(hit.ruleId, hit.subject, hit.windowCount, setting.windowSeconds), hits: hit.windowCount, first_seen: hit.firstSeen, last_seen: hit.lastSeen, evidence: hit.evidence })
      .returning('id')
      .executeTakeFirstOrThrow();
    await recordAuditEvent(trx, { action: 'security.alert_raised', outcome: 'success', actor: { type: 'system', id: 'security-monitor' }, target: { type: 'security_alert', id: raised.id }, details: { rule: hit.ruleId, severity: setting.severity, hits: hit.windowCount } });
    await publish(trx, { topic: 'security.alert', alertId: raised.id, ruleId: hit.ruleId, severity: setting.severity, at: now.toISOString() });
    await enqueueDeliveries(trx, raised.id, setting.severity, hit.windowCount);
    await onRaised?.(trx, { id: raised.id, ruleId: hit.ruleId, severity: setting.severity, summary: summaryOf(hit.ruleId, hit.subject, hit.windowCount, setting.windowSeconds) });
    outcome.raised.push(raised.id);
  }
  if (outcome.stormed > 0) {
    // The storm itself: one open alert per tenant, counting what the limit held back, with some
    // of their events as evidence; raised and updated like any other alert.
    const storm = await trx.selectFrom('security_alerts').select(['id', 'hits', 'evidence']).where('rule_id', '=', STORM_RULE_ID).where('state', '<>', 'resolved').forUpdate().executeTakeFirst();
    let stormId: string;
    let stormHits: number;
    if (storm) {
      stormId = storm.id;
      stormHits = storm.hits + outcome.stormed;
      await trx.updateTable('security_alerts').set({ hits: stormHits, last_seen: now, evidence: [...storm.evidence, ...stormEvidence].slice(-100), summary: summaryOf(STORM_RULE_ID, 'tenant', stormHits, 60) }).where('id', '=', storm.id).execute();
      const lastSent = await trx.selectFrom('alert_deliveries').select((eb) => eb.fn.max('created_at').as('at')).where('alert_id', '=', storm.id).executeTakeFirst();
      if (!lastSent?.at || now.getTime() - new Date(lastSent.at).getTime() >= REPEAT_DELIVERY_MS) await enqueueDeliveries(trx, storm.id, 'high', stormHits);
    } else {
      stormHits = outcome.stormed;
      const raised = await trx
        .insertInto('security_alerts')
        .values({ rule_id: STORM_RULE_ID, severity: 'high', subject: 'tenant', summary: summaryOf(STORM_RULE_ID, 'tenant', stormHits, 60), hits: stormHits, first_seen: now, last_seen: now, evidence: stormEvidence.slice(-100) })
        .returning('id')
        .executeTakeFirstOrThrow();
      stormId = raised.id;
      await recordAuditEvent(trx, { action: 'security.alert_raised', outcome: 'success', actor: { type: 'system', id: 'security-monitor' }, target: { type: 'security_alert', id: raised.id }, details: { rule: STORM_RULE_ID, severity: 'high', hits: stormHits } });
      await enqueueDeliveries(trx, raised.id, 'high', stormHits);
      await onRaised?.(trx, { id: raised.id, ruleId: STORM_RULE_ID, severity: 'high', summary: summaryOf(STORM_RULE_ID, 'tenant', stormHits, 60) });
      outcome.raised.push(raised.id);
    }
    await publish(trx, { topic: 'security.alert', alertId: stormId, ruleId: STORM_RULE_ID, severity: 'high', at: now.toISOString() });
  }
  return outcome;
}
