import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { recordAuditEvent } from '../src/audit/audit-event.ts';
import { canonicalEvent, type StoredAuditEvent } from '../src/audit/canonical-event.ts';
import { inclusionProof, leafHash } from '../src/audit/merkle.ts';
import { sealTenantLedger, withPrefetchedSubtrees } from '../src/audit/seal-audit-log.ts';
import { loadSigningKey } from '../src/audit/signing-key.ts';
import { loadConfig } from '../src/config.ts';
import { createLocalKeyProvider } from '../src/crypto/root-keys/local-key-provider.ts';
import { openDatabase } from '../src/db/database.ts';
import { createLogger } from '../src/logger.ts';
import type { BenchRow } from './support.ts';

const LEDGER_SIZE = Number(process.env.BENCH_AUDIT_EVENTS ?? 1_000_000);
const WRITERS = 8;
const APPENDS_PER_WRITER = Number(process.env.BENCH_AUDIT_APPENDS ?? 2_500);

function sampleEvent(tenantId: string, index: number): StoredAuditEvent {
  return {
    tenantId,
    occurredAt: new Date(1_790_000_000_000 + index),
    actorType: 'api_token',
    actorId: '6f0c7d2e-3b1a-4c55-9a6e-0d9f1b2c3d4e',
    action: 'contact.update',
    targetType: 'contact',
    targetId: `11111111-2222-4333-8444-${String(index).padStart(12, '0')}`,
    outcome: 'success',
    sourceIp: '203.0.113.7',
    requestId: `req-${index}`,
    details: { field: 'phone', index },
  };
}

/**
 * The audit ledger: appends with 8 concurrent writers (one event per transaction, as a change
 * records it) against plain INSERTs of the same rows into an unchained table; `audit verify` over
 * a ledger of LEDGER_SIZE events against raw SHA-256 over the same canonical bytes; and the time
 * of one inclusion proof in that ledger.
 */
export async function auditBench(): Promise<BenchRow[]> {
  const folder = mkdtempSync(path.join(os.tmpdir(), 'ringvakt-bench-audit-'));
  chmodSync(folder, 0o711);
  const database = await openDatabase(loadConfig({ RINGVAKT_DATA_DIR: folder, RINGVAKT_DB_POOL_MAX: '16' }), createLogger('warn'), { applyMigrations: true });
  const superuserUrl = new URL(database.embedded!.adminUrl);
  superuserUrl.pathname = '/ringvakt';
  const plain = new pg.Pool({ connectionString: superuserUrl.toString(), max: WRITERS });
  try {
    const root = createLocalKeyProvider(path.join(folder, 'secrets', 'root-keys.json'));
    const key = await loadSigningKey(database.systemDb, root);

    // 1. Appends.
    const appendTenant = await database.systemDb.createTenant('bench-append', 'Append bench');
    await plain.query(`CREATE TABLE bench_plain_events (LIKE ringvakt.audit_events)`);
    const runWriters = async (appends: number, write: (writer: number, index: number) => Promise<unknown>) => {
      const started = performance.now();
      await Promise.all(Array.from({ length: WRITERS }, async (_, writer) => {
        for (let index = 0; index < appends; index += 1) await write(writer, index);
      }));
      return (WRITERS * appends) / ((performance.now() - started) / 1000);
    };
    const appendEvent = (writer: number, index: number) =>
      database.forTenant(appendTenant).transaction((trx) =>
        recordAuditEvent(trx, { action: 'user.create', outcome: 'success', actor: { type: 'api_token', id: `writer-${writer}` }, target: { type: 'user', id: `u-${index}` }, details: { index } }),
      );
    let plainId = 0;
    const appendPlain = async (writer: number, index: number) => {
      const client = await plain.connect();
      try {
        await client.query('BEGIN');
        await client.query(
          `INSERT INTO bench_plain_events (tenant_id, id, occurred_at, actor_type, actor_id, action, target_type, target_id, outcome, details, leaf_hash)
           VALUES ($1, $2, now(), 'api_token', $3, 'user.create', 'user', $4, 'success', $5, $6)`,
          [appendTenant, (plainId += 1), `writer-${writer}`, `u-${index}`, JSON.stringify({ index }), Buffer.alloc(32)],
        );
        await client.query('COMMIT');
      } finally {
        client.release();
      }
    };
    // Warm both up (connections, prepared statements, the JIT), then alternate rounds so that the
    // shared machine's noise falls on both alike; the mean of the rounds counts.
    await runWriters(250, appendEvent);
    await runWriters(250, appendPlain);
    const oursRounds: number[] = [];
    const plainRounds: number[] = [];
    for (let round = 0; round < 2; round += 1) {
      oursRounds.push(await runWriters(APPENDS_PER_WRITER, appendEvent));
      plainRounds.push(await runWriters(APPENDS_PER_WRITER, appendPlain));
    }
    const ours = oursRounds.reduce((sum, rate) => sum + rate, 0) / oursRounds.length;
    const baseline = plainRounds.reduce((sum, rate) => sum + rate, 0) / plainRounds.length;

    // 2. A large ledger, written in bulk (the same rows recordAuditEvent writes), then sealed.
    const ledgerTenant = await database.systemDb.createTenant('bench-ledger', 'Ledger bench');
    for (let start = 0; start < LEDGER_SIZE; start += 10_000) {
      const count = Math.min(10_000, LEDGER_SIZE - start);
      const events = Array.from({ length: count }, (_, offset) => sampleEvent(ledgerTenant, start + offset));
      await database.forTenant(ledgerTenant).transaction(async (trx) => {
        for (let at = 0; at < events.length; at += 2_000) {
          await trx
            .insertInto('audit_events')
            .values(events.slice(at, at + 2_000).map((event) => ({
              occurred_at: event.occurredAt as Date,
              actor_type: event.actorType,
              actor_id: event.actorId,
              action: event.action,
              target_type: event.targetType,
              target_id: event.targetId,
              outcome: 'success' as const,
              source_ip: event.sourceIp,
              request_id: event.requestId,
              details: JSON.stringify(event.details),
              leaf_hash: leafHash(canonicalEvent(event)),
            })))
            .execute();
        }
      });
    }
    for (;;) {
      const sealed = await database.forTenant(ledgerTenant).transaction((trx) => sealTenantLedger(trx, key, { maxEvents: 100_000 }));
      if (!sealed || sealed.sealed === 0) break;
    }
    // A ledger months old has been vacuumed many times over; one loaded and sealed a moment ago
    // still carries a dead row version per event. Measure the steady state.
    await plain.query('VACUUM (ANALYZE) ringvakt.audit_events, ringvakt.audit_tree_nodes');

    // `ringvakt audit verify` as an operator runs it: its own process (start-up included).
    const verifyStarted = performance.now();
    const verify = spawnSync(process.execPath, ['--import', 'tsx', 'src/main.ts', 'audit', 'verify', '--tenant', 'bench-ledger'], {
      env: { ...process.env, DATABASE_URL: superuserUrl.toString(), RINGVAKT_DATA_DIR: folder, RINGVAKT_LOG_LEVEL: 'warn' },
      encoding: 'utf8',
      timeout: 600_000,
    });
    const verifySeconds = (performance.now() - verifyStarted) / 1000;
    if (verify.status !== 0 || !verify.stdout.includes(`${LEDGER_SIZE} sealed events`)) throw new Error(`verify failed: ${verify.stdout}${verify.stderr}`);

    const hashStarted = performance.now();
    for (let index = 0; index < LEDGER_SIZE; index += 1) createHash('sha256').update(canonicalEvent(sampleEvent(ledgerTenant, index))).digest();
    const hashSeconds = (performance.now() - hashStarted) / 1000;

    const proofTimes: number[] = [];
    await database.forTenant(ledgerTenant).read(async (trx) => {
      for (let sample = 0; sample < 200; sample += 1) {
        const leaf = Math.floor((sample * 7919 * 104729) % LEDGER_SIZE);
        const started = performance.now();
        await withPrefetchedSubtrees(trx, (source) => inclusionProof(source, leaf, LEDGER_SIZE));
        proofTimes.push(performance.now() - started);
      }
    });
    proofTimes.sort((a, b) => a - b);
    const median = proofTimes[Math.floor(proofTimes.length / 2)]!;
    const p99 = proofTimes[Math.floor(proofTimes.length * 0.99)]!;

    const millions = (LEDGER_SIZE / 1_000_000).toLocaleString('en');
    return [
      { name: `audit append, ${WRITERS} writers, one event per transaction (baseline: plain INSERT)`, unit: 'events/s', ours, baseline, higherIsBetter: true, target: '≥ 5000 events/s', met: ours >= 5000 },
      { name: `audit verify, ${millions} M events (baseline: SHA-256 of the same canonical bytes)`, unit: 's', ours: verifySeconds, baseline: hashSeconds, higherIsBetter: false, target: LEDGER_SIZE >= 1_000_000 ? '≤ 10 s' : 'at 1 M: ≤ 10 s', met: LEDGER_SIZE >= 1_000_000 ? verifySeconds <= 10 : undefined },
      { name: `inclusion proof at ${millions} M events, median of 200 (baseline column: their p99)`, unit: 'ms', ours: median, baseline: p99, higherIsBetter: false, target: 'median ≤ 5 ms', met: LEDGER_SIZE >= 1_000_000 ? median <= 5 : undefined },
    ];
  } finally {
    await plain.end();
    await database.close();
    rmSync(folder, { recursive: true, force: true });
  }
}
