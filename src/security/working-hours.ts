import { z } from '../zod.ts';
import type { TenantTransaction } from '../db/tenant-db.ts';
import { recordAuditEvent } from '../audit/audit-event.ts';
import { AppError } from '../server/errors.ts';
import { actorLabel, requestAudit } from '../server/request-audit.ts';
import { problemResponses } from '../server/schemas.ts';
import type { App } from '../server/types.ts';
import { DEFAULT_WORKING_HOURS, type WorkingHours } from './detection-rules.ts';

/** The organisation's working hours (the default when it has set none). */
export async function loadWorkingHours(trx: TenantTransaction): Promise<WorkingHours> {
  const row = await trx.selectFrom('security_working_hours').select(['time_zone', 'work_from', 'work_to', 'work_days']).executeTakeFirst();
  return row ? { timeZone: row.time_zone, from: row.work_from, to: row.work_to, days: row.work_days.map(Number) } : DEFAULT_WORKING_HOURS;
}

const isTimeZone = (value: string) => {
  try {
    new Intl.DateTimeFormat('en-GB', { timeZone: value });
    return true;
  } catch {
    return false;
  }
};

const hoursSchema = z.object({ timeZone: z.string(), from: z.number(), to: z.number(), days: z.array(z.number()) });
const hoursBody = z.strictObject({
  timeZone: z.string().min(1).max(64),
  from: z.number().int().min(0).max(23),
  to: z.number().int().min(1).max(24),
  days: z.array(z.number().int().min(1).max(7)).min(1).max(7),
});

/** /api/v1/security/working-hours: when the organisation works, for the rule on exports outside working hours. */
export async function workingHoursRoutes(app: App): Promise<void> {
  app.get('/api/v1/security/working-hours', { config: { access: 'security:manage' }, schema: { summary: 'When the organisation works (exports outside these hours raise an alert)', tags: ['security'], response: { 200: hoursSchema, ...problemResponses(401, 403) } } }, async (request) => {
    const hours = await request.tenantDb.read(loadWorkingHours);
    return { ...hours, days: [...hours.days] };
  });

  app.put('/api/v1/security/working-hours', { config: { access: 'security:manage', stepUp: true }, schema: { summary: 'Set the working hours, days and time zone', tags: ['security'], body: hoursBody, response: { 200: hoursSchema, ...problemResponses(400, 401, 403) } } }, async (request) => {
    const body = request.body;
    if (!isTimeZone(body.timeZone)) throw new AppError('validation_failed', 'Not a time zone this server knows (an IANA name such as Europe/Oslo).', [{ path: 'body/timeZone', message: 'unknown time zone' }]);
    if (body.from >= body.to) throw new AppError('rule_impossible', 'The working day ends after it starts.', [{ path: 'body/to', message: 'after from' }]);
    const days = [...new Set(body.days)].sort();
    return request.tenantDb.transaction(async (trx) => {
      const before = await loadWorkingHours(trx);
      const values = { time_zone: body.timeZone, work_from: body.from, work_to: body.to, work_days: days, updated_by: actorLabel(request), updated_at: new Date() };
      await trx.insertInto('security_working_hours').values(values).onConflict((conflict) => conflict.column('tenant_id').doUpdateSet(values)).execute();
      await recordAuditEvent(trx, { ...requestAudit(request), action: 'security.rule_update', outcome: 'success', target: { type: 'working_hours', id: 'tenant' }, details: { fromTimeZone: before.timeZone, fromHours: `${before.from}-${before.to}`, fromDays: before.days.join(' '), timeZone: body.timeZone, hours: `${body.from}-${body.to}`, days: days.join(' ') } });
      return { timeZone: body.timeZone, from: body.from, to: body.to, days };
    });
  });
}
