import { sql, type Kysely, type Selectable } from './kysely.ts';
import type { InstallationAlertsTable } from './schema-security.ts';
import type { Signal } from '../security/installation-alerts.ts';
import { raiseInstallationAlert } from './installation-alerts-db.ts';
import type { Database } from './schema.ts';
import { afterFailure, isLocked, SOURCE_LIMITS, sourceNetwork, toState, type StateRow } from '../modules/auth/throttle.ts';
import { asTenantTransaction, type TenantDb, type TenantTransaction } from './tenant-db.ts';

/**
 * Cross-tenant work (CLI operators, background jobs). It connects as the same runtime role as
 * everything else — there is no bypass of row-level security — and reaches across tenants only
 * through the owner's narrow SECURITY DEFINER functions, or by entering one tenant at a time.
 */
export type SystemDb = {
  createTenant(slug: string, name: string): Promise<string>;
  /**
   * Creates a tenant and runs `work` inside it, in one transaction: if `work` fails, the tenant
   * is not created either (no tenant without an owner, no slug taken by a half-made tenant).
   */
  createTenantWith<T>(slug: string, name: string, work: (trx: TenantTransaction, tenantId: string) => Promise<T>): Promise<T>;
  tenantIdBySlug(slug: string): Promise<string | undefined>;
  listTenants(): Promise<{ id: string; slug: string }[]>;
  /** Enters one tenant, as a job acting on that tenant's behalf. */
  inTenant(tenantId: string): TenantDb;
  /** The stored check value of a root key version (see src/crypto/root-key-check.ts). */
  rootKeyCheck(keyId: string): Promise<Buffer | undefined>;
  saveRootKeyCheck(keyId: string, checkValue: Buffer): Promise<void>;
  /** Tenants with audit events not yet sealed. */
  tenantsWithUnsealedAuditEvents(): Promise<string[]>;
  /** Tenants with a running key rotation job, or with plaintext from before field encryption. */
  tenantsNeedingReencryption(): Promise<string[]>;
  /** Root key versions that wrap some tenant's keys. */
  rootKeyIdsInUse(): Promise<string[]>;
  /** Audit signing keys (deployment-wide, no tenant data): newest first. */
  auditSigningKeys(): Promise<{ keyId: string; publicKey: Buffer; rootKeyId: string; wrappedPrivateKey: Buffer }[]>;
  saveAuditSigningKey(key: { keyId: string; publicKey: Buffer; rootKeyId: string; wrappedPrivateKey: Buffer }): Promise<void>;
  /** Login attempts per source network, across tenants (src/modules/auth/throttle.ts). */
  takeSourceAttempt(address: string, now: Date): Promise<{ blocked: boolean }>;
  forgiveSourceAttempt(address: string, now: Date): Promise<void>;
  /** Tenants with e-mail waiting in the outbox. */
  tenantsWithQueuedEmail(): Promise<string[]>;
  /** Tenants with a contact import queued or running. */
  tenantsWithPendingImports(): Promise<string[]>;
  /** Campaigns a dialer should run (active) or wind down (still leased), across tenants. */
  campaignsToDial(): Promise<{ tenantId: string; campaignId: string }[]>;
  /** Campaigns nobody dials with calls left open by a node that is gone (src/dialer/dialer-service.ts settles them). */
  campaignsWithLostAttempts(): Promise<{ tenantId: string; campaignId: string }[]>;
  /** Tenants with inbound queues (each node routes the inbound calls it receives). */
  tenantsWithQueues(): Promise<string[]>;
  /** Tenants with retention policies (the sweeper's work list). */
  tenantsWithRetentionPolicies(): Promise<string[]>;
  /** Tenants whose retention sweep lost its node, or was given up by a stopping node: to be resumed now. */
  tenantsWithSweepsToResume(): Promise<string[]>;
  /** Tenants with sealed audit events the security monitor has not read yet. */
  tenantsWithEventsToEvaluate(): Promise<string[]>;
  /** Tenants with alert webhook deliveries due. */
  tenantsWithAlertDeliveriesDue(): Promise<string[]>;
  /** Tenants with alerts the syslog receiver has not been told of (or not of their latest hits). */
  tenantsWithAlertsForSyslog(): Promise<string[]>;
  /** Records a signal of the installation itself (src/security/installation-alerts.ts). */
  raiseInstallationAlert(signal: Signal, node: string, recordedUpTo: Date | undefined): Promise<{ id: string; raised: boolean }>;
  /** The installation's alerts not resolved, or (with `recent`) also those resolved in the last week. */
  installationAlerts(options?: { recent?: boolean }): Promise<Selectable<InstallationAlertsTable>[]>;
  /** Acknowledges or resolves an installation alert; false when there is none in a state that allows it. */
  setInstallationAlertState(id: string, state: 'acknowledged' | 'resolved', by: string): Promise<boolean>;
  /** Installation alerts the syslog receiver has not been told of (or not of their latest hits), and marking them told. */
  installationAlertsForSyslog(): Promise<Selectable<InstallationAlertsTable>[]>;
  markInstallationAlertsSent(alerts: readonly { id: string; hits: number }[]): Promise<void>;
  /** Per tenant: open alerts and incidents, times to acknowledge and contain since `since` (counts and times only). */
  securityStatus(since: Date): Promise<TenantSecurityStatus[]>;
  /** The tenant of a privacy export, by the SHA-256 of its download token (the token alone travels). */
  privacyExportTenant(tokenSha256: Buffer): Promise<string | undefined>;
  /** Liveness of the pool, for /readyz. */
  ping(): Promise<void>;
  /** Records a finished backup or restore drill (src/operations/backups.ts). */
  recordBackupRun(run: BackupRun): Promise<void>;
  /** The newest successful backup, or undefined. */
  lastBackup(): Promise<{ finishedAt: Date; file: string | null } | undefined>;
  /** When the newest failed backup finished, or undefined. */
  lastFailedBackup(): Promise<Date | undefined>;
  /** The installation at a glance, for /metrics: counts and times, never a tenant's data. */
  operationsStatus(): Promise<OperationsStatus>;
  appliedMigrationVersions(): Promise<number[]>;
};

export type TenantSecurityStatus = {
  tenantId: string;
  slug: string;
  openAlerts: number;
  unacknowledgedHigh: number;
  openIncidents: number;
  medianAckSeconds: number | null;
  maxAckSeconds: number | null;
  medianContainSeconds: number | null;
  maxContainSeconds: number | null;
  /** The oldest high or critical alert nobody has acknowledged. */
  oldestUnacknowledgedHigh: Date | null;
  /** Whether anyone is named for security (a standing contact, or an on-call shift now). */
  securityContact: boolean;
};

export type BackupRun = {
  kind: 'backup' | 'drill';
  trigger: 'operator' | 'schedule';
  outcome: 'success' | 'failed';
  startedAt: Date;
  finishedAt: Date;
  backupId?: string;
  file?: string;
  bytes?: number;
  rows?: number;
  backupTakenAt?: Date;
  recoverySeconds?: number;
  /** A short description of what failed; never a key, a secret or personal data. */
  error?: string;
  node: string;
};

export type OperationsStatus = {
  unsealedEvents: number;
  oldestUnsealedAt: Date | null;
  newestCheckpointAt: Date | null;
  callsInProgress: number;
  callsQueued: number;
  agentsAvailable: number;
  agentsBusy: number;
  agentsPaused: number;
  campaignsActive: number;
  importsRunning: number;
  lastBackupAt: Date | null;
  lastDrillAt: Date | null;
  lastDrillRecoverySeconds: number | null;
};

export function createSystemDb(db: Kysely<Database>, forTenant: (tenantId: string) => TenantDb): SystemDb {
  return {
    async createTenant(slug, name) {
      const result = await sql<{ id: string }>`SELECT create_tenant(${slug}, ${name}) AS id`.execute(db);
      const id = result.rows[0]?.id;
      if (!id) throw new Error('create_tenant returned no id');
      return id;
    },
    async createTenantWith(slug, name, work) {
      const afterCommit: (() => void)[] = [];
      const result = await db.transaction().execute(async (trx) => {
        const created = await sql<{ id: string }>`SELECT create_tenant(${slug}, ${name}) AS id`.execute(trx);
        const tenantId = created.rows[0]?.id;
        if (!tenantId) throw new Error('create_tenant returned no id');
        await sql`SELECT set_config('app.tenant_id', ${tenantId}, true)`.execute(trx);
        return work(asTenantTransaction(trx, tenantId, afterCommit), tenantId);
      });
      for (const action of afterCommit) action();
      return result;
    },
    async tenantIdBySlug(slug) {
      const result = await sql<{ id: string | null }>`SELECT tenant_id_by_slug(${slug}) AS id`.execute(db);
      return result.rows[0]?.id ?? undefined;
    },
    async listTenants() {
      const result = await sql<{ id: string; slug: string }>`SELECT id, slug FROM list_tenant_ids()`.execute(db);
      return result.rows;
    },
    inTenant(tenantId) {
      return forTenant(tenantId);
    },
    async rootKeyCheck(keyId) {
      const result = await sql<{ check_value: Buffer }>`SELECT check_value FROM root_key_checks WHERE key_id = ${keyId}`.execute(db);
      return result.rows[0]?.check_value;
    },
    async saveRootKeyCheck(keyId, checkValue) {
      await sql`INSERT INTO root_key_checks (key_id, check_value) VALUES (${keyId}, ${checkValue}) ON CONFLICT (key_id) DO NOTHING`.execute(db);
    },
    takeSourceAttempt: (address, now) => takeSourceAttempt(db, address, now),
    forgiveSourceAttempt: (address, now) => forgiveSourceAttempt(db, address, now),
    async tenantsWithQueuedEmail() {
      const result = await sql<{ tenant_id: string }>`SELECT tenant_id FROM tenants_with_queued_email()`.execute(db);
      return result.rows.map((row) => row.tenant_id);
    },
    async tenantsWithRetentionPolicies() {
      const result = await sql<{ tenant_id: string }>`SELECT tenant_id FROM tenants_with_retention_policies()`.execute(db);
      return result.rows.map((row) => row.tenant_id);
    },
    async tenantsWithSweepsToResume() {
      const result = await sql<{ tenant_id: string }>`SELECT tenant_id FROM tenants_with_sweeps_to_resume()`.execute(db);
      return result.rows.map((row) => row.tenant_id);
    },
    async tenantsWithEventsToEvaluate() {
      const result = await sql<{ tenant_id: string }>`SELECT tenant_id FROM tenants_with_events_to_evaluate()`.execute(db);
      return result.rows.map((row) => row.tenant_id);
    },
    raiseInstallationAlert: (signal, node, recordedUpTo) => raiseInstallationAlert(db, signal, node, recordedUpTo),
    async installationAlerts(options = {}) {
      let query = db.selectFrom('installation_alerts').selectAll().orderBy('raised_at', 'desc').limit(500);
      query = options.recent ? query.where((eb) => eb.or([eb('state', '<>', 'resolved'), eb('resolved_at', '>', new Date(Date.now() - 7 * 86_400_000))])) : query.where('state', '<>', 'resolved');
      return query.execute();
    },
    async setInstallationAlertState(id, state, by) {
      const now = new Date();
      const result = await db
        .updateTable('installation_alerts')
        .set(state === 'acknowledged' ? { state, acknowledged_by: by, acknowledged_at: now } : { state, resolved_at: now, acknowledged_by: sql<string>`coalesce(acknowledged_by, ${by})`, acknowledged_at: sql<Date>`coalesce(acknowledged_at, ${now})` })
        .where('id', '=', id)
        .where('state', 'in', state === 'acknowledged' ? ['open'] : ['open', 'acknowledged'])
        .executeTakeFirst();
      return Number(result.numUpdatedRows) === 1;
    },
    async installationAlertsForSyslog() {
      return db
        .selectFrom('installation_alerts')
        .selectAll()
        .whereRef('hits', '>', 'syslog_hits')
        .where('raised_at', '>', new Date(Date.now() - 86_400_000))
        .where((eb) => eb.or([eb('syslog_at', 'is', null), eb('syslog_at', '<', new Date(Date.now() - 5 * 60_000))]))
        .orderBy('raised_at')
        .limit(200)
        .execute();
    },
    async markInstallationAlertsSent(alerts) {
      for (const alert of alerts) await db.updateTable('installation_alerts').set({ syslog_hits: alert.hits, syslog_at: new Date() }).where('id', '=', alert.id).execute();
    },
    async tenantsWithAlertsForSyslog() {
      const result = await sql<{ tenant_id: string }>`SELECT tenant_id FROM tenants_with_alerts_for_syslog()`.execute(db);
      return result.rows.map((row) => row.tenant_id);
    },
    async securityStatus(since) {
      const result = await sql<{ tenant_id: string; slug: string; open_alerts: string; unacknowledged_high: string; open_incidents: string; median_ack_seconds: number | null; max_ack_seconds: number | null; median_contain_seconds: number | null; max_contain_seconds: number | null; oldest_unacknowledged_high: Date | null; on_call: boolean }>`
        SELECT * FROM security_status_by_tenant(${since})`.execute(db);
      return result.rows.map((row) => ({
        tenantId: row.tenant_id,
        slug: row.slug,
        openAlerts: Number(row.open_alerts),
        unacknowledgedHigh: Number(row.unacknowledged_high),
        openIncidents: Number(row.open_incidents),
        medianAckSeconds: row.median_ack_seconds,
        maxAckSeconds: row.max_ack_seconds,
        medianContainSeconds: row.median_contain_seconds,
        maxContainSeconds: row.max_contain_seconds,
        oldestUnacknowledgedHigh: row.oldest_unacknowledged_high,
        securityContact: row.on_call,
      }));
    },
    async tenantsWithAlertDeliveriesDue() {
      const result = await sql<{ tenant_id: string }>`SELECT tenant_id FROM tenants_with_alert_deliveries_due()`.execute(db);
      return result.rows.map((row) => row.tenant_id);
    },
    async privacyExportTenant(tokenSha256) {
      const result = await sql<{ tenant_id: string | null }>`SELECT privacy_export_tenant(${tokenSha256}) AS tenant_id`.execute(db);
      return result.rows[0]?.tenant_id ?? undefined;
    },
    async tenantsWithQueues() {
      const result = await sql<{ tenant_id: string }>`SELECT tenant_id FROM tenants_with_queues()`.execute(db);
      return result.rows.map((row) => row.tenant_id);
    },
    async campaignsWithLostAttempts() {
      const result = await sql<{ tenant_id: string; campaign_id: string }>`SELECT tenant_id, campaign_id FROM campaigns_with_lost_attempts()`.execute(db);
      return result.rows.map((row) => ({ tenantId: row.tenant_id, campaignId: row.campaign_id }));
    },
    async campaignsToDial() {
      const result = await sql<{ tenant_id: string; campaign_id: string }>`SELECT tenant_id, campaign_id FROM campaigns_to_dial()`.execute(db);
      return result.rows.map((row) => ({ tenantId: row.tenant_id, campaignId: row.campaign_id }));
    },
    async tenantsWithPendingImports() {
      const result = await sql<{ tenant_id: string }>`SELECT tenant_id FROM tenants_with_pending_imports()`.execute(db);
      return result.rows.map((row) => row.tenant_id);
    },
    async tenantsNeedingReencryption() {
      const result = await sql<{ tenant_id: string }>`SELECT tenant_id FROM tenants_needing_reencryption()`.execute(db);
      return result.rows.map((row) => row.tenant_id);
    },
    async tenantsWithUnsealedAuditEvents() {
      const result = await sql<{ tenant_id: string }>`SELECT tenant_id FROM tenants_with_unsealed_audit_events()`.execute(db);
      return result.rows.map((row) => row.tenant_id);
    },
    async rootKeyIdsInUse() {
      const result = await sql<{ key_id: string }>`SELECT key_id FROM root_key_ids_in_use()`.execute(db);
      return result.rows.map((row) => row.key_id);
    },
    async auditSigningKeys() {
      const result = await sql<{ key_id: string; public_key: Buffer; root_key_id: string; wrapped_private_key: Buffer }>`
        SELECT key_id, public_key, root_key_id, wrapped_private_key FROM audit_signing_keys ORDER BY created_at DESC, key_id`.execute(db);
      return result.rows.map((row) => ({ keyId: row.key_id, publicKey: row.public_key, rootKeyId: row.root_key_id, wrappedPrivateKey: row.wrapped_private_key }));
    },
    async saveAuditSigningKey(key) {
      await sql`INSERT INTO audit_signing_keys (key_id, public_key, root_key_id, wrapped_private_key)
                VALUES (${key.keyId}, ${key.publicKey}, ${key.rootKeyId}, ${key.wrappedPrivateKey}) ON CONFLICT DO NOTHING`.execute(db);
    },
    async ping() {
      await sql`SELECT 1`.execute(db);
    },
    async recordBackupRun(run) {
      await db
        .insertInto('backup_runs')
        .values({
          kind: run.kind,
          trigger: run.trigger,
          outcome: run.outcome,
          started_at: run.startedAt,
          finished_at: run.finishedAt,
          backup_id: run.backupId ?? null,
          file: run.file ?? null,
          bytes: run.bytes ?? null,
          rows: run.rows ?? null,
          backup_taken_at: run.backupTakenAt ?? null,
          recovery_seconds: run.recoverySeconds ?? null,
          error: run.error?.slice(0, 500) ?? null,
          node: run.node.slice(0, 200),
        })
        .execute();
    },
    async lastBackup() {
      const row = await db
        .selectFrom('backup_runs')
        .select(['finished_at', 'file'])
        .where('kind', '=', 'backup')
        .where('outcome', '=', 'success')
        .orderBy('finished_at', 'desc')
        .limit(1)
        .executeTakeFirst();
      return row ? { finishedAt: row.finished_at, file: row.file } : undefined;
    },
    async lastFailedBackup() {
      const row = await db.selectFrom('backup_runs').select('finished_at').where('kind', '=', 'backup').where('outcome', '=', 'failed').orderBy('finished_at', 'desc').limit(1).executeTakeFirst();
      return row?.finished_at;
    },
    async operationsStatus() {
      const result = await sql<Record<string, string | number | Date | null>>`SELECT * FROM operations_status()`.execute(db);
      const row = result.rows[0] ?? {};
      const count = (name: string) => Number(row[name] ?? 0);
      const time = (name: string) => (row[name] instanceof Date ? (row[name] as Date) : null);
      return {
        unsealedEvents: count('unsealed_events'),
        oldestUnsealedAt: time('oldest_unsealed_at'),
        newestCheckpointAt: time('newest_checkpoint_at'),
        callsInProgress: count('calls_in_progress'),
        callsQueued: count('calls_queued'),
        agentsAvailable: count('agents_available'),
        agentsBusy: count('agents_busy'),
        agentsPaused: count('agents_paused'),
        campaignsActive: count('campaigns_active'),
        importsRunning: count('imports_running'),
        lastBackupAt: time('last_backup_at'),
        lastDrillAt: time('last_drill_at'),
        lastDrillRecoverySeconds: row.last_drill_recovery_seconds === null || row.last_drill_recovery_seconds === undefined ? null : Number(row.last_drill_recovery_seconds),
      };
    },
    async appliedMigrationVersions() {
      const rows = await db.selectFrom('schema_migrations').select('version').orderBy('version').execute();
      return rows.map((row) => row.version);
    },
  };
}

/** The global per-network login counter (table source_throttle, no tenant); rules in throttle.ts. */
function takeSourceAttempt(db: Kysely<Database>, address: string, now: Date): Promise<{ blocked: boolean }> {
  const source = sourceNetwork(address);
  return db.transaction().execute(async (trx) => {
    await sql`INSERT INTO source_throttle (source, window_started_at, failures) VALUES (${source}::cidr, ${now}, 0)
              ON CONFLICT (source) DO NOTHING`.execute(trx);
    // The growing delay of a network counts all its failures in the hour (no "consecutive" there).
    const result = await sql<StateRow>`
      SELECT window_started_at, failures, failures AS consecutive, locked_until FROM source_throttle WHERE source = ${source}::cidr FOR UPDATE`.execute(trx);
    const row = result.rows[0];
    if (!row) return { blocked: false };
    const before = toState(row);
    if (isLocked(before, now)) return { blocked: true };
    const state = afterFailure(before, now, SOURCE_LIMITS);
    await sql`UPDATE source_throttle SET window_started_at = ${state.windowStartedAt}, failures = ${state.failures},
                     locked_until = ${state.lockedUntil}, updated_at = ${now} WHERE source = ${source}::cidr`.execute(trx);
    // Keep the table small: counters idle for a day are forgotten.
    if (now.getTime() % 100 === 0) await sql`DELETE FROM source_throttle WHERE updated_at < ${new Date(now.getTime() - 86_400_000)}`.execute(trx);
    return { blocked: false };
  });
}

async function forgiveSourceAttempt(db: Kysely<Database>, address: string, now: Date): Promise<void> {
  await sql`UPDATE source_throttle SET failures = greatest(failures - 1, 0), updated_at = ${now}
             WHERE source = ${sourceNetwork(address)}::cidr AND (locked_until IS NULL OR locked_until <= ${now})`.execute(db);
}
