import { sql } from '../../db/kysely.ts';
import { z } from '../../zod.ts';
import type { App } from '../../server/types.ts';
import { AppError } from '../../server/errors.ts';
import { problemResponses, uuidSchema } from '../../server/schemas.ts';
import { recordAuditEvent } from '../../audit/audit-event.ts';
import { requestAudit } from '../../server/request-audit.ts';
import type { TenantTransaction } from '../../db/tenant-db.ts';
import {
  assertValidSettings,
  campaignColumns,
  DEFAULT_DISPOSITIONS,
  DEFAULT_RETRY_RULES,
  loadCampaign,
  loadProfiles,
  settingsOf,
  settingsSchema,
  windowSchema,
  type CampaignRow,
  type CampaignSettings,
} from './campaign-settings.ts';
import { pauseCampaign, startCampaign } from './campaign-lifecycle.ts';
import { publish } from '../../realtime/realtime.ts';

const purpose = z.enum(['sales', 'survey', 'service']);

const campaignSchema = z.object({
  id: z.string(),
  name: z.string(),
  state: z.enum(['draft', 'active', 'paused', 'finished']),
  purpose,
  listIds: z.array(z.string()),
  mode: z.enum(['preview', 'progressive', 'predictive']),
  jurisdiction: z.string().nullable(),
  callerId: z.string().nullable(),
  script: z.string().nullable(),
  hours: z.array(windowSchema),
  retryRules: z.record(z.string(), z.object({ retry: z.boolean(), afterMinutes: z.number() })),
  maxAttempts: z.number().int(),
  ringTimeoutMs: z.number().int(),
  wrapUpMs: z.number().int(),
  amd: z.boolean(),
  recordCalls: z.boolean(),
  dispositions: z.array(z.object({ code: z.string(), label: z.string(), kind: z.string() })),
  startedAt: z.string().nullable(),
  createdAt: z.string(),
});

const settingsInput = settingsSchema.partial();
const createBody = settingsInput.extend({ name: z.string().trim().min(1).max(200), purpose: purpose.default('sales') }).strict();
const patchBody = settingsInput.extend({ name: z.string().trim().min(1).max(200).optional(), purpose: purpose.optional() }).strict();
const campaignParams = z.strictObject({ campaignId: uuidSchema });

const profileSchema = z.object({
  code: z.string(),
  name: z.string(),
  abandonCap: z.number(),
  abandonWindowHours: z.number(),
  abandonMeasure: z.string(),
  connectLimitMs: z.number(),
  minRingMs: z.number(),
  callingWindows: z.array(windowSchema),
  abandonLockoutHours: z.number().nullable(),
  informationMessageRequired: z.boolean(),
  requiredRegistries: z.array(z.string()),
  registryMaxAgeDays: z.number().nullable(),
  requiresLawfulBasis: z.boolean(),
  source: z.string(),
});

const DEFAULT_SETTINGS: CampaignSettings = {
  mode: 'progressive',
  jurisdiction: null,
  callerId: null,
  script: null,
  hours: [],
  retryRules: DEFAULT_RETRY_RULES,
  maxAttempts: 3,
  ringTimeoutMs: 25_000,
  wrapUpMs: 15_000,
  amd: true,
  recordCalls: true,
  dispositions: DEFAULT_DISPOSITIONS,
};

async function present(trx: TenantTransaction, row: CampaignRow & { started_at: Date | null; created_at: Date }) {
  const lists = await trx.selectFrom('contact_lists').select('id').where('campaign_id', '=', row.id).orderBy('name').execute();
  const settings = settingsOf(row);
  return {
    id: row.id,
    name: row.name,
    state: row.state as 'draft' | 'active' | 'paused' | 'finished',
    purpose: row.purpose as z.infer<typeof purpose>,
    listIds: lists.map((list) => list.id),
    ...settings,
    startedAt: row.started_at?.toISOString() ?? null,
    createdAt: row.created_at.toISOString(),
  };
}

/** The settings a create or a change would leave, checked against the profile they name. */
async function checkedSettings(trx: TenantTransaction, base: CampaignSettings, change: Partial<CampaignSettings>): Promise<CampaignSettings> {
  const next: CampaignSettings = { ...base, ...change, retryRules: { ...base.retryRules, ...change.retryRules } };
  let profile;
  if (next.jurisdiction !== null) {
    [profile] = await loadProfiles(trx, next.jurisdiction);
    if (!profile) throw new AppError('campaign_settings_invalid', `No jurisdiction profile "${next.jurisdiction}".`, [{ path: 'body/jurisdiction', message: 'unknown jurisdiction profile' }]);
  }
  assertValidSettings(next, profile);
  return next;
}

function settingsColumns(settings: Partial<CampaignSettings>) {
  return {
    ...(settings.mode !== undefined ? { mode: settings.mode } : {}),
    ...(settings.jurisdiction !== undefined ? { jurisdiction: settings.jurisdiction } : {}),
    ...(settings.callerId !== undefined ? { caller_id: settings.callerId } : {}),
    ...(settings.script !== undefined ? { script: settings.script } : {}),
    ...(settings.hours !== undefined ? { hours: JSON.stringify(settings.hours) } : {}),
    ...(settings.retryRules !== undefined ? { retry_rules: JSON.stringify(settings.retryRules) } : {}),
    ...(settings.maxAttempts !== undefined ? { max_attempts: settings.maxAttempts } : {}),
    ...(settings.ringTimeoutMs !== undefined ? { ring_timeout_ms: settings.ringTimeoutMs } : {}),
    ...(settings.wrapUpMs !== undefined ? { wrap_up_ms: settings.wrapUpMs } : {}),
    ...(settings.amd !== undefined ? { amd: settings.amd } : {}),
    ...(settings.recordCalls !== undefined ? { record_calls: settings.recordCalls } : {}),
    ...(settings.dispositions !== undefined ? { dispositions: JSON.stringify(settings.dispositions) } : {}),
  };
}

export async function campaignsRoutes(app: App): Promise<void> {
  app.get(
    '/api/v1/jurisdictions',
    {
      config: { access: 'contacts:read' },
      schema: { summary: 'Jurisdiction profiles: the rules a campaign dials under', tags: ['campaigns'], response: { 200: z.object({ items: z.array(profileSchema) }), ...problemResponses(401, 403) } },
    },
    async (request) =>
      request.tenantDb.read(async (trx) => ({
        items: (await loadProfiles(trx)).map((profile) => ({
          code: profile.code,
          name: profile.name,
          abandonCap: profile.abandonCap,
          abandonWindowHours: profile.abandonWindowMs / 3_600_000,
          abandonMeasure: profile.abandonMeasure,
          connectLimitMs: profile.connectLimitMs,
          minRingMs: profile.minRingMs,
          callingWindows: profile.callingWindows.map((window) => ({ start: window.start, end: window.end, ...(window.days ? { days: [...window.days] } : {}) })),
          abandonLockoutHours: profile.abandonLockoutMs === null ? null : profile.abandonLockoutMs / 3_600_000,
          informationMessageRequired: profile.informationMessageRequired,
          requiredRegistries: profile.requiredRegistries,
          registryMaxAgeDays: profile.registryMaxAgeMs === null ? null : profile.registryMaxAgeMs / 86_400_000,
          requiresLawfulBasis: profile.requiresLawfulBasis,
          source: profile.source,
        })),
      })),
  );

  app.get(
    '/api/v1/campaigns',
    {
      config: { access: 'contacts:read' },
      schema: { summary: 'Campaigns', tags: ['campaigns'], response: { 200: z.object({ items: z.array(campaignSchema) }), ...problemResponses(401, 403) } },
    },
    async (request) =>
      request.tenantDb.read(async (trx) => {
        const rows = await trx.selectFrom('campaigns').select([...campaignColumns, 'started_at', 'created_at']).orderBy('name').limit(1000).execute();
        const items = [];
        for (const row of rows) items.push(await present(trx, row));
        return { items };
      }),
  );

  app.get(
    '/api/v1/campaigns/:campaignId',
    {
      config: { access: 'contacts:read' },
      schema: { summary: 'One campaign and its settings', tags: ['campaigns'], params: campaignParams, response: { 200: campaignSchema, ...problemResponses(400, 401, 403, 404) } },
    },
    async (request) => request.tenantDb.read(async (trx) => present(trx, await loadCampaign(trx, request.params.campaignId))),
  );

  app.post(
    '/api/v1/campaigns',
    {
      config: { access: 'campaigns:manage' },
      schema: {
        summary: 'Create a campaign (lists are assigned to it with PATCH /api/v1/lists/{id})',
        tags: ['campaigns'],
        body: createBody,
        response: { 201: campaignSchema, ...problemResponses(400, 401, 403, 409) },
      },
    },
    async (request, reply) => {
      const { name, purpose: campaignPurpose, ...change } = request.body;
      const campaign = await request.tenantDb.transaction(async (trx) => {
        const settings = await checkedSettings(trx, DEFAULT_SETTINGS, change);
        const created = await trx
          .insertInto('campaigns')
          .values({ name, purpose: campaignPurpose, ...settingsColumns(settings) })
          .onConflict((conflict) => conflict.columns(['tenant_id', 'name']).doNothing())
          .returning('id')
          .executeTakeFirst();
        if (!created) throw new AppError('conflict', 'A campaign with this name exists.');
        await recordAuditEvent(trx, {
          ...requestAudit(request),
          action: 'campaign.create',
          outcome: 'success',
          target: { type: 'campaign', id: created.id },
          details: { purpose: campaignPurpose, mode: settings.mode, jurisdiction: settings.jurisdiction },
        });
        return present(trx, await loadCampaign(trx, created.id));
      });
      return reply.code(201).send(campaign);
    },
  );

  app.patch(
    '/api/v1/campaigns/:campaignId',
    {
      config: { access: 'campaigns:manage' },
      schema: { summary: "Change a campaign's name or settings", tags: ['campaigns'], params: campaignParams, body: patchBody, response: { 200: campaignSchema, ...problemResponses(400, 401, 403, 404, 409) } },
    },
    async (request) =>
      request.tenantDb.transaction(async (trx) => {
        const { name, purpose: campaignPurpose, ...change } = request.body;
        const row = await loadCampaign(trx, request.params.campaignId, true);
        if (row.state === 'finished') throw new AppError('invalid_transition', 'A finished campaign cannot be changed.');
        // An active campaign's law cannot change under calls in flight: pause it first.
        if (row.state === 'active' && change.jurisdiction !== undefined && change.jurisdiction !== row.jurisdiction) {
          throw new AppError('invalid_transition', 'Pause the campaign before changing its jurisdiction.');
        }
        // The purpose decides which consent applies at dial time: not changed under calls in flight either.
        if (row.state === 'active' && campaignPurpose !== undefined && campaignPurpose !== row.purpose) {
          throw new AppError('invalid_transition', 'Pause the campaign before changing its purpose.');
        }
        await checkedSettings(trx, settingsOf(row), change);
        const updated = await trx
          .updateTable('campaigns')
          .set({ ...(name !== undefined ? { name } : {}), ...(campaignPurpose !== undefined ? { purpose: campaignPurpose } : {}), ...settingsColumns(change) })
          .where('id', '=', row.id)
          .returning('id')
          .executeTakeFirst()
          .catch((error: unknown) => {
            if ((error as { code?: string }).code === '23505') throw new AppError('conflict', 'A campaign with this name exists.');
            throw error;
          });
        if (!updated) throw new AppError('not_found', 'No such campaign.');
        await recordAuditEvent(trx, {
          ...requestAudit(request),
          action: 'campaign.update',
          outcome: 'success',
          target: { type: 'campaign', id: row.id },
          details: { changed: Object.keys(request.body).sort().join(',') },
        });
        return present(trx, await loadCampaign(trx, row.id));
      }),
  );

  app.post(
    '/api/v1/campaigns/:campaignId/start',
    {
      config: { access: 'campaigns:manage' },
      schema: {
        summary: "Start (or resume) dialing: checks the campaign is ready, then loads its lists' contacts into the hopper",
        tags: ['campaigns'],
        params: campaignParams,
        response: { 200: campaignSchema.extend({ hopperAdded: z.number().int() }), ...problemResponses(400, 401, 403, 404, 409) },
      },
    },
    async (request) =>
      request.tenantDb.transaction(async (trx) => {
        const { added } = await startCampaign(trx, request.params.campaignId);
        await recordAuditEvent(trx, { ...requestAudit(request), action: 'campaign.start', outcome: 'success', target: { type: 'campaign', id: request.params.campaignId }, details: { hopperAdded: added } });
        await publish(trx, { topic: 'campaign.state', campaignId: request.params.campaignId, state: 'active', at: new Date().toISOString() });
        return { ...(await present(trx, await loadCampaign(trx, request.params.campaignId))), hopperAdded: added };
      }),
  );

  app.post(
    '/api/v1/campaigns/:campaignId/pause',
    {
      config: { access: 'campaigns:manage' },
      schema: { summary: 'Pause dialing (calls in progress finish)', tags: ['campaigns'], params: campaignParams, response: { 200: campaignSchema, ...problemResponses(400, 401, 403, 404, 409) } },
    },
    async (request) =>
      request.tenantDb.transaction(async (trx) => {
        await pauseCampaign(trx, request.params.campaignId);
        await recordAuditEvent(trx, { ...requestAudit(request), action: 'campaign.pause', outcome: 'success', target: { type: 'campaign', id: request.params.campaignId } });
        return present(trx, await loadCampaign(trx, request.params.campaignId));
      }),
  );

  app.get(
    '/api/v1/campaigns/:campaignId/hopper',
    {
      config: { access: 'contacts:read' },
      schema: {
        summary: "The campaign's contacts by state: ready now, ready later, in flight, done",
        tags: ['campaigns'],
        params: campaignParams,
        response: { 200: z.object({ readyNow: z.number().int(), readyLater: z.number().int(), reserved: z.number().int(), done: z.number().int() }), ...problemResponses(400, 401, 403, 404) },
      },
    },
    async (request) =>
      request.tenantDb.read(async (trx) => {
        await loadCampaign(trx, request.params.campaignId);
        const counts = await sql<{ ready_now: string; ready_later: string; reserved: string; done: string }>`
          SELECT count(*) FILTER (WHERE state = 'ready' AND next_at <= now()) AS ready_now,
                 count(*) FILTER (WHERE state = 'ready' AND next_at > now()) AS ready_later,
                 count(*) FILTER (WHERE state = 'reserved') AS reserved,
                 count(*) FILTER (WHERE state = 'done') AS done
            FROM campaign_contacts WHERE campaign_id = ${request.params.campaignId}`.execute(trx);
        const row = counts.rows[0];
        return { readyNow: Number(row?.ready_now ?? 0), readyLater: Number(row?.ready_later ?? 0), reserved: Number(row?.reserved ?? 0), done: Number(row?.done ?? 0) };
      }),
  );

  app.get(
    '/api/v1/campaigns/:campaignId/pacing',
    {
      config: { access: 'agents:monitor' },
      schema: {
        summary: "The dialer's latest pacing decision, in words: how many lines for how many agents, and why",
        tags: ['campaigns'],
        params: campaignParams,
        response: { 200: z.object({ decidedAt: z.string(), dialer: z.string(), pacer: z.string(), lines: z.number().int(), explanation: z.string() }), ...problemResponses(400, 401, 403, 404) },
      },
    },
    async (request) =>
      request.tenantDb.read(async (trx) => {
        await loadCampaign(trx, request.params.campaignId);
        const row = await trx.selectFrom('campaign_pacing').select(['decided_at', 'dialer', 'pacer', 'lines', 'explanation']).where('campaign_id', '=', request.params.campaignId).executeTakeFirst();
        if (!row) throw new AppError('not_found', 'The campaign has not been paced yet.');
        return { decidedAt: row.decided_at.toISOString(), dialer: row.dialer, pacer: row.pacer, lines: row.lines, explanation: row.explanation };
      }),
  );
}
