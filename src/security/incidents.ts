import type { FastifyRequest } from 'fastify';
import { z } from '../zod.ts';
import { sql, type Selectable } from '../db/kysely.ts';
import type { IncidentEventKind, IncidentsTable } from '../db/schema-security.ts';
import type { TenantTransaction } from '../db/tenant-db.ts';
import { recordAuditEvent } from '../audit/audit-event.ts';
import { announceAuthChange } from '../modules/access/auth-changes.ts';
import { nextIncidentReference, nextBreachReference } from '../privacy/requests.ts';
import { principalOf } from '../server/access-control.ts';
import { AppError } from '../server/errors.ts';
import { actorLabel, requestAudit } from '../server/request-audit.ts';
import { problemResponses, uuidSchema } from '../server/schemas.ts';
import type { App } from '../server/types.ts';
import { publish } from '../realtime/realtime.ts';
import { carryOut, containmentBody } from './containment.ts';

/**
 * Incident cases: opened from alerts or by hand, owned by someone, with a timeline of every step,
 * the alerts and audit events involved, and containment from the case itself — end a user's
 * sessions and tokens, disable an account, block an address range, pause a campaign's dialer.
 * When personal data is involved, one step opens the breach record in the privacy register
 * (awareness starts its 72 hours). Everything is audited; the timeline is append-only.
 *
 * Time to contain runs from the first sign (the earliest alert's first event, or the opening) to
 * the moment the case is marked contained; time to acknowledge is the alerts' own.
 */

const severitySchema = z.enum(['low', 'medium', 'high', 'critical']);
const stateSchema = z.enum(['open', 'contained', 'resolved']);
const manage = { access: 'security:manage' } as const;
/** Containment changes who may get in: a person who signed in moments ago, never an API token. */
const contain = { access: 'security:manage', stepUp: true } as const;
const MAX_LINKED_EVENTS = 500;

type IncidentRow = Selectable<IncidentsTable>;
const incidentSchema = z.object({
  id: z.string(),
  reference: z.string(),
  title: z.string(),
  description: z.string(),
  severity: severitySchema,
  state: stateSchema,
  ownerId: z.string().nullable(),
  personalData: z.boolean(),
  breachId: z.string().nullable(),
  detectedAt: z.string(),
  openedAt: z.string(),
  openedBy: z.string(),
  containedAt: z.string().nullable(),
  resolvedAt: z.string().nullable(),
  resolution: z.string().nullable(),
  /** Seconds from the first sign to containment (so far, while open). */
  secondsToContain: z.number(),
});
const present = (row: IncidentRow, now = Date.now()) => ({
  id: row.id,
  reference: row.reference,
  title: row.title,
  description: row.description,
  severity: row.severity,
  state: row.state,
  ownerId: row.owner_id,
  personalData: row.personal_data,
  breachId: row.breach_id,
  detectedAt: row.detected_at.toISOString(),
  openedAt: row.opened_at.toISOString(),
  openedBy: row.opened_by,
  containedAt: row.contained_at?.toISOString() ?? null,
  resolvedAt: row.resolved_at?.toISOString() ?? null,
  resolution: row.resolution,
  secondsToContain: Math.round(((row.contained_at?.getTime() ?? now) - row.detected_at.getTime()) / 1000),
});

const timelineSchema = z.object({ at: z.string(), actor: z.string(), kind: z.string(), entry: z.string(), details: z.record(z.string(), z.unknown()) });
const blockedSchema = z.object({ id: z.string(), network: z.string(), reason: z.string(), incidentId: z.string().nullable(), createdBy: z.string(), createdAt: z.string(), expiresAt: z.string().nullable(), liftedAt: z.string().nullable() });
type BlockedRow = { id: string; network: string; reason: string; incident_id: string | null; created_by: string; created_at: Date; expires_at: Date | null; lifted_at: Date | null };
const presentBlocked = (row: BlockedRow) => ({ id: row.id, network: row.network, reason: row.reason, incidentId: row.incident_id, createdBy: row.created_by, createdAt: row.created_at.toISOString(), expiresAt: row.expires_at?.toISOString() ?? null, liftedAt: row.lifted_at?.toISOString() ?? null });
const blockedColumns = ['id', sql<string>`network::text`.as('network'), 'reason', 'incident_id', 'created_by', 'created_at', 'expires_at', 'lifted_at'] as const;

async function addEvent(trx: TenantTransaction, incidentId: string, actor: string, kind: IncidentEventKind, entry: string, details: Record<string, unknown> = {}): Promise<void> {
  await trx.insertInto('incident_events').values({ incident_id: incidentId, actor, kind, entry: entry.slice(0, 2000), details: JSON.stringify(details) }).execute();
}

async function requireOwner(trx: TenantTransaction, userId: string): Promise<void> {
  const user = await trx.selectFrom('users').select(['status']).where('id', '=', userId).executeTakeFirst();
  if (!user || user.status !== 'active') throw new AppError('validation_failed', 'The owner must be an active user of this organisation.', [{ path: 'body/ownerId', message: 'not an active user' }]);
}

/** Links alerts to an incident (each belongs to one incident at most) and acknowledges the open ones. */
async function linkAlerts(trx: TenantTransaction, request: FastifyRequest, incidentId: string, alertIds: readonly string[]): Promise<Date | undefined> {
  if (alertIds.length === 0) return undefined;
  const alerts = await trx.selectFrom('security_alerts').select(['id', 'state', 'first_seen', 'rule_id', 'subject']).where('id', 'in', alertIds).forUpdate().execute();
  if (alerts.length !== new Set(alertIds).size) throw new AppError('not_found', 'An alert named does not exist.');
  const taken = await trx.selectFrom('incident_alerts').select(['alert_id']).where('alert_id', 'in', alertIds).executeTakeFirst();
  if (taken) throw new AppError('conflict', `Alert ${taken.alert_id} belongs to an incident already.`);
  const caller = principalOf(request);
  const aboutCaller = alerts.find((alert) => alert.subject === `user:${caller.userId}`);
  if (aboutCaller) throw new AppError('forbidden', 'An alert is about you: another security manager must take it into a case.');
  const now = new Date();
  for (const alert of alerts) {
    await trx.insertInto('incident_alerts').values({ incident_id: incidentId, alert_id: alert.id }).execute();
    // Taking an alert into a case acknowledges it.
    if (alert.state === 'open') {
      await trx.updateTable('security_alerts').set({ state: 'acknowledged', acknowledged_by: actorLabel(request), acknowledged_at: now }).where('id', '=', alert.id).execute();
      await recordAuditEvent(trx, { ...requestAudit(request), action: 'security.alert_acknowledged', outcome: 'success', target: { type: 'security_alert', id: alert.id }, details: { rule: alert.rule_id, incident: incidentId } });
    }
    await addEvent(trx, incidentId, actorLabel(request), 'alert_linked', `Alert ${alert.rule_id} (${alert.subject}) taken in`, { alertId: alert.id });
  }
  return new Date(Math.min(...alerts.map((alert) => alert.first_seen.getTime())));
}

async function loadIncident(trx: TenantTransaction, incidentId: string, forUpdate = false): Promise<IncidentRow> {
  let query = trx.selectFrom('incidents').selectAll().where('id', '=', incidentId);
  if (forUpdate) query = query.forUpdate();
  const row = await query.executeTakeFirst();
  if (!row) throw new AppError('not_found');
  return row;
}

export async function incidentRoutes(app: App): Promise<void> {
  const params = z.strictObject({ incidentId: uuidSchema });

  app.post('/api/v1/security/incidents', { config: manage, schema: { summary: 'Open an incident, from alerts or by hand', tags: ['security'], body: z.strictObject({ title: z.string().trim().min(1).max(200), description: z.string().trim().max(4000).default(''), severity: severitySchema, alertIds: z.array(uuidSchema).max(50).default([]), ownerId: uuidSchema.optional(), personalData: z.boolean().default(false) }), response: { 201: incidentSchema, ...problemResponses(400, 401, 403, 404, 409) } } }, async (request, reply) => {
    const body = request.body;
    const row = await request.tenantDb.transaction(async (trx) => {
      if (body.ownerId) await requireOwner(trx, body.ownerId);
      const now = new Date();
      const created = await trx
        .insertInto('incidents')
        .values({ reference: await nextIncidentReference(trx, now), title: body.title, description: body.description, severity: body.severity, owner_id: body.ownerId ?? principalOf(request).userId, personal_data: body.personalData, detected_at: now, opened_at: now, opened_by: actorLabel(request) })
        .returningAll()
        .executeTakeFirstOrThrow();
      await addEvent(trx, created.id, actorLabel(request), 'opened', `Incident opened (${body.severity})`);
      const firstSign = await linkAlerts(trx, request, created.id, body.alertIds);
      const opened = firstSign && firstSign < now ? await trx.updateTable('incidents').set({ detected_at: firstSign }).where('id', '=', created.id).returningAll().executeTakeFirstOrThrow() : created;
      await recordAuditEvent(trx, { ...requestAudit(request), action: 'security.incident', outcome: 'success', target: { type: 'incident', id: created.id }, details: { step: 'opened', reference: created.reference, severity: body.severity, alerts: body.alertIds.length } });
      await publish(trx, { topic: 'security.incident', incidentId: created.id, severity: body.severity, at: now.toISOString() });
      return opened;
    });
    return reply.code(201).send(present(row));
  });

  app.get('/api/v1/security/incidents', { config: manage, schema: { summary: 'Incidents, open first, newest first', tags: ['security'], querystring: z.strictObject({ state: stateSchema.optional(), limit: z.coerce.number().int().min(1).max(200).default(50) }), response: { 200: z.object({ items: z.array(incidentSchema) }), ...problemResponses(400, 401, 403) } } }, async (request) => {
    const rows = await request.tenantDb.read((trx) => {
      let query = trx.selectFrom('incidents').selectAll().orderBy(sql`state = 'resolved'`).orderBy('opened_at', 'desc').limit(request.query.limit);
      if (request.query.state) query = query.where('state', '=', request.query.state);
      return query.execute();
    });
    return { items: rows.map((row) => present(row)) };
  });

  const detailSchema = incidentSchema.extend({ timeline: z.array(timelineSchema), alertIds: z.array(z.string()), auditEventIds: z.array(z.string()), blockedNetworks: z.array(blockedSchema) });
  const detail = async (trx: TenantTransaction, incidentId: string) => {
    const row = await loadIncident(trx, incidentId);
    const timeline = await trx.selectFrom('incident_events').select(['at', 'actor', 'kind', 'entry', 'details']).where('incident_id', '=', incidentId).orderBy('id').limit(1000).execute();
    const alerts = await trx.selectFrom('incident_alerts').select('alert_id').where('incident_id', '=', incidentId).orderBy('linked_at').execute();
    const events = await trx.selectFrom('incident_audit_events').select('audit_event_id').where('incident_id', '=', incidentId).orderBy('audit_event_id').limit(MAX_LINKED_EVENTS).execute();
    const blocks = await trx.selectFrom('blocked_networks').select(blockedColumns).where('incident_id', '=', incidentId).orderBy('created_at').execute();
    return {
      ...present(row),
      timeline: timeline.map((event) => ({ at: event.at.toISOString(), actor: event.actor, kind: event.kind, entry: event.entry, details: event.details })),
      alertIds: alerts.map((alert) => alert.alert_id),
      auditEventIds: events.map((event) => String(event.audit_event_id)),
      blockedNetworks: blocks.map(presentBlocked),
    };
  };
  app.get('/api/v1/security/incidents/:incidentId', { config: manage, schema: { summary: 'One incident with its timeline, alerts, audit events and blocks', tags: ['security'], params, response: { 200: detailSchema, ...problemResponses(400, 401, 403, 404) } } }, async (request) => request.tenantDb.read((trx) => detail(trx, request.params.incidentId)));

  /** A change to a case that is not resolved: the row locked, the step on the timeline, audited. */
  const change = <T>(request: FastifyRequest<{ Params: { incidentId: string } }>, step: string, work: (trx: TenantTransaction, row: IncidentRow) => Promise<T>) =>
    request.tenantDb.transaction(async (trx) => {
      const row = await loadIncident(trx, request.params.incidentId, true);
      if (row.state === 'resolved') throw new AppError('invalid_transition', 'The incident is resolved.');
      const result = await work(trx, row);
      await recordAuditEvent(trx, { ...requestAudit(request), action: 'security.incident', outcome: 'success', target: { type: 'incident', id: row.id }, details: { step } });
      return result;
    });

  app.patch('/api/v1/security/incidents/:incidentId', { config: manage, schema: { summary: 'Change the severity, owner or description, or mark personal data involved', tags: ['security'], params, body: z.strictObject({ severity: severitySchema.optional(), ownerId: uuidSchema.optional(), description: z.string().trim().max(4000).optional(), personalData: z.boolean().optional() }), response: { 200: detailSchema, ...problemResponses(400, 401, 403, 404, 409) } } }, async (request) =>
    change(request, 'updated', async (trx, row) => {
      const body = request.body;
      const actor = actorLabel(request);
      if (body.severity && body.severity !== row.severity) await addEvent(trx, row.id, actor, 'severity', `Severity ${row.severity} → ${body.severity}`);
      if (body.ownerId && body.ownerId !== row.owner_id) {
        await requireOwner(trx, body.ownerId);
        await addEvent(trx, row.id, actor, 'owner', `Owner now user ${body.ownerId}`, { ownerId: body.ownerId });
      }
      if (body.description !== undefined && body.description !== row.description) await addEvent(trx, row.id, actor, 'note', 'Description updated');
      if (body.personalData !== undefined && body.personalData !== row.personal_data) {
        if (!body.personalData && row.breach_id) throw new AppError('invalid_transition', 'A breach record is open for this incident: personal data is involved.');
        await addEvent(trx, row.id, actor, 'note', body.personalData ? 'Personal data is involved' : 'Personal data is not involved');
      }
      await trx
        .updateTable('incidents')
        .set({ severity: body.severity ?? row.severity, owner_id: body.ownerId ?? row.owner_id, description: body.description ?? row.description, personal_data: body.personalData ?? row.personal_data })
        .where('id', '=', row.id)
        .execute();
      return detail(trx, row.id);
    }),
  );

  app.post('/api/v1/security/incidents/:incidentId/notes', { config: manage, schema: { summary: 'Add a note to the timeline', tags: ['security'], params, body: z.strictObject({ entry: z.string().trim().min(1).max(2000) }), response: { 200: detailSchema, ...problemResponses(400, 401, 403, 404, 409) } } }, async (request) =>
    change(request, 'note', async (trx, row) => {
      await addEvent(trx, row.id, actorLabel(request), 'note', request.body.entry);
      return detail(trx, row.id);
    }),
  );

  app.post('/api/v1/security/incidents/:incidentId/alerts', { config: manage, schema: { summary: 'Take more alerts into the incident', tags: ['security'], params, body: z.strictObject({ alertIds: z.array(uuidSchema).min(1).max(50) }), response: { 200: detailSchema, ...problemResponses(400, 401, 403, 404, 409) } } }, async (request) =>
    change(request, 'alerts_linked', async (trx, row) => {
      const firstSign = await linkAlerts(trx, request, row.id, request.body.alertIds);
      if (firstSign && firstSign < row.detected_at) await trx.updateTable('incidents').set({ detected_at: firstSign }).where('id', '=', row.id).execute();
      return detail(trx, row.id);
    }),
  );

  app.post('/api/v1/security/incidents/:incidentId/audit-events', { config: manage, schema: { summary: 'Link audit events to the incident (their ids in the ledger)', tags: ['security'], params, body: z.strictObject({ eventIds: z.array(z.string().regex(/^[1-9][0-9]{0,17}$/)).min(1).max(100) }), response: { 200: detailSchema, ...problemResponses(400, 401, 403, 404, 409) } } }, async (request) =>
    change(request, 'events_linked', async (trx, row) => {
      const wanted = [...new Set(request.body.eventIds)];
      const found = await trx.selectFrom('audit_events').select('id').where('id', 'in', wanted).execute();
      if (found.length !== wanted.length) throw new AppError('not_found', 'An audit event named is not in this organisation’s ledger.');
      const have = await trx.selectFrom('incident_audit_events').select((eb) => eb.fn.countAll<string>().as('n')).where('incident_id', '=', row.id).executeTakeFirstOrThrow();
      if (Number(have.n) + wanted.length > MAX_LINKED_EVENTS) throw new AppError('conflict', `At most ${MAX_LINKED_EVENTS} audit events per incident.`);
      await trx.insertInto('incident_audit_events').values(wanted.map((id) => ({ incident_id: row.id, audit_event_id: id }))).onConflict((conflict) => conflict.doNothing()).execute();
      await addEvent(trx, row.id, actorLabel(request), 'events_linked', `${wanted.length} audit event(s) linked`, { eventIds: wanted });
      return detail(trx, row.id);
    }),
  );

  app.post('/api/v1/security/incidents/:incidentId/containment', { config: contain, schema: { summary: 'Contain: end a user’s sessions and tokens, disable an account, block an address range, or pause a campaign', tags: ['security'], params, body: containmentBody, response: { 200: detailSchema, ...problemResponses(400, 401, 403, 404, 409) } } }, async (request) =>
    change(request, 'containment', async (trx, row) => {
      const done = await carryOut(trx, request, row.id, request.body);
      await addEvent(trx, row.id, actorLabel(request), 'containment', done.entry, { action: request.body.action, ...done.details });
      await recordAuditEvent(trx, { ...requestAudit(request), action: 'security.containment', outcome: 'success', target: { type: 'incident', id: row.id }, details: { action: request.body.action, ...done.details } });
      return detail(trx, row.id);
    }),
  );

  app.post('/api/v1/security/incidents/:incidentId/contain', { config: manage, schema: { summary: 'Mark the incident contained (the time to contain stops here)', tags: ['security'], params, body: z.strictObject({ entry: z.string().trim().min(3).max(2000) }), response: { 200: detailSchema, ...problemResponses(400, 401, 403, 404, 409) } } }, async (request) =>
    change(request, 'contained', async (trx, row) => {
      if (row.state !== 'open') throw new AppError('invalid_transition', `The incident is ${row.state} already.`);
      await trx.updateTable('incidents').set({ state: 'contained', contained_at: new Date() }).where('id', '=', row.id).execute();
      await addEvent(trx, row.id, actorLabel(request), 'contained', request.body.entry);
      return detail(trx, row.id);
    }),
  );

  app.post('/api/v1/security/incidents/:incidentId/resolve', { config: manage, schema: { summary: 'Resolve the incident, with what was found and done', tags: ['security'], params, body: z.strictObject({ resolution: z.string().trim().min(3).max(2000) }), response: { 200: detailSchema, ...problemResponses(400, 401, 403, 404, 409) } } }, async (request) =>
    change(request, 'resolved', async (trx, row) => {
      const breach = row.breach_id ? await trx.selectFrom('breaches').select(['status', 'authority_decision']).where('id', '=', row.breach_id).executeTakeFirst() : undefined;
      if (breach && breach.authority_decision === null) throw new AppError('invalid_transition', 'Its breach record has no decision on notifying the authority yet: the privacy team decides first.');
      const now = new Date();
      await trx.updateTable('incidents').set({ state: 'resolved', resolved_at: now, resolution: request.body.resolution, contained_at: row.contained_at ?? now }).where('id', '=', row.id).execute();
      await addEvent(trx, row.id, actorLabel(request), 'resolved', request.body.resolution);
      return detail(trx, row.id);
    }),
  );

  app.post('/api/v1/security/incidents/:incidentId/breach', { config: manage, schema: { summary: 'Open a breach record in the privacy register for this incident (its 72 hours start now)', tags: ['security'], params, body: z.strictObject({ dataCategories: z.array(z.string().trim().min(1).max(100)).max(20).default([]), dataEncrypted: z.boolean().default(false) }), response: { 200: detailSchema, ...problemResponses(400, 401, 403, 404, 409) } } }, async (request) =>
    change(request, 'breach_opened', async (trx, row) => {
      if (row.breach_id) throw new AppError('conflict', 'A breach record is open for this incident already.');
      const now = new Date();
      const breach = await trx
        .insertInto('breaches')
        .values({
          reference: await nextBreachReference(trx, now),
          title: row.title,
          description: `From security incident ${row.reference}.${row.description ? ` ${row.description}` : ''}`.slice(0, 4000),
          detected_at: row.detected_at,
          aware_at: now,
          data_categories: request.body.dataCategories,
          data_encrypted: request.body.dataEncrypted,
          created_by: actorLabel(request),
        })
        .returning(['id', 'reference'])
        .executeTakeFirstOrThrow();
      await trx.insertInto('breach_events').values({ breach_id: breach.id, actor: actorLabel(request), entry: `Breach recorded from security incident ${row.reference}` }).execute();
      await recordAuditEvent(trx, { ...requestAudit(request), action: 'privacy.breach', outcome: 'success', target: { type: 'breach', id: breach.id }, details: { step: 'recorded', reference: breach.reference, incident: row.id } });
      await trx.updateTable('incidents').set({ breach_id: breach.id, personal_data: true }).where('id', '=', row.id).execute();
      await addEvent(trx, row.id, actorLabel(request), 'breach_opened', `Breach ${breach.reference} opened in the privacy register; the 72 hours run from ${now.toISOString()}`, { breachId: breach.id });
      return detail(trx, row.id);
    }),
  );

  app.get('/api/v1/security/blocked-networks', { config: manage, schema: { summary: 'Blocked address ranges, in force first', tags: ['security'], response: { 200: z.object({ items: z.array(blockedSchema) }), ...problemResponses(401, 403) } } }, async (request) => {
    const rows = await request.tenantDb.read((trx) => trx.selectFrom('blocked_networks').select(blockedColumns).orderBy(sql`lifted_at IS NOT NULL`).orderBy('created_at', 'desc').limit(1000).execute());
    return { items: rows.map(presentBlocked) };
  });

  app.post('/api/v1/security/blocked-networks/:blockId/lift', { config: contain, schema: { summary: 'Lift a block', tags: ['security'], params: z.strictObject({ blockId: uuidSchema }), response: { 200: blockedSchema, ...problemResponses(400, 401, 403, 404, 409) } } }, async (request) =>
    request.tenantDb.transaction(async (trx) => {
      const row = await trx.selectFrom('blocked_networks').select(['id', 'lifted_at', 'incident_id', sql<string>`network::text`.as('network')]).where('id', '=', request.params.blockId).forUpdate().executeTakeFirst();
      if (!row) throw new AppError('not_found');
      if (row.lifted_at) throw new AppError('invalid_transition', 'The block is lifted already.');
      const lifted = await trx.updateTable('blocked_networks').set({ lifted_at: new Date(), lifted_by: actorLabel(request) }).where('id', '=', row.id).returning(blockedColumns).executeTakeFirstOrThrow();
      if (row.incident_id) await addEvent(trx, row.incident_id, actorLabel(request), 'containment', `Lifted the block of ${row.network}`, { blockId: row.id });
      await recordAuditEvent(trx, { ...requestAudit(request), action: 'security.network_unblock', outcome: 'success', target: { type: 'blocked_network', id: row.id }, details: { network: row.network } });
      announceAuthChange(trx);
      return presentBlocked(lifted);
    }),
  );
}
