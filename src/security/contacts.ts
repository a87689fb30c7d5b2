import { z } from '../zod.ts';
import { sql } from '../db/kysely.ts';
import type { TenantTransaction } from '../db/tenant-db.ts';
import type { Severity } from '../db/schema-security.ts';
import { recordAuditEvent } from '../audit/audit-event.ts';
import { loadSecurityPolicy } from '../modules/access/security-policy.ts';
import { loadUserAccess } from '../modules/auth/sessions.ts';
import { AppError } from '../server/errors.ts';
import { actorLabel, requestAudit } from '../server/request-audit.ts';
import { problemResponses, uuidSchema } from '../server/schemas.ts';
import type { App } from '../server/types.ts';
import { SEVERITY_RANK } from './detection-rules.ts';

/**
 * Who answers for security: the tenant's standing security contacts (high and critical alerts are
 * e-mailed to them) and its on-call rota (whoever's shift covers now gets every alert of medium
 * severity or more). With neither named, the tenant's active owners and administrators are told,
 * so an alert never goes unheard. And the status of the response: open alerts and incidents,
 * time to acknowledge and time to contain.
 */

const MAX_CONTACTS = 20;

async function requireSecurityManager(trx: TenantTransaction, userId: string, path: string): Promise<void> {
  const access = await loadUserAccess(trx, userId, await loadSecurityPolicy(trx));
  if (!access || access.status !== 'active' || !access.permissions.includes('security:manage')) {
    throw new AppError('validation_failed', 'A security contact is an active user who may manage security.', [{ path, message: 'not an active security manager' }]);
  }
}

/** Who is told of a new alert of this severity: the people named for it, else owners and administrators. */
export async function alertRecipients(trx: TenantTransaction, severity: Severity, now = new Date()): Promise<string[]> {
  if (SEVERITY_RANK[severity] < SEVERITY_RANK.medium) return [];
  const high = SEVERITY_RANK[severity] >= SEVERITY_RANK.high;
  const onCall = await trx.selectFrom('security_on_call').select('user_id').where('starts_at', '<=', now).where('ends_at', '>', now).execute();
  const contacts = high ? await trx.selectFrom('security_contacts').select('user_id').execute() : [];
  const named = [...new Set([...onCall, ...contacts].map((row) => row.user_id))];
  // Named people who may still manage security (one demoted since is told nothing more).
  const policy = named.length === 0 ? undefined : await loadSecurityPolicy(trx);
  const active: string[] = [];
  for (const userId of named) {
    const access = policy ? await loadUserAccess(trx, userId, policy) : undefined;
    if (access?.status === 'active' && access.permissions.includes('security:manage')) active.push(userId);
  }
  if (active.length > 0 || !high) return active;
  // A high or critical alert with nobody named (or nobody named who still may): the owners and administrators.
  const fallback = await trx.selectFrom('users').select('id').where('status', '=', 'active').where('role', 'in', ['owner', 'admin']).execute();
  return fallback.map((row) => row.id);
}

const shiftSchema = z.object({ id: z.string(), userId: z.string(), startsAt: z.string(), endsAt: z.string(), createdBy: z.string() });
const contactsSchema = z.object({ contacts: z.array(z.object({ userId: z.string(), addedAt: z.string(), addedBy: z.string() })), onCallNow: z.array(z.string()), shifts: z.array(shiftSchema) });

const durationStats = (values: number[]) => {
  if (values.length === 0) return { count: 0, medianSeconds: null, p90Seconds: null, maxSeconds: null };
  const sorted = [...values].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)] ?? null;
  return { count: sorted.length, medianSeconds: at(0.5), p90Seconds: at(0.9), maxSeconds: sorted[sorted.length - 1] ?? null };
};
const statsSchema = z.object({ count: z.number(), medianSeconds: z.number().nullable(), p90Seconds: z.number().nullable(), maxSeconds: z.number().nullable() });

export async function securityContactRoutes(app: App): Promise<void> {
  const load = async (trx: TenantTransaction) => {
    const now = new Date();
    const contacts = await trx.selectFrom('security_contacts').select(['user_id', 'created_at', 'created_by']).orderBy('created_at').execute();
    const shifts = await trx.selectFrom('security_on_call').select(['id', 'user_id', 'starts_at', 'ends_at', 'created_by']).where('ends_at', '>', now).orderBy('starts_at').limit(500).execute();
    return {
      contacts: contacts.map((row) => ({ userId: row.user_id, addedAt: row.created_at.toISOString(), addedBy: row.created_by })),
      onCallNow: shifts.filter((shift) => shift.starts_at <= now).map((shift) => shift.user_id),
      shifts: shifts.map((shift) => ({ id: shift.id, userId: shift.user_id, startsAt: shift.starts_at.toISOString(), endsAt: shift.ends_at.toISOString(), createdBy: shift.created_by })),
    };
  };

  app.get('/api/v1/security/contacts', { config: { access: 'security:manage' }, schema: { summary: 'The security contacts and the on-call rota (now and ahead)', tags: ['security'], response: { 200: contactsSchema, ...problemResponses(401, 403) } } }, async (request) => request.tenantDb.read(load));

  app.put('/api/v1/security/contacts', { config: { access: 'security:manage', stepUp: true }, schema: { summary: 'Name the standing security contacts', tags: ['security'], body: z.strictObject({ userIds: z.array(uuidSchema).max(MAX_CONTACTS) }), response: { 200: contactsSchema, ...problemResponses(400, 401, 403) } } }, async (request) =>
    request.tenantDb.transaction(async (trx) => {
      const wanted = [...new Set(request.body.userIds)];
      for (const [index, userId] of wanted.entries()) await requireSecurityManager(trx, userId, `body/userIds/${index}`);
      const before = await trx.selectFrom('security_contacts').select('user_id').execute();
      await trx.deleteFrom('security_contacts').where('user_id', 'not in', wanted.length > 0 ? wanted : ['00000000-0000-0000-0000-000000000000']).execute();
      if (wanted.length > 0) await trx.insertInto('security_contacts').values(wanted.map((userId) => ({ user_id: userId, created_by: actorLabel(request) }))).onConflict((conflict) => conflict.doNothing()).execute();
      await recordAuditEvent(trx, { ...requestAudit(request), action: 'security.contacts', outcome: 'success', target: { type: 'security_contacts', id: 'tenant' }, details: { before: before.map((row) => row.user_id).join(' '), after: wanted.join(' ') } });
      return load(trx);
    }),
  );

  app.post('/api/v1/security/on-call', { config: { access: 'security:manage', stepUp: true }, schema: { summary: 'Add an on-call shift', tags: ['security'], body: z.strictObject({ userId: uuidSchema, startsAt: z.iso.datetime({ offset: true }), endsAt: z.iso.datetime({ offset: true }) }), response: { 201: contactsSchema, ...problemResponses(400, 401, 403, 409) } } }, async (request, reply) => {
    const startsAt = new Date(request.body.startsAt);
    const endsAt = new Date(request.body.endsAt);
    if (endsAt <= startsAt) throw new AppError('validation_failed', 'A shift ends after it starts.', [{ path: 'body/endsAt', message: 'after startsAt' }]);
    if (endsAt.getTime() - startsAt.getTime() > 31 * 86_400_000) throw new AppError('validation_failed', 'A shift lasts at most 31 days.', [{ path: 'body/endsAt', message: 'within 31 days of startsAt' }]);
    if (endsAt.getTime() <= Date.now()) throw new AppError('validation_failed', 'The shift is over already.', [{ path: 'body/endsAt', message: 'in the future' }]);
    const answer = await request.tenantDb.transaction(async (trx) => {
      await requireSecurityManager(trx, request.body.userId, 'body/userId');
      // One writer per tenant, so two overlapping shifts cannot both pass the check.
      await sql`SELECT pg_advisory_xact_lock(hashtext(${`${trx.tenantId}:security_on_call`}))`.execute(trx);
      const overlap = await trx.selectFrom('security_on_call').select('id').where('starts_at', '<', endsAt).where('ends_at', '>', startsAt).executeTakeFirst();
      if (overlap) throw new AppError('conflict', 'Another shift covers part of that time: one person is on call at a time.');
      const created = await trx.insertInto('security_on_call').values({ user_id: request.body.userId, starts_at: startsAt, ends_at: endsAt, created_by: actorLabel(request) }).returning('id').executeTakeFirstOrThrow();
      await recordAuditEvent(trx, { ...requestAudit(request), action: 'security.on_call', outcome: 'success', target: { type: 'on_call_shift', id: created.id }, details: { step: 'added', user: request.body.userId, startsAt: startsAt.toISOString(), endsAt: endsAt.toISOString() } });
      return load(trx);
    });
    return reply.code(201).send(answer);
  });

  app.delete('/api/v1/security/on-call/:shiftId', { config: { access: 'security:manage', stepUp: true }, schema: { summary: 'Remove an on-call shift', tags: ['security'], params: z.strictObject({ shiftId: uuidSchema }), response: { 200: contactsSchema, ...problemResponses(400, 401, 403, 404) } } }, async (request) =>
    request.tenantDb.transaction(async (trx) => {
      const gone = await trx.deleteFrom('security_on_call').where('id', '=', request.params.shiftId).returning(['id', 'user_id']).executeTakeFirst();
      if (!gone) throw new AppError('not_found');
      await recordAuditEvent(trx, { ...requestAudit(request), action: 'security.on_call', outcome: 'success', target: { type: 'on_call_shift', id: gone.id }, details: { step: 'removed', user: gone.user_id } });
      return load(trx);
    }),
  );

  const statusSchema = z.object({
    windowDays: z.number(),
    openAlerts: z.object({ low: z.number(), medium: z.number(), high: z.number(), critical: z.number() }),
    unacknowledged: z.number(),
    oldestUnacknowledgedAt: z.string().nullable(),
    openIncidents: z.number(),
    containedIncidents: z.number(),
    timeToAcknowledge: statsSchema,
    timeToContain: statsSchema,
    onCallNow: z.array(z.string()),
    contacts: z.number(),
  });
  app.get('/api/v1/security/status', { config: { access: 'security:manage' }, schema: { summary: 'Open alerts and incidents, with time to acknowledge and time to contain', tags: ['security'], querystring: z.strictObject({ days: z.coerce.number().int().min(1).max(366).default(30) }), response: { 200: statusSchema, ...problemResponses(400, 401, 403) } } }, async (request) =>
    request.tenantDb.read(async (trx) => {
      const since = new Date(Date.now() - request.query.days * 86_400_000);
      const open = await trx.selectFrom('security_alerts').select(['severity', 'state', (eb) => eb.fn.countAll<string>().as('n'), (eb) => eb.fn.min('raised_at').as('oldest')]).where('state', '<>', 'resolved').groupBy(['severity', 'state']).execute();
      const openAlerts = { low: 0, medium: 0, high: 0, critical: 0 };
      let unacknowledged = 0;
      let oldest: Date | undefined;
      for (const row of open) {
        openAlerts[row.severity] += Number(row.n);
        if (row.state === 'open') {
          unacknowledged += Number(row.n);
          const at = new Date(row.oldest as unknown as string);
          if (!oldest || at < oldest) oldest = at;
        }
      }
      const acks = await trx.selectFrom('security_alerts').select(sql<number>`extract(epoch FROM acknowledged_at - raised_at)::float8`.as('s')).where('raised_at', '>=', since).where('acknowledged_at', 'is not', null).limit(100_000).execute();
      const contains = await trx.selectFrom('incidents').select(sql<number>`extract(epoch FROM contained_at - detected_at)::float8`.as('s')).where('opened_at', '>=', since).where('contained_at', 'is not', null).limit(100_000).execute();
      const incidents = await trx.selectFrom('incidents').select(['state', (eb) => eb.fn.countAll<string>().as('n')]).where('state', '<>', 'resolved').groupBy('state').execute();
      const rota = await load(trx);
      return {
        windowDays: request.query.days,
        openAlerts,
        unacknowledged,
        oldestUnacknowledgedAt: oldest?.toISOString() ?? null,
        openIncidents: Number(incidents.find((row) => row.state === 'open')?.n ?? 0),
        containedIncidents: Number(incidents.find((row) => row.state === 'contained')?.n ?? 0),
        timeToAcknowledge: durationStats(acks.map((row) => Math.round(Number(row.s)))),
        timeToContain: durationStats(contains.map((row) => Math.round(Number(row.s)))),
        onCallNow: rota.onCallNow,
        contacts: rota.contacts.length,
      };
    }),
  );
}
