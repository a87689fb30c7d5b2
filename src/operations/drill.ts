import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { publicKeys } from '../audit/signing-key.ts';
import { verifyTenantLedger } from '../audit/verify-audit-log.ts';
import { restoreBackup } from '../backup/logical-backup.ts';
import type { Config } from '../config.ts';
import type { RootKeyProvider } from '../crypto/root-keys/root-key-provider.ts';
import { databaseNameOf, openDatabase } from '../db/database.ts';
import { rolesFor } from '../db/provision.ts';
import type { SystemDb } from '../db/system-db.ts';
import type { Logger } from '../logger.ts';
import type { ErasureLedgerEntry } from '../privacy/erasure.ts';
import { DrillError, failureText } from './backups.ts';
import { backupFailures } from './telemetry.ts';

export type DrillReport = {
  ok: boolean;
  backupId: string | undefined;
  /** When the backup was taken: what a restore would bring back (the recovery point). */
  recoveryPoint: Date | undefined;
  /** Seconds from the start of the restore to a verified database (the recovery time). */
  recoverySeconds: number;
  tables: number;
  rows: number;
  erasuresReplayed: number;
  ledgers: { tenant: string; ok: boolean; sealed: number; problem?: string }[];
  problem?: string;
};

/**
 * A restore drill: the backup is restored, exactly as `ringvakt backup restore` would, into a
 * scratch database on the same server (`<database>_drill`, with its own roles), the erasure
 * ledger is replayed, every tenant's audit ledger is verified, and the scratch database is dropped
 * again. The live database is only read (for the root key) and written once: the drill's record
 * in backup_runs, success or not, with its recovery time and point.
 */
export async function runRestoreDrill(options: {
  config: Config;
  logger: Logger;
  systemDb: SystemDb;
  ownerUrl: string;
  root: RootKeyProvider;
  file: string;
  erasures: readonly ErasureLedgerEntry[];
  trigger: 'operator' | 'schedule';
  node: string;
}): Promise<DrillReport> {
  const startedAt = new Date();
  const scratch = rolesFor(`${databaseNameOf(options.ownerUrl)}_drill`);
  const admin = new pg.Client({ connectionString: options.ownerUrl, application_name: 'ringvakt-drill' });
  const secrets = mkdtempSync(path.join(os.tmpdir(), 'ringvakt-drill-'));
  const report: DrillReport = { ok: false, backupId: undefined, recoveryPoint: undefined, recoverySeconds: 0, tables: 0, rows: 0, erasuresReplayed: 0, ledgers: [] };
  /** The scratch database carries this comment; nothing without it is ever dropped. */
  const MARK = 'ringvakt restore drill scratch database';
  const dropScratch = async () => {
    const existing = await admin.query<{ mark: string | null }>('SELECT shobj_description(oid, $2) AS mark FROM pg_database WHERE datname = $1', [scratch.database, 'pg_database']);
    if (existing.rowCount !== 0 && existing.rows[0]?.mark !== MARK) {
      throw new DrillError(`a database named ${scratch.database} exists and is not a drill's scratch database: it is left alone, and no drill runs`);
    }
    // Our own connections to it are closing (their Terminate may still be in flight): let them
    // finish rather than have the server kill them under a client that is no longer listening.
    for (let wait = 0; wait < 50; wait += 1) {
      const sessions = await admin.query('SELECT 1 FROM pg_stat_activity WHERE datname = $1', [scratch.database]);
      if (sessions.rowCount === 0) break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    await admin.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(scratch.database)} WITH (FORCE)`);
    for (const role of [scratch.runtime, scratch.owner]) await admin.query(`DROP ROLE IF EXISTS ${pg.escapeIdentifier(role)}`);
  };
  admin.on('error', () => undefined);
  let locked = false;
  try {
    await admin.connect();
    // One drill at a time on this server (two would drop each other's scratch database).
    locked = (await admin.query<{ locked: boolean }>('SELECT pg_try_advisory_lock(hashtextextended($1, 0)) AS locked', [`ringvakt:drill:${scratch.database}`])).rows[0]?.locked === true;
    if (!locked) throw new DrillError('another restore drill is running on this server');
    // What a drill that died half-way left behind goes first.
    await dropScratch();
    await admin.query(`CREATE DATABASE ${pg.escapeIdentifier(scratch.database)}`);
    await admin.query(`COMMENT ON DATABASE ${pg.escapeIdentifier(scratch.database)} IS ${pg.escapeLiteral(MARK)}`);
    const scratchUrl = new URL(options.ownerUrl);
    scratchUrl.pathname = `/${scratch.database}`;
    const database = await openDatabase(
      { ...options.config, databaseUrl: scratchUrl.toString(), databaseAppUrl: undefined, dataDir: secrets, poolMax: 4 },
      options.logger,
      { applyMigrations: true, ownerAccess: true },
    );
    try {
      const restored = await restoreBackup(database.migratorUrl(), options.file, options.root, options.erasures);
      report.backupId = restored.backupId;
      report.recoveryPoint = restored.createdAt;
      report.tables = restored.manifest.tables.length;
      report.rows = restored.rows;
      report.erasuresReplayed = restored.replay.reErased;
      const keys = await publicKeys(database.systemDb);
      const parallel = { connectionString: String(database.pool.options.connectionString) };
      for (const tenant of await database.systemDb.listTenants()) {
        const verdict = await database.systemDb.inTenant(tenant.id).snapshot((trx) => verifyTenantLedger(trx, keys, [], { parallel }));
        report.ledgers.push(verdict.ok ? { tenant: tenant.slug, ok: true, sealed: verdict.sealed } : { tenant: tenant.slug, ok: false, sealed: 0, problem: verdict.problem });
      }
      report.recoverySeconds = (Date.now() - startedAt.getTime()) / 1000;
      const failed = report.ledgers.filter((ledger) => !ledger.ok);
      report.ok = failed.length === 0;
      if (!report.ok) report.problem = `the audit ledger of ${failed.map((ledger) => ledger.tenant).join(', ')} does not verify`;
    } finally {
      await database.close();
    }
  } catch (error) {
    report.ok = false;
    report.problem = failureText(error);
  } finally {
    if (locked) await dropScratch().catch((error: unknown) => options.logger.warn({ err: { name: (error as Error).name } }, 'the drill could not drop its scratch database'));
    await admin.end().catch(() => undefined);
    rmSync(secrets, { recursive: true, force: true });
  }
  if (!report.ok) backupFailures.inc({ kind: 'drill' });
  await options.systemDb.recordBackupRun({
    kind: 'drill',
    trigger: options.trigger,
    outcome: report.ok ? 'success' : 'failed',
    startedAt,
    finishedAt: new Date(),
    file: options.file,
    rows: report.rows,
    ...(report.backupId ? { backupId: report.backupId } : {}),
    ...(report.recoveryPoint ? { backupTakenAt: report.recoveryPoint } : {}),
    ...(report.ok ? { recoverySeconds: report.recoverySeconds } : {}),
    ...(report.problem ? { error: report.problem } : {}),
    node: options.node,
  });
  return report;
}
