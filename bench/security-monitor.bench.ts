import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { recordAuditEvent } from '../src/audit/audit-event.ts';
import { startAuditSealer } from '../src/audit/seal-audit-log.ts';
import { loadSigningKey } from '../src/audit/signing-key.ts';
import { loadConfig } from '../src/config.ts';
import { createLocalKeyProvider } from '../src/crypto/root-keys/local-key-provider.ts';
import { openDatabase } from '../src/db/database.ts';
import { createLogger } from '../src/logger.ts';
import { startSecurityMonitor } from '../src/security/monitor-service.ts';
import type { BenchRow } from './support.ts';

const SECONDS = Number(process.env.BENCH_MONITOR_SECONDS ?? 60);
/** One insider burst this often: under the alert rate limit (20 new alerts a minute per tenant), so each must raise its own alert. */
const BURST_EVERY_MS = 4_000;
const RATE = Number(process.env.BENCH_MONITOR_RATE ?? 5_000);
const WRITERS = 8;
/** Events per transaction: a busy floor's requests, several events each, committing together. */
const PER_TRANSACTION = 25;

/**
 * Security monitoring under load: 8 writers append RATE audit events a second for SECONDS (the
 * sealer and the monitor running as in `serve`: sealing every second, evaluating every second).
 * Most events are everyday work; every 4 s a fresh "insider" reveals 45 contacts in a burst,
 * which must raise one alert (more often would meet the per-tenant rate limit of new alerts). Reported: the rate the monitor evaluated at against the rate the
 * ledger took the events at (keeping up means the same), and the alert latency — from the commit
 * of the event that crossed the threshold to the alert's commit — p50 and p99 (target ≤ 5 s).
 */
export async function securityMonitorBench(): Promise<BenchRow[]> {
  const folder = mkdtempSync(path.join(os.tmpdir(), 'ringvakt-bench-monitor-'));
  chmodSync(folder, 0o711);
  const logger = createLogger('warn');
  const database = await openDatabase(loadConfig({ RINGVAKT_DATA_DIR: folder, RINGVAKT_DB_POOL_MAX: '16' }), logger, { applyMigrations: true });
  try {
    const root = createLocalKeyProvider(path.join(folder, 'secrets', 'root-keys.json'));
    const signingKey = await loadSigningKey(database.systemDb, root);
    const tenantId = await database.systemDb.createTenant('bench-monitor', 'Monitor bench');
    const tenantDb = database.forTenant(tenantId);
    // As `serve` runs them: the sealer and the monitor with their defaults.
    const sealer = startAuditSealer({ systemDb: database.systemDb, signingKey, logger });
    const monitor = startSecurityMonitor({ systemDb: database.systemDb, connectionString: String(database.pool.options.connectionString), cipher: async () => (await database.crypto()).cipher, logger });
    const triggers = new Map<string, number>();
    let appended = 0;
    const started = Date.now();
    const deadline = started + SECONDS * 1000;
    const perWriterInterval = (PER_TRANSACTION * WRITERS * 1000) / RATE;
    let insider = 0;
    let nextInsiderAt = started + BURST_EVERY_MS;
    await Promise.all(
      Array.from({ length: WRITERS }, async (_, writer) => {
        let next = Date.now();
        while (Date.now() < deadline) {
          // The insider's burst: one writer, every BURST_EVERY_MS.
          if (writer === 0 && Date.now() >= nextInsiderAt) {
            nextInsiderAt += BURST_EVERY_MS;
            insider += 1;
            const actor = `insider-${insider}`;
            await tenantDb.transaction(async (trx) => {
              for (let index = 0; index < 45; index += 1) {
                await recordAuditEvent(trx, { action: 'contact.reveal', outcome: 'success', actor: { type: 'user', id: actor }, target: { type: 'contact', id: `c-${insider}-${index}` }, details: { fields: 'phones' } });
              }
            });
            triggers.set(`user:${actor}`, Date.now());
            appended += 45;
          }
          await tenantDb.transaction(async (trx) => {
            for (let index = 0; index < PER_TRANSACTION; index += 1) {
              await recordAuditEvent(trx, { action: 'contact.update', outcome: 'success', actor: { type: 'user', id: `agent-${writer}` }, target: { type: 'contact', id: `c-${writer}-${index}` }, details: { field: 'notes' } });
            }
          });
          appended += PER_TRANSACTION;
          next += perWriterInterval;
          const wait = next - Date.now();
          if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
        }
      }),
    );
    const appendSeconds = (Date.now() - started) / 1000;
    // The monitor catches up: every appended event evaluated (or 60 s pass).
    const caughtUpBy = Date.now() + 60_000;
    let evaluated = 0;
    while (Date.now() < caughtUpBy) {
      const cursor = await tenantDb.read((trx) => trx.selectFrom('detection_cursors').select('last_leaf').executeTakeFirst());
      evaluated = cursor ? Number(cursor.last_leaf) + 1 : 0;
      if (evaluated >= appended) break;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    const evaluateSeconds = (Date.now() - started) / 1000;
    await monitor.stop();
    await sealer.stop();
    const alerts = await tenantDb.read((trx) => trx.selectFrom('security_alerts').select(['subject', 'raised_at', 'rule_id']).execute());
    const latencies = alerts
      .filter((alert) => alert.rule_id === 'data.reveal_burst' && triggers.has(alert.subject))
      .map((alert) => alert.raised_at.getTime() - (triggers.get(alert.subject) as number))
      .sort((a, b) => a - b);
    // Where the time goes: from the burst's commit to the checkpoint that sealed it, and on to its alert.
    const sealed = await tenantDb.read(async (trx) => {
      const rows = await trx.selectFrom('audit_events').select((eb) => ['actor_id', eb.fn.max('leaf_index').as('leaf')]).where('action', '=', 'contact.reveal').groupBy('actor_id').execute();
      const out = new Map<string, number>();
      for (const row of rows) {
        const checkpoint = await trx.selectFrom('audit_checkpoints').select('signed_at').where('tree_size', '>', String(row.leaf)).orderBy('tree_size').executeTakeFirst();
        if (checkpoint) out.set(`user:${row.actor_id ?? ''}`, checkpoint.signed_at.getTime());
      }
      return out;
    });
    const sealLags = [...triggers].map(([subject, at]) => (sealed.get(subject) ?? Number.NaN) - at).sort((a, b) => a - b);
    process.stderr.write(`  monitor: commit → sealed ms ${sealLags.join(' ')}\n`);
    const pick = (share: number) => latencies[Math.min(latencies.length - 1, Math.floor(share * latencies.length))] ?? Number.NaN;
    const p99 = pick(0.99);
    process.stderr.write(`  monitor: ${appended} events appended in ${appendSeconds.toFixed(1)} s, ${evaluated} evaluated by ${evaluateSeconds.toFixed(1)} s; ${latencies.length} of ${triggers.size} bursts alerted, other alerts ${alerts.length - latencies.length}; latency p50 ${pick(0.5)} ms; all ${latencies.join(' ')}\n`);
    const appendRate = appended / appendSeconds;
    const evaluateRate = evaluated / evaluateSeconds;
    return [
      { name: `security monitor: events evaluated per second while ${WRITERS} writers append at ${RATE}/s for ${SECONDS} s (baseline: the rate the ledger took them at)`, unit: 'events/s', ours: Math.round(evaluateRate), baseline: Math.round(appendRate), higherIsBetter: true, target: '≥ 5,000/s, keeping up', met: evaluated >= appended && evaluateRate >= 0.95 * appendRate && appendRate >= 0.95 * RATE },
      { name: `security monitor: alert latency p99, event commit → alert commit, ${latencies.length} of ${triggers.size} bursts alerted (baseline: p50)`, unit: 'ms', ours: p99, baseline: pick(0.5), higherIsBetter: false, target: '≤ 5,000 ms, every burst alerted', met: p99 <= 5_000 && latencies.length === triggers.size },
    ];
  } finally {
    await database.close();
    rmSync(folder, { recursive: true, force: true });
  }
}
