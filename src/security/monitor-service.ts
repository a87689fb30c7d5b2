import pg from 'pg';
import type { SystemDb } from '../db/system-db.ts';
import type { TenantDb } from '../db/tenant-db.ts';
import type { FieldCipher } from '../crypto/field-cipher.ts';
import type { Logger } from '../logger.ts';
import { runEvery } from '../background-task.ts';
import { publicKeys } from '../audit/signing-key.ts';
import { verifyTenantLedger } from '../audit/verify-audit-log.ts';
import { DETECTION_RULES, effectiveSettings, LEDGER_RULE_ID, RULES_BY_ID, type RuleSettings } from './detection-rules.ts';
import { createTenantDetector, networkOf, type LedgerEvent, type TenantDetector } from './detector.ts';
import { recordHits, type OnRaised } from './alerts.ts';
import { aboveBaseline } from './baseline.ts';
import { createMailer } from '../modules/mail/mailer.ts';
import { findUserById } from '../modules/users/users.repo.ts';
import { syslogLine, syslogTransport } from '../audit/checkpoint-publishers.ts';
import { deliverDue } from './webhooks.ts';
import { alertRecipients } from './contacts.ts';
import { loadWorkingHours } from './working-hours.ts';
import type { WorkingHours } from './detection-rules.ts';
import { currentSignals, INSTALLATION_RULES, type Signal } from './installation-alerts.ts';
import { NODE_ID } from '../operations/node-id.ts';

/**
 * The security monitor of `ringvakt serve`. One node at a time runs it — the holder of a session
 * advisory lock on a connection of its own (it dies with its node; another node takes it on its
 * next tick, about a second later, and rebuilds the detectors' windows from the ledger). Every
 * tick it reads each tenant's newly sealed audit events in leaf order (gap-free: none missed,
 * none read twice), feeds them to the tenant's detector, and saves the alerts together with the
 * new cursor in one transaction. In tasks of their own it verifies each tenant's ledger every
 * `ledgerCheckMs` (a ledger altered in SQL raises a critical alert), and every node sends due
 * webhook deliveries. `tickMs: 0` runs no timers (tests call runOnce).
 */

const LOCK = 'ringvakt:security-monitor';
/** How often a node without the monitor's lock tries to take it. */
const RETRY_LOCK_MS = 3_000;
/** Sealed leaves taken per round (only the events a rule counts are read of them). */
const SPAN = 20_000;
/** Every action any rule counts: the only events read back when windows are rebuilt. */
const WATCHED_ACTIONS = [...new Set(DETECTION_RULES.flatMap((rule) => rule.match.flatMap((match) => match.actions)))];

export type SecurityMonitor = { stop(): Promise<void>; owner(): boolean; runOnce(): Promise<void> };

type EventRow = { id: string; leaf_index: string; occurred_at: Date; actor_type: string; actor_id: string | null; action: string; target_type: string | null; target_id: string | null; outcome: string; source_ip: string | null; details: Record<string, unknown> };

const toEvent = (row: EventRow): LedgerEvent => ({
  id: String(row.id),
  occurredAt: row.occurred_at,
  actorType: row.actor_type,
  actorId: row.actor_id,
  action: row.action,
  targetType: row.target_type,
  targetId: row.target_id,
  outcome: row.outcome,
  sourceIp: row.source_ip,
  details: row.details,
});

async function loadSettings(tenantDb: TenantDb): Promise<Map<string, RuleSettings>> {
  return effectiveSettings(await tenantDb.read((trx) => trx.selectFrom('detection_rule_settings').selectAll().execute()));
}

export function startSecurityMonitor(options: {
  systemDb: SystemDb;
  connectionString: string;
  cipher: () => Promise<FieldCipher>;
  logger: Logger;
  tickMs?: number;
  ledgerCheckMs?: number;
  /** The installation's syslog/SIEM receiver of every tenant's alerts (RINGVAKT_ALERT_SYSLOG). */
  alertSyslog?: string | undefined;
}): SecurityMonitor {
  const { systemDb, logger } = options;
  const ledgerCheckMs = options.ledgerCheckMs ?? 3_600_000;
  const detectors = new Map<string, TenantDetector>();
  let client: pg.Client | undefined;
  let held = false;

  const release = async () => {
    held = false;
    detectors.clear();
    const was = client;
    client = undefined;
    await was?.end().catch(() => undefined);
  };

  let nextTry = 0;
  const acquire = async (): Promise<boolean> => {
    if (held && client) {
      // The lock lives with its connection: one that died quietly must be noticed, not trusted.
      try {
        await client.query('SELECT 1');
        return true;
      } catch {
        await release();
        return false;
      }
    }
    // Nodes without the lock try again every few seconds (not a new connection every tick).
    if (Date.now() < nextTry) return false;
    nextTry = Date.now() + RETRY_LOCK_MS;
    const next = new pg.Client({ connectionString: options.connectionString, application_name: 'ringvakt-security-monitor', keepAlive: true });
    next.on('error', () => void release());
    try {
      await next.connect();
      const locked = await next.query<{ locked: boolean }>('SELECT pg_try_advisory_lock(hashtextextended($1, 0)) AS locked', [LOCK]);
      if (!locked.rows[0]?.locked) {
        await next.end();
        return false;
      }
      client = next;
      held = true;
      // Windows are rebuilt from the ledger: another node may have moved the cursors meanwhile.
      detectors.clear();
      logger.info('security monitor: this node evaluates the detection rules');
      return true;
    } catch {
      await next.end().catch(() => undefined);
      return false;
    }
  };

  /**
   * A new alert of medium severity or more is e-mailed (through the encrypted outbox) to whoever
   * is named for it (contacts.ts: the on-call person, the standing contacts for high and critical;
   * else the owners and administrators). The text names the rule and the subject's id, never
   * personal data; everything else is seen in the product and by webhooks and syslog.
   */
  const emailContacts: OnRaised = async (trx, alert) => {
    const recipients = await alertRecipients(trx, alert.severity);
    if (recipients.length === 0) return;
    const cipher = await options.cipher();
    const mailer = createMailer(cipher, logger);
    for (const userId of recipients) {
      const user = await findUserById(trx, cipher, userId);
      if (!user) continue;
      await mailer.queue(trx, 'security_alert', { to: user.email, subject: `Ringvakt security alert (${alert.severity}): ${RULES_BY_ID.get(alert.ruleId)?.title ?? alert.ruleId}`, text: `${alert.summary}\n\nAlert ${alert.id}. Open the security alerts in Ringvakt to acknowledge it.` });
    }
  };

  /**
   * Copies alerts to the installation's syslog/SIEM receiver: new ones, and a repeat's growing
   * count at most every 5 minutes. What was sent is recorded after it was sent, so a crash sends
   * again rather than never (a receiver deduplicates by alert id and hits).
   */
  const sendSyslog = options.alertSyslog ? syslogTransport(options.alertSyslog) : undefined;
  const SYSLOG_PRI: Record<string, number> = { critical: 34, high: 35, medium: 36, low: 37 }; // facility 4 (security), severity 2–5
  const syslogAll = async () => {
    if (!held || !sendSyslog) return;
    const installation = await systemDb.installationAlertsForSyslog();
    if (installation.length > 0) {
      await sendSyslog(installation.map((alert) => syslogLine(SYSLOG_PRI[alert.severity] ?? 37, 'installation-alert', { type: 'ringvakt.installation.alert', alertId: alert.id, rule: alert.rule_id, severity: alert.severity, subject: alert.subject, summary: alert.summary, state: alert.state, hits: alert.hits, node: alert.node, firstSeen: alert.first_seen.toISOString(), lastSeen: alert.last_seen.toISOString() })));
      await systemDb.markInstallationAlertsSent(installation);
    }
    for (const tenantId of await systemDb.tenantsWithAlertsForSyslog()) {
      const tenantDb = systemDb.inTenant(tenantId);
      const alerts = await tenantDb.read((trx) =>
        trx
          .selectFrom('security_alerts')
          .select(['id', 'rule_id', 'severity', 'subject', 'summary', 'state', 'hits', 'first_seen', 'last_seen'])
          .whereRef('hits', '>', 'syslog_hits')
          .where('raised_at', '>', new Date(Date.now() - 86_400_000))
          .where((eb) => eb.or([eb('syslog_at', 'is', null), eb('syslog_at', '<', new Date(Date.now() - 5 * 60_000))]))
          .orderBy('raised_at')
          .limit(200)
          .execute(),
      );
      if (alerts.length === 0) continue;
      await sendSyslog(alerts.map((alert) => syslogLine(SYSLOG_PRI[alert.severity] ?? 37, 'security-alert', { type: 'ringvakt.security.alert', tenantId, alertId: alert.id, rule: alert.rule_id, severity: alert.severity, subject: alert.subject, summary: alert.summary, state: alert.state, hits: alert.hits, firstSeen: alert.first_seen.toISOString(), lastSeen: alert.last_seen.toISOString() })));
      await tenantDb.transaction(async (trx) => {
        for (const alert of alerts) await trx.updateTable('security_alerts').set({ syslog_hits: alert.hits, syslog_at: new Date() }).where('id', '=', alert.id).execute();
      });
    }
  };

  /** The tenant's detector, its windows rebuilt from the ledger up to its cursor. */
  const detectorFor = async (tenantDb: TenantDb, cursor: number, settings: ReadonlyMap<string, RuleSettings>, hours: WorkingHours): Promise<TenantDetector> => {
    const existing = detectors.get(tenantDb.tenantId);
    if (existing) return existing;
    const detector = createTenantDetector();
    // The longest window of the rules counted from events (the ledger rule is raised by verification, not by counting).
    const longest = Math.max(...[...settings].filter(([id, setting]) => setting.enabled && id !== LEDGER_RULE_ID).map(([, setting]) => setting.windowSeconds), 60);
    const past = await tenantDb.read((trx) =>
      trx
        .selectFrom('audit_events')
        .select(['id', 'leaf_index', 'occurred_at', 'actor_type', 'actor_id', 'action', 'target_type', 'target_id', 'outcome', 'source_ip', 'details'])
        .where('action', 'in', WATCHED_ACTIONS)
        .where('occurred_at', '>', new Date(Date.now() - longest * 1000))
        .where('leaf_index', '<=', String(cursor))
        .orderBy('leaf_index')
        .execute(),
    );
    detector.feed((past as unknown as EventRow[]).map(toEvent), settings, { replay: true, hours });
    // Novelty rules know the networks of their longer past (grouped by address: a small answer).
    for (const rule of DETECTION_RULES) {
      if (!rule.novelty || rule.match.length !== 1) continue;
      const match = rule.match[0] as (typeof rule.match)[number];
      const addresses = await tenantDb.read((trx) =>
        trx
          .selectFrom('audit_events')
          .select((eb) => ['source_ip', eb.fn.countAll<string>().as('n')])
          .where('action', 'in', match.actions)
          .$if(match.outcomes !== undefined, (query) => query.where('outcome', 'in', match.outcomes ?? []))
          .where('occurred_at', '>', new Date(Date.now() - (rule.novelty?.learnDays ?? 30) * 86_400_000))
          .where('occurred_at', '<=', new Date(Date.now() - longest * 1000))
          .where('leaf_index', '<=', String(cursor))
          .groupBy('source_ip')
          .execute(),
      );
      detector.learn(rule.id, addresses.flatMap((row) => {
        const network = networkOf(row.source_ip);
        return network ? [{ network, events: Number(row.n) }] : [];
      }));
    }
    detectors.set(tenantDb.tenantId, detector);
    return detector;
  };

  const evaluate = async (tenantId: string) => {
    const tenantDb = systemDb.inTenant(tenantId);
    const settings = await loadSettings(tenantDb);
    const hours = await tenantDb.read(loadWorkingHours);
    for (let round = 0; round < 20; round += 1) {
      const cursorRow = await tenantDb.read((trx) => trx.selectFrom('detection_cursors').select('last_leaf').executeTakeFirst());
      const cursor = cursorRow ? Number(cursorRow.last_leaf) : -1;
      const detector = await detectorFor(tenantDb, cursor, settings, hours);
      // The sealed leaves up to the newest are all there (a seal commits its leaves together);
      // of a span of them only the events some rule counts are read.
      const newest = await tenantDb.read((trx) => trx.selectFrom('audit_events').select((eb) => eb.fn.max('leaf_index').as('leaf')).executeTakeFirst());
      if (newest?.leaf === null || newest?.leaf === undefined || Number(newest.leaf) <= cursor) return;
      const last = Math.min(Number(newest.leaf), cursor + SPAN);
      const rows = (await tenantDb.read((trx) =>
        trx
          .selectFrom('audit_events')
          .select(['id', 'leaf_index', 'occurred_at', 'actor_type', 'actor_id', 'action', 'target_type', 'target_id', 'outcome', 'source_ip', 'details'])
          .where('leaf_index', '>', String(cursor))
          .where('leaf_index', '<=', String(last))
          .where('action', 'in', WATCHED_ACTIONS)
          .orderBy('leaf_index')
          .execute(),
      )) as unknown as EventRow[];
      const hits = await aboveBaseline(tenantDb, detector.feed(rows.map(toEvent), settings, { hours }), settings);
      const moved = await tenantDb.transaction(async (trx) => {
        // Compare and set: a cursor moved by another node means this one's windows are stale.
        const now = await trx.selectFrom('detection_cursors').select('last_leaf').forUpdate().executeTakeFirst();
        if ((now ? Number(now.last_leaf) : -1) !== cursor) return true;
        await recordHits(trx, hits, settings, new Date(), emailContacts);
        if (now) await trx.updateTable('detection_cursors').set({ last_leaf: last, updated_at: new Date() }).execute();
        else await trx.insertInto('detection_cursors').values({ last_leaf: last }).execute();
        return false;
      });
      if (moved) {
        detectors.delete(tenantId);
        return;
      }
      if (last < Number(newest.leaf)) continue;
      return;
    }
  };

  const checkLedgers = async () => {
    const keys = await publicKeys(systemDb);
    for (const tenant of await systemDb.listTenants()) {
      const tenantDb = systemDb.inTenant(tenant.id);
      const cursor = await tenantDb.read((trx) => trx.selectFrom('detection_cursors').select('ledger_checked_at').executeTakeFirst());
      if (cursor?.ledger_checked_at && Date.now() - cursor.ledger_checked_at.getTime() < ledgerCheckMs) continue;
      // Hashed in worker threads (verify-worker.ts): the detector's event loop stays free meanwhile.
      const verdict = await tenantDb.snapshot((trx) => verifyTenantLedger(trx, keys, [], { parallel: { connectionString: options.connectionString } }));
      const settings = await loadSettings(tenantDb);
      await tenantDb.transaction(async (trx) => {
        if (!verdict.ok && settings.get(LEDGER_RULE_ID)?.enabled) {
          const now = new Date();
          await recordHits(trx, [{ ruleId: LEDGER_RULE_ID, subject: 'tenant', windowCount: 1, newEvents: 1, firstSeen: now, lastSeen: now, evidence: [] }], settings, now, emailContacts);
        }
        const updated = await trx.updateTable('detection_cursors').set({ ledger_checked_at: new Date() }).executeTakeFirst();
        if (Number(updated.numUpdatedRows) === 0) await trx.insertInto('detection_cursors').values({ last_leaf: -1, ledger_checked_at: new Date() }).execute();
      });
      if (!verdict.ok) logger.error({ tenant: tenant.slug }, 'security monitor: the audit ledger does not verify');
    }
  };

  const evaluateAll = async () => {
    if (!(await acquire())) return;
    for (const tenantId of await systemDb.tenantsWithEventsToEvaluate()) {
      try {
        await evaluate(tenantId);
      } catch (error) {
        detectors.delete(tenantId);
        logger.error({ err: error instanceof Error ? { name: error.name } : undefined, tenant: tenantId }, 'security monitor: evaluation failed for a tenant');
      }
    }
  };
  /** Due webhook deliveries, on every node (each is claimed first); never in the detector's way. */
  const deliverAll = async () => {
    const cipher = await options.cipher();
    for (const tenantId of await systemDb.tenantsWithAlertDeliveriesDue()) {
      await deliverDue(systemDb.inTenant(tenantId), cipher).catch((error: unknown) => logger.warn({ err: error instanceof Error ? { name: error.name } : undefined }, 'security monitor: webhook deliveries failed for a tenant'));
    }
  };
  const checkAll = async () => {
    if (held) await checkLedgers();
  };
  const runOnce = async () => {
    await evaluateAll();
    await checkAll();
    await deliverAll();
    await installationAll();
    await syslogAll();
  };

  /**
   * The installation's own detections, on every node: what this node counted (4xx floods per
   * route, key provider errors) and, on the monitor's node, the sealing lag. New alerts are logged
   * at once (the operator's log store sees them before anyone runs `ringvakt security status`).
   */
  const recorded = new Map<string, Date>();
  const installationAll = async () => {
    const signals = currentSignals();
    if (held) {
      const status = await systemDb.operationsStatus();
      const lagSeconds = status.oldestUnsealedAt ? (Date.now() - status.oldestUnsealedAt.getTime()) / 1000 : 0;
      if (lagSeconds >= INSTALLATION_RULES.sealingLag.threshold) {
        const now = new Date();
        signals.push({ rule: INSTALLATION_RULES.sealingLag, subject: 'audit-sealer', count: 1, firstSeen: now, lastSeen: now, countAfter: () => 1 } satisfies Signal);
      }
    }
    for (const signal of signals) {
      const key = `${signal.rule.id}|${signal.subject}`;
      const outcome = await systemDb.raiseInstallationAlert(signal, NODE_ID, recorded.get(key));
      if (recorded.size >= 1000) recorded.clear();
      recorded.set(key, signal.lastSeen);
      if (outcome.raised) {
        const line = { event: 'security.installation_alert', alertId: outcome.id, rule: signal.rule.id, severity: signal.rule.severity, subject: signal.subject, count: signal.count };
        if (signal.rule.severity === 'critical' || signal.rule.severity === 'high') logger.error(line, 'installation security alert');
        else logger.warn(line, 'installation security alert');
      }
    }
  };

  const onError = (task: string) => (error: unknown) => logger.error({ err: error instanceof Error ? { name: error.name } : undefined, task }, 'security monitor task failed');
  const tasks =
    options.tickMs === 0
      ? []
      : [
          runEvery('security_monitor', options.tickMs ?? 500, evaluateAll, onError('detection'), { catchUp: true }),
          runEvery('security_alert_delivery', 1_000, deliverAll, onError('delivery')),
          ...(sendSyslog ? [runEvery('security_alert_syslog', 2_000, syslogAll, onError('syslog'))] : []),
          runEvery('security_installation_signals', 5_000, installationAll, onError('installation signals')),
          // Ledger verification (long for a large ledger) in a task of its own: alerts do not wait for it.
          runEvery('security_ledger_check', Math.min(ledgerCheckMs, 60_000) || 60_000, checkAll, onError('ledger check')),
        ];
  return {
    owner: () => held,
    runOnce,
    async stop() {
      for (const task of tasks) await task.stop();
      await release();
    },
  };
}
