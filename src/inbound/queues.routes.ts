import { sql } from '../db/kysely.ts';
import { z } from '../zod.ts';
import { stringify } from '../csv.ts';
import { CSV_OUT, neutraliseCell } from '../modules/contacts/csv-safety.ts';
import type { App } from '../server/types.ts';
import { AppError } from '../server/errors.ts';
import { problemResponses, uuidSchema } from '../server/schemas.ts';
import { recordAuditEvent } from '../audit/audit-event.ts';
import { requestAudit } from '../server/request-audit.ts';
import { everOpens, validateWindow } from '../dialer/calling-window.ts';
import { windowSchema } from '../modules/campaigns/campaign-settings.ts';

const skill = z.string().regex(/^[a-z][a-z0-9_]{0,39}$/, 'a skill code: lower-case letters, digits and _');
const queueBody = z.strictObject({
  name: z.string().trim().min(1).max(200),
  number: z.string().regex(/^\+[1-9]\d{6,14}$/, 'an E.164 number'),
  skills: z.array(skill).max(20).default([]),
  priority: z.number().int().min(0).max(100).default(0),
  serviceLevelSeconds: z.number().int().min(1).max(3600).default(20),
  shortAbandonSeconds: z.number().int().min(0).max(60).default(5),
  maxWaitSeconds: z.number().int().min(5).max(7200).default(300),
  overflowQueueId: uuidSchema.nullable().default(null),
  hours: z.array(windowSchema).max(14).default([]),
  timeZone: z.string().min(1).max(64).default('Europe/Oslo'),
});
const queueSchema = z.object({ id: z.string(), name: z.string(), number: z.string(), skills: z.array(z.string()), priority: z.number(), serviceLevelSeconds: z.number(), maxWaitSeconds: z.number(), overflowQueueId: z.string().nullable() });
const period = z.strictObject({ from: z.iso.datetime({ offset: true }).optional(), to: z.iso.datetime({ offset: true }).optional(), format: z.enum(['json', 'csv']).default('json') });

const queueColumns = ['id', 'name', 'number', 'skills', 'priority', 'service_level_seconds', 'max_wait_seconds', 'overflow_queue_id'] as const;
type QueueRow = { id: string; name: string; number: string; skills: string[]; priority: number; service_level_seconds: number; max_wait_seconds: number; overflow_queue_id: string | null };
const presentQueue = (queue: QueueRow) => ({
  id: queue.id,
  name: queue.name,
  number: queue.number,
  skills: queue.skills,
  priority: queue.priority,
  serviceLevelSeconds: queue.service_level_seconds,
  maxWaitSeconds: queue.max_wait_seconds,
  overflowQueueId: queue.overflow_queue_id,
});

/** Inbound queues, agents' skills, and each queue's service level. */
export async function queuesRoutes(app: App): Promise<void> {
  // Agents read the queues too: an inbound call on the desktop names the queue it came through.
  app.get(
    '/api/v1/queues',
    {
      config: { access: 'calls:handle' },
      schema: { summary: 'Inbound queues', tags: ['queues'], response: { 200: z.object({ items: z.array(queueSchema) }), ...problemResponses(401, 403) } },
    },
    async (request) => {
      const rows = await request.tenantDb.read((trx) => trx.selectFrom('queues').select(queueColumns).orderBy('name').execute());
      return { items: rows.map(presentQueue) };
    },
  );

  app.post(
    '/api/v1/queues',
    {
      config: { access: 'campaigns:manage' },
      schema: { summary: 'Create an inbound queue', tags: ['queues'], body: queueBody, response: { 201: queueSchema, ...problemResponses(400, 401, 403, 404, 409) } },
    },
    async (request, reply) => {
      const body = request.body;
      // Hours that never open would send every caller to the closed message.
      try {
        for (const window of body.hours) validateWindow(window);
        if (body.hours.length > 0 && !everOpens([body.hours])) throw new RangeError('the hours never open');
        new Intl.DateTimeFormat('en-US', { timeZone: body.timeZone });
      } catch (error) {
        throw new AppError('validation_failed', (error as Error).message, [{ path: 'body/hours', message: (error as Error).message }]);
      }
      const queue = await request.tenantDb.transaction(async (trx) => {
        if (body.overflowQueueId) {
          const overflow = await trx.selectFrom('queues').select('id').where('id', '=', body.overflowQueueId).executeTakeFirst();
          if (!overflow) throw new AppError('not_found', 'No such overflow queue.');
        }
        const created = await trx
          .insertInto('queues')
          .values({
            name: body.name,
            number: body.number,
            skills: body.skills,
            priority: body.priority,
            service_level_seconds: body.serviceLevelSeconds,
            short_abandon_seconds: body.shortAbandonSeconds,
            max_wait_seconds: body.maxWaitSeconds,
            overflow_queue_id: body.overflowQueueId,
            hours: JSON.stringify(body.hours),
            time_zone: body.timeZone,
          })
          .onConflict((conflict) => conflict.doNothing())
          .returning(queueColumns)
          .executeTakeFirst();
        if (!created) throw new AppError('conflict', 'A queue with this name or number exists.');
        await recordAuditEvent(trx, { ...requestAudit(request), action: 'queue.create', outcome: 'success', target: { type: 'queue', id: created.id } });
        return created;
      });
      return reply.code(201).send(presentQueue(queue));
    },
  );

  app.put(
    '/api/v1/agents/:userId/skills',
    {
      config: { access: 'campaigns:manage' },
      schema: {
        summary: "Set an agent's skills and whether they take inbound calls",
        tags: ['queues'],
        params: z.strictObject({ userId: uuidSchema }),
        body: z.strictObject({ skills: z.array(skill).max(20), takesInbound: z.boolean() }),
        response: { 200: z.object({ userId: z.string(), skills: z.array(z.string()), takesInbound: z.boolean() }), ...problemResponses(400, 401, 403, 404) },
      },
    },
    async (request) =>
      request.tenantDb.transaction(async (trx) => {
        const user = await trx.selectFrom('users').select('id').where('id', '=', request.params.userId).executeTakeFirst();
        if (!user) throw new AppError('not_found', 'No such user.');
        await trx
          .insertInto('agent_states')
          .values({ user_id: user.id, skills: request.body.skills, takes_inbound: request.body.takesInbound })
          .onConflict((conflict) => conflict.columns(['tenant_id', 'user_id']).doUpdateSet({ skills: request.body.skills, takes_inbound: request.body.takesInbound }))
          .execute();
        await recordAuditEvent(trx, { ...requestAudit(request), action: 'agent.skills', outcome: 'success', target: { type: 'user', id: user.id }, details: { skills: request.body.skills.join(','), takesInbound: request.body.takesInbound } });
        return { userId: user.id, skills: request.body.skills, takesInbound: request.body.takesInbound };
      }),
  );

  app.get(
    '/api/v1/reports/queues/:queueId',
    {
      config: { access: 'agents:monitor' },
      schema: {
        summary: "A queue's service level, abandonment and speed of answer over a period (default: the last 24 h)",
        tags: ['reports'],
        params: z.strictObject({ queueId: uuidSchema }),
        querystring: period,
        response: {
          200: z.object({
            queueId: z.string(),
            from: z.string(),
            to: z.string(),
            offered: z.number().int(),
            answered: z.number().int(),
            abandoned: z.number().int(),
            shortAbandons: z.number().int(),
            closed: z.number().int(),
            serviceLevel: z.number().nullable(),
            serviceLevelSeconds: z.number().int(),
            abandonmentRate: z.number().nullable(),
            averageSpeedOfAnswerMs: z.number().nullable(),
          }).or(z.string()),
          ...problemResponses(400, 401, 403, 404),
        },
      },
    },
    async (request, reply) => {
      const report = await request.tenantDb.read(async (trx) => {
        const queue = await trx.selectFrom('queues').select(['id', 'service_level_seconds', 'short_abandon_seconds']).where('id', '=', request.params.queueId).executeTakeFirst();
        if (!queue) throw new AppError('not_found', 'No such queue.');
        const to = request.query.to ? new Date(request.query.to) : new Date();
        const from = request.query.from ? new Date(request.query.from) : new Date(to.getTime() - 86_400_000);
        if (!(from < to)) throw new AppError('validation_failed', 'The period must end after it starts.', [{ path: 'querystring/to', message: 'after from' }]);
        const slMs = queue.service_level_seconds * 1000;
        const shortMs = queue.short_abandon_seconds * 1000;
        // Calls count for the queue they were first offered to (an overflowed call is still its caller's wait).
        const figures = await sql<{ offered: string; answered: string; within: string; abandoned: string; short: string; closed: string; asa: number | null }>`
          SELECT count(*) FILTER (WHERE outcome IS DISTINCT FROM 'closed') AS offered,
                 count(*) FILTER (WHERE answered_at IS NOT NULL) AS answered,
                 count(*) FILTER (WHERE answered_at IS NOT NULL AND wait_ms <= ${slMs}) AS within,
                 count(*) FILTER (WHERE outcome = 'abandoned' AND wait_ms >= ${shortMs}) AS abandoned,
                 count(*) FILTER (WHERE outcome = 'abandoned' AND wait_ms < ${shortMs}) AS short,
                 count(*) FILTER (WHERE outcome = 'closed') AS closed,
                 avg(wait_ms) FILTER (WHERE answered_at IS NOT NULL)::float8 AS asa
            FROM inbound_calls WHERE first_queue_id = ${queue.id} AND offered_at >= ${from} AND offered_at < ${to} AND state = 'ended'`.execute(trx);
        const row = figures.rows[0];
        const offered = Number(row?.offered ?? 0);
        const short = Number(row?.short ?? 0);
        const abandoned = Number(row?.abandoned ?? 0);
        const denominator = offered - short;
        return {
          queueId: queue.id,
          from: from.toISOString(),
          to: to.toISOString(),
          offered,
          answered: Number(row?.answered ?? 0),
          abandoned,
          shortAbandons: short,
          closed: Number(row?.closed ?? 0),
          // SL(T) = answered within T ÷ (offered − short abandons).
          serviceLevel: denominator > 0 ? Number(row?.within ?? 0) / denominator : null,
          serviceLevelSeconds: queue.service_level_seconds,
          abandonmentRate: offered > 0 ? abandoned / offered : null,
          averageSpeedOfAnswerMs: row?.asa ?? null,
        };
      });
      if (request.query.format === 'json') return report;
      const csv = stringify(
        [['figure', 'value'], ...Object.entries(report).map(([figure, value]) => [figure, value === null ? '' : String(value)])].map((cells) => cells.map(neutraliseCell)),
        CSV_OUT,
      );
      return reply.header('content-type', 'text/csv; charset=utf-8').header('content-disposition', 'attachment; filename="queue-report.csv"').header('cache-control', 'no-store').send(csv);
    },
  );
}
