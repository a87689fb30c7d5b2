import { sql } from '../../db/kysely.ts';
import { z } from '../../zod.ts';
import { stringify } from '../../csv.ts';
import type { App } from '../../server/types.ts';
import { AppError } from '../../server/errors.ts';
import { problemResponses, uuidSchema } from '../../server/schemas.ts';
import type { TenantTransaction } from '../../db/tenant-db.ts';
import { abandonmentMeasures, type AmdAccuracy } from '../../dialer/dial-stats.ts';
import { loadCampaign, loadProfiles } from '../campaigns/campaign-settings.ts';
import { agentStates } from '../agents/agent-states.ts';
import { CSV_OUT, neutraliseCell } from '../contacts/csv-safety.ts';

/**
 * Reports for supervisors: per campaign over its legal window (or a chosen period) — abandonment
 * on both legal measures, contact rate, handle time, attempts per outcome, dial-time refusals —
 * and per agent the time in each state and the occupancy. JSON, or CSV with ?format=csv.
 */

/**
 * The detector accuracy the UK estimate of people taken for machines rests on: the simulator's
 * declared accuracy. A provider with a measured accuracy will state its own here.
 */
export const DECLARED_AMD_ACCURACY: AmdAccuracy = { humanAsHuman: 0.97, machineAsMachine: 0.88 };

const period = z.strictObject({
  from: z.iso.datetime({ offset: true }).optional(),
  to: z.iso.datetime({ offset: true }).optional(),
  format: z.enum(['json', 'csv']).default('json'),
});

const measureSchema = z.object({ rate: z.number(), abandoned: z.number(), liveAnswers: z.number() });
const campaignReport = z.object({
  campaignId: z.string(),
  jurisdiction: z.string().nullable(),
  from: z.string(),
  to: z.string(),
  dials: z.number().int(),
  outcomes: z.record(z.string(), z.number().int()),
  skipped: z.record(z.string(), z.number().int()),
  contactRate: z.number(),
  abandonment: z.object({ us: measureSchema, uk: measureSchema.extend({ estimatedAmdFalsePositives: z.number() }) }),
  cap: z.number().nullable(),
  averageTalkMs: z.number().nullable(),
  averageHandleMs: z.number().nullable(),
  averageConnectMs: z.number().nullable(),
  informationMessages: z.number().int(),
});
const agentRow = z.object({ userId: z.string(), msInState: z.record(z.string(), z.number()), occupancy: z.number().nullable() });

function csvOf(rows: (string | number | null)[][]): string {
  return stringify(
    rows.map((row) => row.map((cell) => neutraliseCell(cell === null ? '' : String(cell)))),
    CSV_OUT,
  );
}

async function campaignFigures(trx: TenantTransaction, campaignId: string, query: z.infer<typeof period>) {
  const campaign = await loadCampaign(trx, campaignId);
  const [profile] = campaign.jurisdiction ? await loadProfiles(trx, campaign.jurisdiction) : [];
  const now = Date.now();
  // Default period: the legal window the campaign is in now (30 days US, 24 h UK), from its start.
  let from = query.from ? Date.parse(query.from) : undefined;
  const to = query.to ? Date.parse(query.to) : now;
  if (from === undefined) {
    const started = campaign.started_at?.getTime() ?? campaign.created_at.getTime();
    const windowMs = profile?.abandonWindowMs ?? 86_400_000;
    from = started + Math.floor(Math.max(0, to - started) / windowMs) * windowMs;
  }
  if (!(from < to)) throw new AppError('validation_failed', 'The period must end after it starts.', [{ path: 'querystring/to', message: 'after from' }]);
  const fromDate = new Date(from);
  const toDate = new Date(to);
  // Calls still going count as `in_progress`; a person on the line is a live answer already.
  const outcomes = await sql<{ outcome: string; n: string }>`
    SELECT coalesce(outcome, 'in_progress') AS outcome, count(*) AS n FROM dial_attempts
     WHERE campaign_id = ${campaignId} AND dialed_at >= ${fromDate} AND dialed_at < ${toDate}
     GROUP BY 1`.execute(trx);
  const skipped = await sql<{ reason: string; n: string }>`
    SELECT skip_reason AS reason, count(*) AS n FROM dial_attempts
     WHERE campaign_id = ${campaignId} AND state = 'skipped' AND reserved_at >= ${fromDate} AND reserved_at < ${toDate}
     GROUP BY skip_reason`.execute(trx);
  const figures = await sql<{ answered: string; live: string; human: string; machine: string; talk: number | null; handle: number | null; connect: number | null; messages: string }>`
    SELECT count(*) FILTER (WHERE answered_at IS NOT NULL) AS answered,
           count(*) FILTER (WHERE answered_at IS NOT NULL AND amd_result IS DISTINCT FROM 'machine') AS live,
           count(*) FILTER (WHERE amd_result IN ('human', 'unknown')) AS human,
           count(*) FILTER (WHERE amd_result = 'machine') AS machine,
           avg(talk_ms) FILTER (WHERE agent_id IS NOT NULL AND talk_ms > 0)::float8 AS talk,
           avg(talk_ms + coalesce(wrap.ms, 0)) FILTER (WHERE agent_id IS NOT NULL AND talk_ms > 0)::float8 AS handle,
           avg(connect_ms)::float8 AS connect,
           count(*) FILTER (WHERE information_message) AS messages
      FROM dial_attempts a
      LEFT JOIN LATERAL (
        SELECT extract(epoch FROM (next.at - wrap_start.at)) * 1000 AS ms
          FROM agent_state_changes wrap_start
          JOIN LATERAL (SELECT n.at FROM agent_state_changes n WHERE n.user_id = wrap_start.user_id AND n.at > wrap_start.at ORDER BY n.at, n.id LIMIT 1) next ON true
         WHERE wrap_start.user_id = a.agent_id AND wrap_start.state = 'wrap_up' AND wrap_start.at >= a.ended_at
         ORDER BY wrap_start.at LIMIT 1) wrap ON a.agent_id IS NOT NULL
     WHERE a.campaign_id = ${campaignId} AND a.dialed_at >= ${fromDate} AND a.dialed_at < ${toDate}`.execute(trx);
  const byOutcome = Object.fromEntries(outcomes.rows.map((row) => [row.outcome, Number(row.n)]));
  const count = (outcome: string) => byOutcome[outcome] ?? 0;
  const dials = outcomes.rows.reduce((sum, row) => sum + Number(row.n), 0);
  const row = figures.rows[0];
  const measures = abandonmentMeasures({
    liveAnswers: Number(row?.live ?? 0),
    abandoned: count('abandoned'),
    humanVerdicts: Number(row?.human ?? 0),
    machineVerdicts: Number(row?.machine ?? 0),
    accuracy: campaign.amd ? DECLARED_AMD_ACCURACY : null,
  });
  return {
    campaignId,
    jurisdiction: campaign.jurisdiction,
    from: fromDate.toISOString(),
    to: toDate.toISOString(),
    dials,
    outcomes: byOutcome,
    skipped: Object.fromEntries(skipped.rows.map((entry) => [entry.reason, Number(entry.n)])),
    // Connects (a person or a machine answered) per dial.
    contactRate: dials === 0 ? 0 : Number(row?.answered ?? 0) / dials,
    abandonment: measures,
    cap: profile?.abandonCap ?? null,
    averageTalkMs: row?.talk ?? null,
    averageHandleMs: row?.handle ?? null,
    averageConnectMs: row?.connect ?? null,
    informationMessages: Number(row?.messages ?? 0),
  };
}

async function agentFigures(trx: TenantTransaction, query: z.infer<typeof period>) {
  const to = query.to ? new Date(query.to) : new Date();
  const from = query.from ? new Date(query.from) : new Date(to.getTime() - 86_400_000);
  if (!(from < to)) throw new AppError('validation_failed', 'The period must end after it starts.', [{ path: 'querystring/to', message: 'after from' }]);
  // Each change lasts until the agent's next one; clipped to the period.
  const spans = await sql<{ user_id: string; state: string; ms: number }>`
    SELECT user_id, state, sum(extract(epoch FROM (least(coalesce(next_at, ${to}), ${to}) - greatest(at, ${from}))) * 1000)::float8 AS ms
      FROM (SELECT user_id, state, at, lead(at) OVER (PARTITION BY user_id ORDER BY at, id) AS next_at
              FROM agent_state_changes WHERE at < ${to}) changes
     WHERE coalesce(next_at, ${to}) > ${from}
     GROUP BY user_id, state
     ORDER BY user_id, state`.execute(trx);
  const agents = new Map<string, Record<string, number>>();
  for (const span of spans.rows) {
    const states = agents.get(span.user_id) ?? Object.fromEntries(agentStates.map((state) => [state, 0]));
    states[span.state] = Math.round(span.ms);
    agents.set(span.user_id, states);
  }
  return {
    from: from.toISOString(),
    to: to.toISOString(),
    items: [...agents].map(([userId, msInState]) => {
      const busy = (msInState.reserved ?? 0) + (msInState.on_call ?? 0) + (msInState.wrap_up ?? 0);
      const ready = busy + (msInState.available ?? 0);
      return { userId, msInState, occupancy: ready === 0 ? null : busy / ready };
    }),
  };
}

export async function reportsRoutes(app: App): Promise<void> {
  app.get(
    '/api/v1/reports/campaigns/:campaignId',
    {
      config: { access: 'agents:monitor' },
      schema: {
        summary: "A campaign's figures over its current legal window (or ?from&to): abandonment on the US and UK measures, contact rate, handle time, outcomes",
        tags: ['reports'],
        params: z.strictObject({ campaignId: uuidSchema }),
        querystring: period,
        response: { 200: campaignReport.or(z.string()), ...problemResponses(400, 401, 403, 404) },
      },
    },
    async (request, reply) => {
      const report = await request.tenantDb.read((trx) => campaignFigures(trx, request.params.campaignId, request.query));
      if (request.query.format === 'json') return report;
      const rows: (string | number | null)[][] = [
        ['figure', 'value'],
        ['campaign', report.campaignId],
        ['jurisdiction', report.jurisdiction],
        ['from', report.from],
        ['to', report.to],
        ['dials', report.dials],
        ...Object.entries(report.outcomes).map(([outcome, n]): [string, number] => [`outcome.${outcome}`, n]),
        ...Object.entries(report.skipped).map(([reason, n]): [string, number] => [`skipped.${reason}`, n]),
        ['contact_rate', report.contactRate],
        ['abandonment_us', report.abandonment.us.rate],
        ['abandonment_uk', report.abandonment.uk.rate],
        ['abandonment_uk_estimated_amd_false_positives', report.abandonment.uk.estimatedAmdFalsePositives],
        ['cap', report.cap],
        ['average_talk_ms', report.averageTalkMs],
        ['average_handle_ms', report.averageHandleMs],
        ['average_connect_ms', report.averageConnectMs],
        ['information_messages', report.informationMessages],
      ];
      return reply.header('content-type', 'text/csv; charset=utf-8').header('content-disposition', 'attachment; filename="campaign-report.csv"').header('cache-control', 'no-store').send(csvOf(rows));
    },
  );

  app.get(
    '/api/v1/reports/agents',
    {
      config: { access: 'agents:monitor' },
      schema: {
        summary: 'Time each agent spent in each state over a period (default: the last 24 h), and occupancy',
        tags: ['reports'],
        querystring: period,
        response: { 200: z.object({ from: z.string(), to: z.string(), items: z.array(agentRow) }).or(z.string()), ...problemResponses(400, 401, 403) },
      },
    },
    async (request, reply) => {
      const report = await request.tenantDb.read((trx) => agentFigures(trx, request.query));
      if (request.query.format === 'json') return report;
      const rows: (string | number | null)[][] = [
        ['user_id', ...agentStates.map((state) => `${state}_ms`), 'occupancy'],
        ...report.items.map((item) => [item.userId, ...agentStates.map((state) => item.msInState[state] ?? 0), item.occupancy]),
      ];
      return reply.header('content-type', 'text/csv; charset=utf-8').header('content-disposition', 'attachment; filename="agent-report.csv"').header('cache-control', 'no-store').send(csvOf(rows));
    },
  );
}
