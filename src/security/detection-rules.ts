import type { AuditAction } from '../audit/audit-event.ts';
import type { Severity } from '../db/schema.ts';

/**
 * The detection rules, as data: what an event must be to count, whom an alert is about, and the
 * defaults of the three things a tenant tunes (threshold, window, severity) — plus whether a
 * rule runs at all. The detector (detector.ts) counts matching events per subject over a
 * sliding window; a subject reaching the threshold raises an alert (alerts.ts).
 *
 * Subjects are ids from the audit ledger (an account, a user, the tenant), never personal data.
 */

export type EventField = 'actor' | 'target' | 'tenant' | 'source';

export type Match = {
  actions: readonly AuditAction[];
  outcomes?: readonly ('success' | 'denied' | 'failed')[];
  /** Only events by these kinds of actor (the installing operator's own `setup` is not an escalation). */
  actorTypes?: readonly ('user' | 'api_token' | 'system' | 'operator' | 'anonymous')[];
  /** Each named detail must be one of the values. */
  detailsIn?: Readonly<Record<string, readonly string[]>>;
  /** The named detail (space-separated words) must contain one of the values. */
  detailsHasWord?: Readonly<Record<string, readonly string[]>>;
  /** Only events outside the tenant's working hours (WorkingHours; these when it has set none). */
  outsideHours?: WorkingHours;
};

/** When an organisation works: local hours [from, to) on its working days (ISO: 1 Monday … 7 Sunday), in its time zone. */
export type WorkingHours = { from: number; to: number; days: readonly number[]; timeZone: string };
export const DEFAULT_WORKING_HOURS: WorkingHours = { from: 7, to: 19, days: [1, 2, 3, 4, 5], timeZone: 'Europe/Oslo' };

export type RuleDefinition = {
  id: string;
  title: string;
  /** Events that count: any of these. */
  match: readonly Match[];
  subject: EventField;
  /** Count distinct values of this field (accounts tried) instead of events. */
  distinct?: EventField;
  /**
   * Also required for an alert: the subject's count in the window is this many times the larger
   * of its own usual count per window over the past `days` and the team's (per actor of the kind):
   * an agent far above both their own habit and what their colleagues do.
   */
  baseline?: { multiplier: number; days: number };
  /**
   * Instead of counting: a hit for each event from a network (IPv4 /24, IPv6 /48 of its source)
   * that none of the past `learnDays` of matching events came from — once at least `minHistory`
   * of them are known (before that everything would be new). The subject is the network.
   */
  novelty?: { learnDays: number; minHistory: number };
  defaults: { threshold: number; windowSeconds: number; severity: Severity };
};

const PRIVILEGED_ROLES = ['owner', 'admin'] as const;
/** Actors inside the product (users, their tokens, single sign-on provisioning): not the operator's CLI. */
const IN_PRODUCT = ['user', 'api_token', 'system'] as const;
/** Scopes that make an API token a key to the whole organisation. */
const WIDE_SCOPES = ['users:manage', 'roles:manage', 'security:manage', 'contacts:export', 'privacy:manage'] as const;

export const DETECTION_RULES: readonly RuleDefinition[] = [
  {
    id: 'auth.failed_signins_account',
    title: 'Repeated failed sign-ins to one account',
    match: [{ actions: ['auth.login', 'auth.mfa_verify'], outcomes: ['failed', 'denied'] }],
    subject: 'target',
    defaults: { threshold: 10, windowSeconds: 300, severity: 'medium' },
  },
  {
    id: 'auth.credential_stuffing',
    title: 'Failed sign-ins across many accounts (credential stuffing)',
    match: [{ actions: ['auth.login'], outcomes: ['failed', 'denied'] }],
    subject: 'tenant',
    distinct: 'target',
    defaults: { threshold: 20, windowSeconds: 300, severity: 'high' },
  },
  {
    id: 'auth.signin_new_network',
    title: 'A sign-in from a network this organisation has not signed in from',
    match: [{ actions: ['auth.login'], outcomes: ['success'] }],
    subject: 'tenant',
    novelty: { learnDays: 30, minHistory: 20 },
    defaults: { threshold: 1, windowSeconds: 3600, severity: 'medium' },
  },
  {
    id: 'data.reveal_burst',
    title: 'A user revealing personal data far above their usual rate',
    match: [{ actions: ['contact.reveal', 'contact.lookup'], outcomes: ['success'] }],
    subject: 'actor',
    baseline: { multiplier: 3, days: 7 },
    defaults: { threshold: 40, windowSeconds: 600, severity: 'high' },
  },
  {
    id: 'data.export_burst',
    title: 'A user exporting personal data far above their usual rate',
    match: [{ actions: ['contact_list.export', 'privacy.export.created', 'audit.export'], outcomes: ['success'] }],
    subject: 'actor',
    baseline: { multiplier: 3, days: 7 },
    defaults: { threshold: 5, windowSeconds: 3600, severity: 'high' },
  },
  {
    id: 'data.export_off_hours',
    title: 'Personal data exported outside working hours',
    match: [{ actions: ['contact_list.export', 'privacy.export.created'], outcomes: ['success'], outsideHours: DEFAULT_WORKING_HOURS }],
    subject: 'actor',
    defaults: { threshold: 1, windowSeconds: 3600, severity: 'medium' },
  },
  {
    id: 'privilege.admin_granted',
    title: 'A user made owner or administrator',
    match: [
      { actions: ['user.update'], outcomes: ['success'], detailsIn: { to: PRIVILEGED_ROLES }, actorTypes: IN_PRODUCT },
      { actions: ['user.create', 'user.invite'], outcomes: ['success'], detailsIn: { role: PRIVILEGED_ROLES }, actorTypes: IN_PRODUCT },
    ],
    subject: 'target',
    defaults: { threshold: 1, windowSeconds: 3600, severity: 'high' },
  },
  {
    id: 'privilege.mfa_removed',
    title: 'A second factor removed',
    match: [{ actions: ['auth.mfa_remove'], outcomes: ['success'] }],
    subject: 'target',
    defaults: { threshold: 1, windowSeconds: 3600, severity: 'high' },
  },
  {
    id: 'privilege.wide_token',
    title: 'An API token issued with organisation-wide rights',
    match: [{ actions: ['api_token.issue'], outcomes: ['success'], detailsHasWord: { scopes: WIDE_SCOPES } }],
    subject: 'target',
    defaults: { threshold: 1, windowSeconds: 3600, severity: 'medium' },
  },
  {
    id: 'privilege.denied_burst',
    title: 'Repeated attempts at what a user may not do',
    match: [{ actions: ['auth.denied'], outcomes: ['denied'] }],
    subject: 'actor',
    defaults: { threshold: 20, windowSeconds: 300, severity: 'medium' },
  },
  {
    id: 'suppression.shrink',
    title: 'The do-not-call list shrinking sharply',
    match: [{ actions: ['suppression.remove'], outcomes: ['success'] }],
    subject: 'tenant',
    defaults: { threshold: 25, windowSeconds: 3600, severity: 'high' },
  },
  {
    id: 'security.monitoring_changed',
    title: 'Monitoring itself changed: a rule tuned or a webhook removed',
    match: [{ actions: ['security.rule_update', 'security.webhook_delete'], outcomes: ['success'] }],
    subject: 'actor',
    defaults: { threshold: 1, windowSeconds: 3600, severity: 'medium' },
  },
  {
    id: 'audit.ledger_failed',
    title: 'The audit ledger does not verify',
    match: [{ actions: ['audit.verify'], outcomes: ['failed'] }],
    subject: 'tenant',
    defaults: { threshold: 1, windowSeconds: 86_400, severity: 'critical' },
  },
];

export const RULES_BY_ID: ReadonlyMap<string, RuleDefinition> = new Map(DETECTION_RULES.map((rule) => [rule.id, rule]));

/** The alert the detector raises itself when a tenant's ledger fails its periodic verification. */
export const LEDGER_RULE_ID = 'audit.ledger_failed';
/** The one alert that stands for all those a storm would have raised beyond the rate limit. */
export const STORM_RULE_ID = 'monitor.alert_storm';

export type RuleSettings = { enabled: boolean; threshold: number; windowSeconds: number; severity: Severity };

/** A tenant's settings of every rule: its own where it has them, the defaults elsewhere. */
export function effectiveSettings(overrides: readonly { rule_id: string; enabled: boolean; threshold: number; window_seconds: number; severity: Severity }[]): Map<string, RuleSettings> {
  const settings = new Map<string, RuleSettings>();
  for (const rule of DETECTION_RULES) settings.set(rule.id, { enabled: true, ...rule.defaults });
  for (const row of overrides) {
    if (RULES_BY_ID.has(row.rule_id)) settings.set(row.rule_id, { enabled: row.enabled, threshold: row.threshold, windowSeconds: row.window_seconds, severity: row.severity });
  }
  return settings;
}

export const SEVERITY_RANK: Record<Severity, number> = { low: 0, medium: 1, high: 2, critical: 3 };
