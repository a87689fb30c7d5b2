import { sql } from '../../db/kysely.ts';
import { z } from '../../zod.ts';
import type { TenantTransaction } from '../../db/tenant-db.ts';
import type { DialMode } from '../../db/schema.ts';
import { everOpens, validateWindow, type CallingWindow, type WindowRule } from '../../dialer/calling-window.ts';
import { AppError, type FieldProblem } from '../../server/errors.ts';

/**
 * A campaign's dialing settings and the jurisdiction profile they answer to. Settings are refused
 * when they could never dial (hours that never meet the legal window, attempt limit 0), would loop
 * (a retry sooner than a minute), or break the profile (ringing shorter than its minimum, a retry
 * after an abandoned call inside its lockout).
 */

const clock = z.string().regex(/^([01]\d|2[0-3]):[0-5]\d$/, 'a time of day, HH:MM');
export const windowSchema = z.strictObject({
  start: clock,
  end: clock,
  days: z.array(z.number().int().min(0).max(6)).min(1).max(7).optional(),
});

/** Outcomes after which a contact may be dialed again. */
export const retryOutcomes = ['busy', 'no_answer', 'machine', 'failed', 'abandoned'] as const;
export type RetryOutcome = (typeof retryOutcomes)[number];

const retryRule = z.strictObject({
  retry: z.boolean(),
  /** Minutes until the next attempt; at least 1, so no outcome can redial in a loop. */
  afterMinutes: z.number().int().min(1).max(43_200),
});
export type RetryRule = z.infer<typeof retryRule>;

export const dispositionKinds = ['success', 'final', 'retry', 'callback', 'do_not_call'] as const;
export type DispositionKind = (typeof dispositionKinds)[number];
const dispositionSchema = z.strictObject({
  code: z.string().regex(/^[a-z][a-z0-9_]{0,39}$/, 'lower-case letters, digits and _'),
  label: z.string().trim().min(1).max(100),
  kind: z.enum(dispositionKinds),
});
export type Disposition = z.infer<typeof dispositionSchema>;

export const DEFAULT_RETRY_RULES: Record<RetryOutcome, RetryRule> = {
  busy: { retry: true, afterMinutes: 30 },
  no_answer: { retry: true, afterMinutes: 240 },
  machine: { retry: true, afterMinutes: 480 },
  failed: { retry: false, afterMinutes: 1440 },
  abandoned: { retry: true, afterMinutes: 4320 },
};

export const DEFAULT_DISPOSITIONS: Disposition[] = [
  { code: 'sale', label: 'Sale', kind: 'success' },
  { code: 'not_interested', label: 'Not interested', kind: 'final' },
  { code: 'call_again', label: 'Call again later', kind: 'retry' },
  { code: 'callback', label: 'Callback arranged', kind: 'callback' },
  { code: 'do_not_call', label: 'Do not call', kind: 'do_not_call' },
  { code: 'wrong_number', label: 'Wrong number', kind: 'final' },
];

export const settingsSchema = z.strictObject({
  mode: z.enum(['preview', 'progressive', 'predictive']),
  jurisdiction: z.string().regex(/^[a-z][a-z0-9_]{1,39}$/).nullable(),
  callerId: z.string().regex(/^\+[1-9]\d{6,14}$/, 'an E.164 number, +<country><number>').nullable(),
  script: z.string().max(20_000).nullable(),
  hours: z.array(windowSchema).max(14),
  retryRules: z.strictObject(Object.fromEntries(retryOutcomes.map((outcome) => [outcome, retryRule.optional()])) as Record<RetryOutcome, z.ZodOptional<typeof retryRule>>),
  maxAttempts: z.number().int().min(1, 'at least one attempt').max(20),
  ringTimeoutMs: z.number().int().min(5_000).max(120_000),
  wrapUpMs: z.number().int().min(0).max(600_000),
  amd: z.boolean(),
  /** Record connected calls (stored encrypted under the contact's key; agents pause for card payments). */
  recordCalls: z.boolean(),
  dispositions: z.array(dispositionSchema).max(50),
});
export type CampaignSettings = z.infer<typeof settingsSchema>;

export type JurisdictionProfile = {
  code: string;
  name: string;
  abandonCap: number;
  abandonWindowMs: number;
  abandonMeasure: 'live_answers' | 'live_answers_with_amd_estimate';
  connectLimitMs: number;
  minRingMs: number;
  callingWindows: CallingWindow[];
  abandonLockoutMs: number | null;
  informationMessageRequired: boolean;
  requiredRegistries: string[];
  registryMaxAgeMs: number | null;
  requiresLawfulBasis: boolean;
  source: string;
};

/** Every profile, or one: intervals read as milliseconds. */
export async function loadProfiles(trx: TenantTransaction, code?: string): Promise<JurisdictionProfile[]> {
  let query = trx
    .selectFrom('jurisdiction_profiles')
    .select(['code', 'name', 'abandon_cap', 'abandon_measure', 'connect_limit_ms', 'min_ring_ms', 'calling_windows', 'information_message_required', 'required_registries', 'requires_lawful_basis', 'source'])
    .select([
      sql<number>`(extract(epoch FROM abandon_window) * 1000)::float8`.as('abandon_window_ms'),
      sql<number | null>`(extract(epoch FROM abandon_lockout) * 1000)::float8`.as('abandon_lockout_ms'),
      sql<number | null>`(extract(epoch FROM registry_max_age) * 1000)::float8`.as('registry_max_age_ms'),
    ])
    .orderBy('code');
  if (code !== undefined) query = query.where('code', '=', code);
  const rows = await query.execute();
  return rows.map((row) => ({
    code: row.code,
    name: row.name,
    abandonCap: Number(row.abandon_cap),
    abandonWindowMs: row.abandon_window_ms,
    abandonMeasure: row.abandon_measure,
    connectLimitMs: row.connect_limit_ms,
    minRingMs: row.min_ring_ms,
    callingWindows: row.calling_windows as CallingWindow[],
    abandonLockoutMs: row.abandon_lockout_ms,
    informationMessageRequired: row.information_message_required,
    requiredRegistries: row.required_registries,
    registryMaxAgeMs: row.registry_max_age_ms,
    requiresLawfulBasis: row.requires_lawful_basis,
    source: row.source,
  }));
}

/** The windows a callee's local time must satisfy: the profile's (any of them) and the campaign's (any of them). */
export function windowRules(profile: JurisdictionProfile, settings: Pick<CampaignSettings, 'hours'>): WindowRule[] {
  return settings.hours.length > 0 ? [profile.callingWindows, settings.hours] : [profile.callingWindows];
}

/**
 * The problems of a set of settings under a profile (none: they may be saved). A campaign may be
 * saved without a jurisdiction while it is a draft; it cannot start without one.
 */
export function settingsProblems(settings: CampaignSettings, profile: JurisdictionProfile | undefined): FieldProblem[] {
  const problems: FieldProblem[] = [];
  settings.hours.forEach((window, index) => {
    try {
      validateWindow(window);
    } catch (error) {
      problems.push({ path: `body/hours/${index}`, message: (error as Error).message });
    }
  });
  const codes = settings.dispositions.map((disposition) => disposition.code);
  if (new Set(codes).size !== codes.length) problems.push({ path: 'body/dispositions', message: 'disposition codes must be unique' });
  if (problems.length > 0 || !profile) return problems;
  if (!everOpens(windowRules(profile, settings))) {
    problems.push({ path: 'body/hours', message: `the campaign hours never meet the calling hours of ${profile.name}: the campaign could never dial` });
  }
  if (settings.ringTimeoutMs < profile.minRingMs) {
    problems.push({ path: 'body/ringTimeoutMs', message: `${profile.name} requires unanswered calls to ring at least ${profile.minRingMs / 1000} s` });
  }
  const abandoned = settings.retryRules.abandoned;
  if (abandoned?.retry && profile.abandonLockoutMs !== null && abandoned.afterMinutes * 60_000 < profile.abandonLockoutMs) {
    problems.push({ path: 'body/retryRules/abandoned/afterMinutes', message: `${profile.name} forbids dialing a number again within ${profile.abandonLockoutMs / 3_600_000} h of an abandoned call` });
  }
  return problems;
}

export function assertValidSettings(settings: CampaignSettings, profile: JurisdictionProfile | undefined): void {
  const problems = settingsProblems(settings, profile);
  if (problems.length > 0) throw new AppError('campaign_settings_invalid', problems.map((problem) => `${problem.path}: ${problem.message}`).join('; '), problems);
}

export type CampaignRow = {
  id: string;
  name: string;
  state: string;
  purpose: string;
  mode: DialMode;
  jurisdiction: string | null;
  caller_id: string | null;
  script: string | null;
  hours: unknown;
  retry_rules: unknown;
  max_attempts: number;
  ring_timeout_ms: number;
  wrap_up_ms: number;
  amd: boolean;
  record_calls: boolean;
  dispositions: unknown;
};

/** Settings as stored: missing retry rules and dispositions take the defaults. */
export function settingsOf(row: CampaignRow): CampaignSettings & { retryRules: Record<RetryOutcome, RetryRule> } {
  const stored = (row.retry_rules ?? {}) as Partial<Record<RetryOutcome, RetryRule>>;
  const dispositions = (row.dispositions ?? []) as Disposition[];
  return {
    mode: row.mode,
    jurisdiction: row.jurisdiction,
    callerId: row.caller_id,
    script: row.script,
    hours: (row.hours ?? []) as CallingWindow[] as CampaignSettings['hours'],
    retryRules: { ...DEFAULT_RETRY_RULES, ...stored },
    maxAttempts: row.max_attempts,
    ringTimeoutMs: row.ring_timeout_ms,
    wrapUpMs: row.wrap_up_ms,
    amd: row.amd,
    recordCalls: row.record_calls,
    dispositions: dispositions.length > 0 ? dispositions : DEFAULT_DISPOSITIONS,
  };
}

export const campaignColumns = ['id', 'name', 'state', 'purpose', 'mode', 'jurisdiction', 'caller_id', 'script', 'hours', 'retry_rules', 'max_attempts', 'ring_timeout_ms', 'wrap_up_ms', 'amd', 'record_calls', 'dispositions'] as const;

export async function loadCampaign(trx: TenantTransaction, id: string, lock = false): Promise<CampaignRow & { started_at: Date | null; created_at: Date }> {
  let query = trx.selectFrom('campaigns').select([...campaignColumns, 'started_at', 'created_at']).where('id', '=', id);
  if (lock) query = query.forUpdate();
  const row = await query.executeTakeFirst();
  if (!row) throw new AppError('not_found', 'No such campaign.');
  return row as CampaignRow & { started_at: Date | null; created_at: Date };
}
