import type { FastifyPluginAsync } from 'fastify';
import { noteResponse } from '../security/installation-alerts.ts';
import fp from 'fastify-plugin';
import type pg from 'pg';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { OperationsStatus, SystemDb } from '../db/system-db.ts';
import { processMetrics } from '../operations/telemetry.ts';

/** How long a read of the installation's state serves scrapes (several Prometheus servers, or a fast scrape). */
const STATUS_CACHE_MS = 5_000;
/** A scrape never waits longer than this for the database: the gauges then say the read failed. */
const STATUS_TIMEOUT_MS = 2_000;

/**
 * Prometheus metrics in a registry of this app's own (several apps may live in one test process).
 * Labels are route templates, status codes and fixed vocabularies only — never a path with ids,
 * never a user. Three kinds:
 * - HTTP requests and the database pool, measured here;
 * - the process's counters (src/operations/telemetry.ts): audit events by action and outcome,
 *   dialer calls and decisions, failed background work, failed backups;
 * - the installation's state, read at scrape time (operations_status(), cached 5 s): audit
 *   sealing lag, checkpoint age, calls in progress and queued, agents, backup and drill age.
 *   Every node reports the same values; dashboards and alerts take max() over instances.
 */
export function createMetrics(pool: pg.Pool, systemDb: SystemDb): { registry: Registry; plugin: FastifyPluginAsync } {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'ringvakt_' });
  for (const metric of processMetrics) registry.registerMetric(metric);

  const requests = new Counter({
    name: 'ringvakt_http_requests_total',
    help: 'HTTP requests answered, by method, route template and status code',
    labelNames: ['method', 'route', 'status'] as const,
    registers: [registry],
  });
  const duration = new Histogram({
    name: 'ringvakt_http_request_duration_seconds',
    help: 'Time to answer HTTP requests, by method and route template',
    labelNames: ['method', 'route'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [registry],
  });
  new Gauge({
    name: 'ringvakt_db_pool_connections',
    help: 'Runtime-role database pool connections, by state',
    labelNames: ['state'] as const,
    registers: [registry],
    collect() {
      this.set({ state: 'total' }, pool.totalCount);
      this.set({ state: 'idle' }, pool.idleCount);
      this.set({ state: 'waiting' }, pool.waitingCount);
    },
  });

  let status: { at: number; value: Promise<OperationsStatus | undefined> } | undefined;
  const readStatus = () => {
    if (!status || Date.now() - status.at > STATUS_CACHE_MS) {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<undefined>((resolve) => {
        timer = setTimeout(() => resolve(undefined), STATUS_TIMEOUT_MS);
      });
      const value = Promise.race([systemDb.operationsStatus(), timeout])
        .catch(() => undefined)
        .finally(() => clearTimeout(timer));
      status = { at: Date.now(), value };
    }
    return status.value;
  };
  const seconds = (date: Date | null) => (date ? date.getTime() / 1000 : 0);
  const stateGauge = (name: string, help: string, read: (value: OperationsStatus, now: number) => number) =>
    new Gauge({
      name,
      help,
      registers: [registry],
      async collect() {
        const value = await readStatus();
        this.reset();
        // NaN when the state could not be read (ringvakt_operations_status_up says so too).
        this.set(value ? read(value, Date.now() / 1000) : Number.NaN);
      },
    });
  new Gauge({
    name: 'ringvakt_operations_status_up',
    help: '1 when this scrape could read the installation state from the database, 0 when not (the state gauges are then NaN)',
    registers: [registry],
    async collect() {
      this.set((await readStatus()) ? 1 : 0);
    },
  });
  stateGauge('ringvakt_audit_unsealed_events', 'Audit events not yet sealed into a signed tree head, across tenants', (value) => value.unsealedEvents);
  stateGauge('ringvakt_audit_sealing_lag_seconds', 'Age of the oldest audit event awaiting sealing (0 when none awaits)', (value, now) =>
    value.oldestUnsealedAt ? Math.max(0, now - seconds(value.oldestUnsealedAt)) : 0,
  );
  stateGauge('ringvakt_audit_last_checkpoint_timestamp_seconds', 'When the newest signed audit checkpoint was signed (0: none yet)', (value) => seconds(value.newestCheckpointAt));
  stateGauge('ringvakt_calls_in_progress', 'Outbound calls being dialed, answered or connected', (value) => value.callsInProgress);
  stateGauge('ringvakt_inbound_calls_queued', 'Inbound calls waiting in a queue for an agent', (value) => value.callsQueued);
  new Gauge({
    name: 'ringvakt_agents',
    help: 'Signed-in agents by state: available, busy (reserved, on a call, wrapping up), paused',
    labelNames: ['state'] as const,
    registers: [registry],
    async collect() {
      const value = await readStatus();
      this.reset();
      if (!value) return;
      this.set({ state: 'available' }, value.agentsAvailable);
      this.set({ state: 'busy' }, value.agentsBusy);
      this.set({ state: 'paused' }, value.agentsPaused);
    },
  });
  stateGauge('ringvakt_campaigns_active', 'Campaigns whose dialer is running', (value) => value.campaignsActive);
  stateGauge('ringvakt_contact_imports_running', 'Contact imports in progress', (value) => value.importsRunning);
  stateGauge('ringvakt_backup_last_success_timestamp_seconds', 'When the newest good backup finished (0: never)', (value) => seconds(value.lastBackupAt));
  stateGauge('ringvakt_backup_age_seconds', 'Age of the newest good backup (+Inf when there is none)', (value, now) =>
    value.lastBackupAt ? Math.max(0, now - seconds(value.lastBackupAt)) : Number.POSITIVE_INFINITY,
  );
  stateGauge('ringvakt_restore_drill_last_success_timestamp_seconds', 'When the newest successful restore drill finished (0: never)', (value) => seconds(value.lastDrillAt));
  stateGauge('ringvakt_restore_drill_recovery_seconds', 'How long the newest successful restore drill took to restore and verify (recovery time; NaN before the first)', (value) =>
    value.lastDrillRecoverySeconds ?? Number.NaN,
  );

  const plugin = fp(
    async (app) => {
      app.addHook('onResponse', async (request, reply) => {
        const route = request.routeOptions.url ?? '(unmatched)';
        requests.inc({ method: request.method, route, status: String(reply.statusCode) });
        noteResponse(request.method, route, reply.statusCode);
        duration.observe({ method: request.method, route }, reply.elapsedTime / 1000);
      });
    },
    { name: 'ringvakt-metrics' },
  );
  return { registry, plugin };
}
