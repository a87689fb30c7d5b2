import { sql } from '../../db/kysely.ts';
import { z } from '../../zod.ts';
import { problemResponses } from '../../server/schemas.ts';
import type { App } from '../../server/types.ts';

const floorSchema = z.object({
  at: z.string(),
  campaigns: z.array(z.object({ campaignId: z.string(), dialing: z.number(), connected: z.number() })),
  queues: z.array(
    z.object({
      id: z.string(),
      name: z.string(),
      serviceLevelSeconds: z.number(),
      waiting: z.number(),
      connected: z.number(),
      longestWaitMs: z.number().nullable(),
    }),
  ),
});

/**
 * GET /api/v1/floor: the floor as it is this moment, for the wallboard to start from and to come
 * back to after a dropped connection (the realtime feed carries the changes in between): calls in
 * progress per campaign, and each inbound queue with the calls waiting and the longest wait.
 */
export async function floorRoutes(app: App): Promise<void> {
  app.get(
    '/api/v1/floor',
    {
      config: { access: 'agents:monitor' },
      schema: {
        summary: 'The floor now: calls in progress per campaign; each inbound queue with calls waiting, connected and the longest wait',
        tags: ['reports'],
        response: { 200: floorSchema, ...problemResponses(401, 403) },
      },
    },
    async (request) =>
      request.tenantDb.read(async (trx) => {
        const now = new Date();
        const calls = await trx
          .selectFrom('dial_attempts')
          .select([
            'campaign_id',
            sql<number>`count(*) FILTER (WHERE state IN ('dialing', 'answered'))::int`.as('dialing'),
            sql<number>`count(*) FILTER (WHERE state = 'connected')::int`.as('connected'),
          ])
          .where('state', 'in', ['dialing', 'answered', 'connected'])
          .groupBy('campaign_id')
          .execute();
        const queues = await trx.selectFrom('queues').select(['id', 'name', 'service_level_seconds']).orderBy('name').execute();
        const live = await trx
          .selectFrom('inbound_calls')
          .select([
            'queue_id',
            sql<number>`count(*) FILTER (WHERE state = 'queued')::int`.as('waiting'),
            sql<number>`count(*) FILTER (WHERE state = 'connected')::int`.as('connected'),
            sql<Date | null>`min(offered_at) FILTER (WHERE state = 'queued')`.as('oldest'),
          ])
          .where('state', 'in', ['queued', 'connected'])
          .groupBy('queue_id')
          .execute();
        const byQueue = new Map(live.map((row) => [row.queue_id, row]));
        return {
          at: now.toISOString(),
          campaigns: calls.map((row) => ({ campaignId: row.campaign_id, dialing: row.dialing, connected: row.connected })),
          queues: queues.map((queue) => {
            const row = byQueue.get(queue.id);
            return {
              id: queue.id,
              name: queue.name,
              serviceLevelSeconds: queue.service_level_seconds,
              waiting: row?.waiting ?? 0,
              connected: row?.connected ?? 0,
              longestWaitMs: row?.oldest ? now.getTime() - new Date(row.oldest).getTime() : null,
            };
          }),
        };
      }),
  );
}
