import { Counter, Histogram, type Metric } from 'prom-client';

/**
 * The process's own counters, incremented where things happen (the audit helper, the dialer, the
 * backup schedule) and served by every app's /metrics (src/server/metrics.ts registers them).
 * Labels are fixed vocabularies — actions of the audit catalogue, outcomes, event kinds — never an
 * id, a name or a number. Several apps in one process (tests) share these counts.
 */

export const auditEvents = new Counter({
  name: 'ringvakt_audit_events_total',
  help: 'Audit events committed, by action and outcome (sign-ins are auth.login; denied and failed outcomes are the failures)',
  labelNames: ['action', 'outcome'] as const,
  registers: [],
});

export const dialerCalls = new Counter({
  name: 'ringvakt_dialer_calls_total',
  help: 'Outbound calls by what happened: dialed, skipped (refused by a dial-time check), connected, abandoned, ended, error',
  labelNames: ['event'] as const,
  registers: [],
});

export const dialerDecisions = new Histogram({
  name: 'ringvakt_dialer_decision_seconds',
  help: 'Time for one pacing decision of a campaign dialer (how many lines to dial now)',
  buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
  registers: [],
});

export const backgroundFailures = new Counter({
  name: 'ringvakt_background_task_failures_total',
  help: 'Failed ticks of background work, by task',
  labelNames: ['task'] as const,
  registers: [],
});

export const keyProviderErrors = new Counter({
  name: 'ringvakt_key_provider_errors_total',
  help: 'Failed wraps and unwraps of the root key provider (key file, environment, Vault transit)',
  labelNames: ['operation'] as const,
  registers: [],
});

export const backupFailures = new Counter({
  name: 'ringvakt_backup_failures_total',
  help: 'Backups and restore drills that failed, by kind',
  labelNames: ['kind'] as const,
  registers: [],
});

export const processMetrics: Metric[] = [auditEvents, dialerCalls, dialerDecisions, backgroundFailures, backupFailures, keyProviderErrors];
