import { runEvery } from '../background-task.ts';
import { importWorkerTick } from '../modules/imports/claim-import.ts';
import { runImportInThread } from '../modules/imports/import-thread.ts';
import type { TenantDb } from '../db/tenant-db.ts';
import { smtpTransport, startEmailSender } from '../modules/mail/mailer.ts';
import type { Config } from '../config.ts';
import { openDatabase, type MigratorTarget } from '../db/database.ts';
import type { Logger } from '../logger.ts';
import { catchUpLedgerMirror, fileLedgerMirror } from '../privacy/erasure.ts';
import { startRetentionService } from '../privacy/retention.routes.ts';
import { startReminderService } from '../privacy/reminders.ts';
import { buildApp } from './app.ts';
import { startAuditSealer } from '../audit/seal-audit-log.ts';
import { loadSigningKey } from '../audit/signing-key.ts';
import { createCheckpointPublishers } from '../audit/checkpoint-publishers.ts';
import { startWitnessDeliveryRecorder, type WitnessDeliveryRecorder } from '../audit/witness-deliveries.ts';
import { startReencryptionWorker } from '../crypto/reencrypt.ts';
import { randomBytes } from 'node:crypto';
import { startDialerService, type DialerService } from '../dialer/dialer-service.ts';
import { startBackupSchedule } from '../operations/backups.ts';
import { startNodePresence } from '../operations/node-presence.ts';
import { NODE_ID } from '../operations/node-id.ts';
import { startSecurityMonitor } from '../security/monitor-service.ts';
import { setWebhookTargets } from '../security/webhooks.ts';
import { startComplianceSchedule } from '../compliance/schedule.ts';
import { VirtualClock } from '../telephony/clock.ts';
import { seededRandom } from '../telephony/random.ts';
import { createSimulator } from '../telephony/simulator.ts';
import { ANSWERING_CALLEE_MODEL, DEFAULT_CALLEE_MODEL } from '../telephony/callee-model.ts';

export type RunningServer = { url: string; stop(reason: string): Promise<void> };

/**
 * Starts everything `ringvakt serve` runs, and stops it in order: refuse new work (/readyz says
 * 503), let in-flight requests finish within the shutdown timeout, close the pool, stop the
 * embedded PostgreSQL.
 */
export async function startServer(config: Config, logger: Logger, options: { target?: Promise<MigratorTarget> } = {}): Promise<RunningServer> {
  const startedAt = performance.now();
  // Owner access only for scheduled backups: they must see every row (see src/operations/backups.ts).
  const ownerAccess = config.backups.intervalHours > 0;
  const database = await openDatabase(config, logger, { applyMigrations: true, ownerAccess, ...(options.target ? { target: options.target } : {}) });
  const nodeId = NODE_ID;
  let shuttingDown = false;
  let app;
  let sealer: { stop(): Promise<void> } | undefined;
  let witnessDeliveries: WitnessDeliveryRecorder | undefined;
  let reencryption: { stop(): Promise<void> } | undefined;
  let mailSender: { stop(): Promise<void> } | undefined;
  let importWorker: { stop(): Promise<void> } | undefined;
  let dialers: DialerService | undefined;
  let retention: { stop(): Promise<void> } | undefined;
  let reminders: { stop(): Promise<void> } | undefined;
  let backups: { stop(): Promise<void> } | undefined;
  let presence: { stop(): Promise<void> } | undefined;
  let mirrorCatchUp: { stop(): Promise<void> } | undefined;
  let securityMonitor: { stop(): Promise<void> } | undefined;
  let complianceSchedule: { stop(): Promise<void> } | undefined;
  let stopTelephonyClock: (() => void) | undefined;
  let stopImports = false;
  try {
    // The root key first: a wrong or unreadable one stops the start before anything is served.
    const { root: rootKeys } = await database.crypto();
    witnessDeliveries = startWitnessDeliveryRecorder(database.forTenant, logger);
    sealer = startAuditSealer({
      systemDb: database.systemDb,
      signingKey: await loadSigningKey(database.systemDb, rootKeys),
      logger,
      publishers: createCheckpointPublishers(config.auditWitnesses, logger, witnessDeliveries.onDelivered),
    });
    reencryption = startReencryptionWorker({ systemDb: database.systemDb, crypto: database.crypto, logger });
    if (config.mail.smtpUrl) {
      const { cipher } = await database.crypto();
      const transport = smtpTransport(config.mail.smtpUrl, config.mail.from);
      mailSender = startEmailSender({ systemDb: database.systemDb, changes: database.changes, cipher, transport, logger });
    }
    // Contact imports: claimed with a lease, so every node may run this and each import runs once.
    // Each import runs in a worker thread of its own (import-thread.ts), never on the event loop
    // that serves requests.
    const connectionString = String(database.pool.options.connectionString);
    // This node's presence lock: while it is held, nobody takes over this node's singleton work
    // before its long grace; once the process is gone, others take it over within seconds.
    const nodePresence = startNodePresence({ connectionString, nodeId, logger });
    presence = nodePresence;
    const runInThread = (tenantDb: TenantDb, importId: string, owner: string, hooks: { logger: Logger; stop: () => boolean }) =>
      runImportInThread(tenantDb, { connectionString, config, importId, owner }, hooks);
    importWorker = runEvery('contact_import', 2000, importWorkerTick(database.systemDb, runInThread, logger, () => stopImports, { owner: nodeId, presence: nodePresence }), (error) =>
      logger.error({ err: error instanceof Error ? { name: error.name } : undefined }, 'contact import worker failed'),
    );
    // Campaign dialers. The telephony provider is the simulator (no real calls), in real time;
    // a SIP or cloud provider plugs in here behind the same interface.
    const telephonyClock = new VirtualClock(Date.now() + config.simulatorShiftMs);
    stopTelephonyClock = telephonyClock.followRealTime();
    const simulator = createSimulator({
      clock: telephonyClock,
      random: seededRandom(randomBytes(4).readUInt32BE(0)),
      model: config.simulatorCallees === 'answering' ? ANSWERING_CALLEE_MODEL : DEFAULT_CALLEE_MODEL,
    });
    dialers = startDialerService({
      systemDb: database.systemDb,
      crypto: database.crypto,
      provider: simulator,
      clock: telephonyClock,
      nodeId,
      logger,
      presence: nodePresence,
    });
    const erasureMirror = fileLedgerMirror(config.erasureLedgerFile);
    // The mirror file catches up with the database's erasure ledger: now (a crash may have left
    // it short) and every 10 minutes (the other nodes' erasures).
    const catchUp = async () => {
      const appended = await catchUpLedgerMirror(database.systemDb, config.erasureLedgerFile, erasureMirror);
      if (appended > 0) logger.info({ appended }, 'erasure ledger mirror caught up with the database');
    };
    await catchUp();
    mirrorCatchUp = runEvery('erasure_mirror', 10 * 60_000, catchUp, (error) => logger.error({ err: { name: (error as Error).name } }, 'erasure ledger mirror catch-up failed'));
    retention = startRetentionService({ systemDb: database.systemDb, crypto: database.crypto, mirror: erasureMirror, logger, node: nodeId, presence: nodePresence });
    reminders = startReminderService({ systemDb: database.systemDb, cipher: async () => (await database.crypto()).cipher, logger });
    backups = startBackupSchedule({
      systemDb: database.systemDb,
      pool: database.pool,
      ownerUrl: () => database.migratorUrl(),
      root: async () => (await database.crypto()).root,
      backups: config.backups,
      node: nodeId,
      logger,
    });
    // Detection rules over the sealed audit ledger, alerts and their webhooks (one node at a time).
    setWebhookTargets(config.alertWebhookTargets);
    complianceSchedule = startComplianceSchedule({ systemDb: database.systemDb, crypto: await database.crypto(), logger });
    securityMonitor = startSecurityMonitor({ systemDb: database.systemDb, connectionString, cipher: async () => (await database.crypto()).cipher, logger, alertSyslog: config.alertSyslog });
    app = await buildApp({ config, logger, database, isShuttingDown: () => shuttingDown, erasureMirror });
    await app.listen({ host: config.host, port: config.port });
  } catch (error) {
    await sealer?.stop();
    await witnessDeliveries?.stop();
    await reencryption?.stop();
    await mailSender?.stop();
    stopImports = true;
    await importWorker?.stop();
    await dialers?.stop();
    await retention?.stop();
    await reminders?.stop();
    await backups?.stop();
    await presence?.stop();
    await mirrorCatchUp?.stop();
    await securityMonitor?.stop();
    await complianceSchedule?.stop();
    stopTelephonyClock?.();
    await database.close();
    throw error;
  }
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;
  const hostInUrl = config.host.includes(':') ? `[${config.host}]` : config.host;
  const url = config.port === 0 ? `${config.tls ? 'https' : 'http'}://${hostInUrl}:${port}` : config.publicUrl;
  logger.info({ url, startupMs: Math.round(performance.now() - startedAt) }, 'Ringvakt is ready');

  const tenants = await database.systemDb.listTenants();
  if (tenants.length === 0) {
    logger.info(
      'No tenant yet. Create the first one and its owner with: ' +
        'npm run ringvakt -- setup --tenant-slug <slug> --tenant-name <name> --owner-email <e-mail> --owner-name <name>',
    );
  }

  let stopping: Promise<void> | undefined;
  const stop = (reason: string) => {
    stopping ??= (async () => {
      shuttingDown = true;
      stopImports = true;
      // No more dials; this node's campaigns move to another node within a round, while this one
      // follows its calls in progress to their end (agents' commands still reach them by NOTIFY).
      await dialers?.handOver();
      // Long background work is told at once (a sweep gives up its tenant for another node, a
      // scheduled backup stops): it must not hold the shutdown past the drains.
      const backgroundStopped = Promise.all([retention?.stop(), backups?.stop()]);
      // /readyz says 503 from now on; a load balancer takes this node out before it closes.
      if (config.shutdownDrainMs > 0) {
        logger.info({ reason, drainMs: config.shutdownDrainMs }, 'shutting down: leaving the load balancer');
        await new Promise((resolve) => setTimeout(resolve, config.shutdownDrainMs));
      }
      logger.info({ reason }, 'shutting down: draining requests');
      const timer = setTimeout(() => {
        logger.warn('shutdown timeout reached; closing remaining connections');
        app.server.closeAllConnections();
      }, config.shutdownTimeoutMs);
      try {
        await app.close();
      } finally {
        clearTimeout(timer);
        await sealer?.stop();
        await witnessDeliveries?.stop();
        await reencryption?.stop();
        await mailSender?.stop();
        stopImports = true;
        await importWorker?.stop();
        await dialers?.stop({ callDrainMs: config.shutdownCallDrainMs });
        await backgroundStopped;
        await reminders?.stop();
        await presence?.stop();
        await mirrorCatchUp?.stop();
        await securityMonitor?.stop();
        await complianceSchedule?.stop();
        stopTelephonyClock?.();
        await database.close();
      }
      logger.info('stopped');
    })();
    return stopping;
  };
  return { url, stop };
}
