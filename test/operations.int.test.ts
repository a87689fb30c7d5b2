import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { recordAuditEvent } from '../src/audit/audit-event.ts';
import { sealTenantLedger } from '../src/audit/seal-audit-log.ts';
import { loadSigningKey } from '../src/audit/signing-key.ts';
import { probeRootKeys } from '../src/crypto/root-keys/root-key-provider.ts';
import { createVaultTransitProvider } from '../src/crypto/root-keys/vault-transit-provider.ts';
import { pruneBackups, scheduledBackupName, startBackupSchedule, takeBackup } from '../src/operations/backups.ts';
import { runRestoreDrill } from '../src/operations/drill.ts';
import { BackupStopped } from '../src/backup/logical-backup.ts';
import type { App } from '../src/server/types.ts';
import { buildTestApp } from './support/app.ts';
import { adminQuery, createTestDatabase, serverLabel, type TestDatabase } from './support/database.ts';
import { seedTenant, type SeededTenant } from './support/seed.ts';
import { until } from './support/until.ts';
import { startVaultTransitDouble } from './support/vault-transit-double.ts';

/** One sample of a metric from the Prometheus text format (undefined when absent). */
function sample(metrics: string, name: string, labels = ''): number | undefined {
  const line = metrics.split('\n').find((entry) => entry.startsWith(`${name}${labels} `) || (labels === '' && entry.startsWith(`${name} `)));
  if (line === undefined) return undefined;
  const value = line.slice(line.lastIndexOf(' ') + 1);
  return value === '+Inf' ? Infinity : value === '-Inf' ? -Infinity : Number(value);
}

describe(`operations: backups, restore drills, metrics, readiness (${serverLabel()} server)`, () => {
  const env = { RINGVAKT_KEY_PROVIDER: 'env', RINGVAKT_ROOT_KEY: randomBytes(32).toString('base64') };
  let db: TestDatabase;
  let tenant: SeededTenant;
  let app: App;
  let folder: string;
  const scrape = async () => (await app.inject({ url: '/metrics' })).body;

  beforeAll(async () => {
    db = await createTestDatabase({ env, ownerAccess: true });
    tenant = await seedTenant(db.handles, 'ops-a');
    app = await buildTestApp(db);
    folder = mkdtempSync(path.join(os.tmpdir(), 'ringvakt-ops-'));
  });
  afterAll(async () => {
    await app?.close();
    await db?.drop();
    rmSync(folder, { recursive: true, force: true });
  });

  it('records every backup, good or failed, and the metrics show the age of the newest good one', async () => {
    // Metrics cache the installation's state for 5 s: each scrape below is a fresh app's first.
    expect(sample(await scrape(), 'ringvakt_backup_last_success_timestamp_seconds')).toBe(0);
    // No backup yet: its age is infinite (an alert on the age fires).
    expect(sample(await scrape(), 'ringvakt_backup_age_seconds')).toBe(Infinity);
    const { root } = await db.handles.crypto();
    const file = path.join(folder, 'manual.rvbk');
    const taken = await takeBackup({ systemDb: db.handles.systemDb, ownerUrl: db.handles.migratorUrl(), root, file, trigger: 'operator', node: 'test-node' });
    expect(taken.rows).toBeGreaterThan(0);
    expect((await import('node:fs')).statSync(file).mode & 0o777).toBe(0o600);

    // A backup that cannot be written is recorded as failed and leaves nothing behind.
    const nowhere = path.join(folder, 'missing-folder', 'x.rvbk');
    await expect(takeBackup({ systemDb: db.handles.systemDb, ownerUrl: db.handles.migratorUrl(), root, file: nowhere, trigger: 'operator', node: 'test-node' })).rejects.toThrow();
    expect(existsSync(nowhere)).toBe(false);
    // An existing file is never overwritten, and not removed either.
    writeFileSync(path.join(folder, 'taken.rvbk'), 'someone else’s file');
    await expect(takeBackup({ systemDb: db.handles.systemDb, ownerUrl: db.handles.migratorUrl(), root, file: path.join(folder, 'taken.rvbk'), trigger: 'operator', node: 'test-node' })).rejects.toThrow(/EEXIST/);
    expect(readFileSync(path.join(folder, 'taken.rvbk'), 'utf8')).toBe('someone else’s file');

    const runs = await db.superQuery<{ outcome: string; rows: string | null }>(`SELECT outcome, rows FROM ringvakt.backup_runs WHERE kind = 'backup' ORDER BY finished_at`);
    expect(runs.rows.map((run) => run.outcome)).toEqual(['success', 'failed', 'failed']);
    expect(Number(runs.rows[0]!.rows)).toBe(taken.rows);

    const fresh = await buildTestApp(db);
    try {
      const metrics = (await fresh.inject({ url: '/metrics' })).body;
      expect(sample(metrics, 'ringvakt_backup_last_success_timestamp_seconds')).toBeGreaterThan(Date.now() / 1000 - 60);
      expect(sample(metrics, 'ringvakt_backup_age_seconds')).toBeLessThan(60);
      expect(sample(metrics, 'ringvakt_backup_failures_total', '{kind="backup"}')).toBeGreaterThanOrEqual(2);
    } finally {
      await fresh.close();
    }
  });

  it('a backup stopped part-way (its node shuts down) leaves no file and no failure on the record', async () => {
    const { root } = await db.handles.crypto();
    const file = path.join(folder, 'stopped.rvbk');
    const before = await db.superQuery(`SELECT 1 FROM ringvakt.backup_runs`);
    // Stopped at its third look: after the first tables are written, before the end.
    let looks = 0;
    const signal = { get aborted() { looks += 1; return looks > 2; } } as AbortSignal;
    await expect(takeBackup({ systemDb: db.handles.systemDb, ownerUrl: db.handles.migratorUrl(), root, file, trigger: 'schedule', node: 'test-node', signal })).rejects.toThrow(BackupStopped);
    expect(looks).toBe(3);
    expect(readdirSync(folder).filter((name) => name.startsWith('stopped'))).toEqual([]);
    expect((await db.superQuery(`SELECT 1 FROM ringvakt.backup_runs`)).rowCount).toBe(before.rowCount);
  });

  it('a restore drill restores into a scratch database, verifies the ledgers, reports recovery time and point, and cleans up', async () => {
    await db.handles.forTenant(tenant.tenantId).transaction((trx) => recordAuditEvent(trx, { action: 'user.update', outcome: 'success', actor: { type: 'operator' }, target: { type: 'user', id: tenant.owner.id } }));
    const key = await loadSigningKey(db.handles.systemDb, (await db.handles.crypto()).root);
    await db.handles.forTenant(tenant.tenantId).transaction((trx) => sealTenantLedger(trx, key));
    const { root } = await db.handles.crypto();
    const file = path.join(folder, 'drill.rvbk');
    const taken = await takeBackup({ systemDb: db.handles.systemDb, ownerUrl: db.handles.migratorUrl(), root, file, trigger: 'operator', node: 'test-node' });
    const drill = () => runRestoreDrill({ config: db.config, logger: db.logger, systemDb: db.handles.systemDb, ownerUrl: db.handles.migratorUrl(), root, file, erasures: [], trigger: 'operator', node: 'test-node' });

    const report = await drill();
    expect(report.problem).toBeUndefined();
    expect(report).toMatchObject({ ok: true, backupId: taken.backupId, rows: taken.rows });
    expect(report.ledgers).toEqual([{ tenant: 'ops-a', ok: true, sealed: expect.any(Number) }]);
    expect(report.ledgers[0]!.sealed).toBeGreaterThan(0);
    expect(report.recoverySeconds).toBeGreaterThan(0);
    expect(Date.now() - report.recoveryPoint!.getTime()).toBeLessThan(120_000);
    const scratch = `${db.name}_drill`;
    expect((await adminQuery('SELECT 1 FROM pg_database WHERE datname = $1', [scratch])).rowCount).toBe(0);
    expect((await adminQuery('SELECT 1 FROM pg_roles WHERE rolname LIKE $1', [`${scratch}%`])).rowCount).toBe(0);

    // A damaged backup: the drill fails, says why, is recorded, and leaves no scratch database.
    const bytes = readFileSync(file);
    bytes[bytes.length - 40] = (bytes[bytes.length - 40] as number) ^ 0xff;
    writeFileSync(file, bytes);
    const failed = await drill();
    expect(failed.ok).toBe(false);
    expect(failed.problem).toMatch(/frame|authenticat|decrypt|damaged|tamper/i);
    expect((await adminQuery('SELECT 1 FROM pg_database WHERE datname = $1', [scratch])).rowCount).toBe(0);
    const drills = await db.superQuery<{ outcome: string; recovery_seconds: number | null; backup_taken_at: Date | null }>(
      `SELECT outcome, recovery_seconds, backup_taken_at FROM ringvakt.backup_runs WHERE kind = 'drill' ORDER BY finished_at`,
    );
    expect(drills.rows.map((run) => run.outcome)).toEqual(['success', 'failed']);
    expect(drills.rows[0]!.recovery_seconds).toBeCloseTo(report.recoverySeconds, 3);

    const fresh = await buildTestApp(db);
    try {
      const metrics = (await fresh.inject({ url: '/metrics' })).body;
      expect(sample(metrics, 'ringvakt_restore_drill_last_success_timestamp_seconds')).toBeGreaterThan(Date.now() / 1000 - 120);
      expect(sample(metrics, 'ringvakt_restore_drill_recovery_seconds')).toBeCloseTo(report.recoverySeconds, 3);
    } finally {
      await fresh.close();
    }
  });

  it('a pg_dump-format backup: a custom-format archive inside the same encryption, drilled and verified — or, where pg_dump is older than the server, a clear refusal', async () => {
    const { root } = await db.handles.crypto();
    const file = path.join(folder, 'pgdump.rvbk');
    const server = Math.floor(Number((await db.superQuery<{ v: string }>("SELECT current_setting('server_version_num') AS v")).rows[0]?.v) / 10_000);
    const take = () => takeBackup({ systemDb: db.handles.systemDb, ownerUrl: db.handles.migratorUrl(), root, file, trigger: 'operator', node: 'test-node', format: 'pg_dump' });
    let version = '';
    try {
      version = execFileSync('pg_dump', ['--version'], { encoding: 'utf8' });
    } catch {
      // No client tools on this machine: the format is refused, saying what is missing.
      await expect(take()).rejects.toThrow('pg_dump was not found');
      return;
    }
    const tools = Number(/(\d+)/.exec(version)?.[1]);
    if (tools < server) {
      await expect(take()).rejects.toThrow(`pg_dump ${tools} cannot dump a PostgreSQL ${server} server`);
      expect(existsSync(file)).toBe(false);
      const failed = await db.superQuery<{ error: string }>(`SELECT error FROM ringvakt.backup_runs WHERE kind = 'backup' ORDER BY finished_at DESC LIMIT 1`);
      expect(failed.rows[0]?.error).toMatch(/cannot dump a PostgreSQL/);
      return;
    }
    const taken = await take();
    const events = Number((await db.superQuery<{ n: string }>('SELECT count(*) AS n FROM ringvakt.audit_events')).rows[0]?.n);
    expect(taken.rows).toBeGreaterThan(events);
    // Encrypted: neither pg_dump's archive signature nor a tenant's name is readable in the file.
    const raw = readFileSync(file);
    expect(raw.includes(Buffer.from('PGDMP'))).toBe(false);
    expect(raw.includes(Buffer.from('ops-a'))).toBe(false);
    const drill = () => runRestoreDrill({ config: db.config, logger: db.logger, systemDb: db.handles.systemDb, ownerUrl: db.handles.migratorUrl(), root, file, erasures: [], trigger: 'operator', node: 'test-node' });
    const report = await drill();
    expect(report.problem).toBeUndefined();
    expect(report).toMatchObject({ ok: true, backupId: taken.backupId, rows: taken.rows });
    expect(report.ledgers).toEqual([{ tenant: 'ops-a', ok: true, sealed: expect.any(Number) }]);
    // A frame altered: pg_restore is stopped before it commits, and the drill says why.
    const bytes = readFileSync(file);
    bytes[Math.floor(bytes.length / 2)] = (bytes[Math.floor(bytes.length / 2)] as number) ^ 0xff;
    writeFileSync(file, bytes);
    const failed = await drill();
    expect(failed.ok).toBe(false);
    expect(failed.problem).toMatch(/does not authenticate/);
  });

  it('scheduled backups: several nodes, one backup per interval, pruned to the newest few', async () => {
    const dir = path.join(folder, 'scheduled');
    // Old scheduled backups and an operator's own file in the folder.
    const { mkdirSync } = await import('node:fs');
    mkdirSync(dir, { recursive: true });
    const old = [5, 4, 3].map((daysAgo) => scheduledBackupName(new Date(Date.now() - daysAgo * 86_400_000)));
    for (const name of old) writeFileSync(path.join(dir, name), 'old');
    writeFileSync(path.join(dir, 'keep-me.txt'), 'not a backup');
    await db.superQuery(`SET session_replication_role = replica; DELETE FROM ringvakt.backup_runs; SET session_replication_role = origin;`);
    const nodes = ['node-1', 'node-2', 'node-3'].map((node) =>
      startBackupSchedule({
        systemDb: db.handles.systemDb,
        pool: db.handles.pool,
        ownerUrl: () => db.handles.migratorUrl(),
        root: async () => (await db.handles.crypto()).root,
        backups: { dir, intervalHours: 1, keep: 2 },
        node,
        logger: db.logger,
        tickMs: 100,
      }),
    );
    try {
      await until(async () => (await db.superQuery(`SELECT 1 FROM ringvakt.backup_runs WHERE kind = 'backup' AND outcome = 'success'`)).rowCount === 1, 20_000);
      // Ticks go on for a while: the interval has not passed, so nobody takes another.
      await new Promise((resolve) => setTimeout(resolve, 1_000));
    } finally {
      for (const node of nodes) await node.stop();
    }
    const runs = await db.superQuery<{ trigger: string; node: string }>(`SELECT trigger, node FROM ringvakt.backup_runs WHERE kind = 'backup'`);
    expect(runs.rows).toHaveLength(1);
    expect(runs.rows[0]!.trigger).toBe('schedule');
    const files = readdirSync(dir).sort();
    // The new backup and the newest old one; the operator's file is left alone.
    expect(files).toHaveLength(3);
    expect(files).toContain('keep-me.txt');
    expect(files.filter((name) => name.endsWith('.rvbk'))).toEqual([old[2], expect.stringMatching(/^ringvakt-\d{8}T\d{6}Z\.rvbk$/)]);
    expect(readFileSync(path.join(dir, files.find((name) => name.endsWith('.rvbk') && name !== old[2]) as string)).subarray(0, 6).toString()).toBe('RVBK1\n');
    expect(pruneBackups(dir, 1)).toHaveLength(1);
  });

  it('metrics count audit events by action and outcome, and show the sealing lag', async () => {
    const before = sample(await scrape(), 'ringvakt_audit_events_total', '{action="auth.login",outcome="failed"}') ?? 0;
    const denied = await app.inject({ method: 'POST', url: '/api/v1/auth/login', payload: { tenant: 'ops-a', email: tenant.owner.email, password: 'not the password at all' } });
    expect(denied.statusCode).toBe(401);
    const fresh = await buildTestApp(db);
    try {
      const metrics = (await fresh.inject({ url: '/metrics' })).body;
      expect(sample(metrics, 'ringvakt_audit_events_total', '{action="auth.login",outcome="failed"}')).toBe(before + 1);
      // That denial is not sealed yet: it waits, and the lag says for how long.
      expect(sample(metrics, 'ringvakt_audit_unsealed_events')).toBeGreaterThanOrEqual(1);
      expect(sample(metrics, 'ringvakt_audit_sealing_lag_seconds')).toBeGreaterThan(0);
      expect(sample(metrics, 'ringvakt_operations_status_up')).toBe(1);
      expect(sample(metrics, 'ringvakt_agents', '{state="available"}')).toBe(0);
    } finally {
      await fresh.close();
    }
    const key = await loadSigningKey(db.handles.systemDb, (await db.handles.crypto()).root);
    await db.handles.forTenant(tenant.tenantId).transaction((trx) => sealTenantLedger(trx, key));
    const sealed = await buildTestApp(db);
    try {
      const metrics = (await sealed.inject({ url: '/metrics' })).body;
      expect(sample(metrics, 'ringvakt_audit_unsealed_events')).toBe(0);
      expect(sample(metrics, 'ringvakt_audit_sealing_lag_seconds')).toBe(0);
      expect(sample(metrics, 'ringvakt_audit_last_checkpoint_timestamp_seconds')).toBeGreaterThan(Date.now() / 1000 - 60);
    } finally {
      await sealed.close();
    }
  });

  it('/readyz says not ready while the root key provider fails, and ready again once it works', async () => {
    let failing = true;
    const probed = await buildTestApp(db, { checkKeyProvider: async () => {
      if (failing) throw new Error('connect ECONNREFUSED');
    } });
    try {
      const down = await probed.inject({ url: '/readyz' });
      expect(down.statusCode).toBe(503);
      expect(down.json()).toMatchObject({ code: 'service_unavailable', detail: 'The root key provider is unreachable or failing.' });
      failing = false;
      // The answer is kept 10 s; a new app asks afresh.
      const again = await buildTestApp(db, { checkKeyProvider: async () => undefined });
      try {
        expect((await again.inject({ url: '/readyz' })).statusCode).toBe(200);
      } finally {
        await again.close();
      }
    } finally {
      await probed.close();
    }
    // The default check is a real wrap and unwrap through the provider.
    expect((await app.inject({ url: '/readyz' })).statusCode).toBe(200);
  });

  it('the readiness probe of a Vault transit provider fails clearly once Vault stops answering', async () => {
    const vault = await startVaultTransitDouble();
    const provider = await createVaultTransitProvider({ address: vault.address, token: vault.token, mount: 'transit', keyName: 'ringvakt-root' });
    await probeRootKeys(provider);
    await vault.close();
    await expect(probeRootKeys(provider)).rejects.toThrow(/did not answer/);
  });
});
