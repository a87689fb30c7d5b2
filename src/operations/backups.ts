import { mkdirSync, readdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import type pg from 'pg';
import { runEvery } from '../background-task.ts';
import { BackupError, BackupStopped, writeBackup } from '../backup/logical-backup.ts';
import type { RootKeyProvider } from '../crypto/root-keys/root-key-provider.ts';
import type { SystemDb } from '../db/system-db.ts';
import type { Logger } from '../logger.ts';
import type { BackupFormat } from '../config.ts';
import { backupFailures } from './telemetry.ts';

/**
 * Backups as an operation: each one written (src/backup/logical-backup.ts), recorded in
 * `backup_runs` whatever its outcome (the age of the newest good one is a metric and an alert),
 * and, on a schedule, taken by one node at a time and pruned to the newest few.
 */

/**
 * What a failure is recorded as: our own backup and drill errors say what went wrong; anything
 * else only its kind (a driver's message may quote values).
 */
export function failureText(error: unknown): string {
  if (error instanceof BackupError || error instanceof DrillError) return error.message;
  const code = (error as { code?: unknown }).code;
  return `${error instanceof Error ? error.name : 'error'}${typeof code === 'string' ? ` (${code})` : ''}`;
}

/** A restore drill's own refusals (src/operations/drill.ts): their messages name the problem only. */
export class DrillError extends Error {}

export type BackupTaken = { backupId: string; file: string; bytes: number; rows: number; tables: number };

/**
 * Writes one encrypted backup to `file` (created, mode 0600; never overwritten) and records it.
 * A failed backup is recorded too, and leaves no partial file behind.
 */
export async function takeBackup(options: {
  systemDb: SystemDb;
  ownerUrl: string;
  root: RootKeyProvider;
  file: string;
  trigger: 'operator' | 'schedule';
  node: string;
  /** Stops the backup (the node shuts down): it ends at the next chunk, leaves no file, and is not recorded as a failure. */
  signal?: AbortSignal;
  format?: BackupFormat;
}): Promise<BackupTaken> {
  const startedAt = new Date();
  try {
    const written =
      options.format === 'pg_dump'
        ? await (await import('../backup/pg-dump-backup.ts')).writePgDumpBackup(options.ownerUrl, options.file, options.root, options.signal)
        : await writeBackup(options.ownerUrl, options.file, options.root, options.signal);
    const rows = written.manifest.tables.reduce((sum, table) => sum + table.rows, 0);
    await options.systemDb.recordBackupRun({
      kind: 'backup',
      trigger: options.trigger,
      outcome: 'success',
      startedAt,
      finishedAt: new Date(),
      backupId: written.backupId,
      file: options.file,
      bytes: written.bytes,
      rows,
      node: options.node,
    });
    return { backupId: written.backupId, file: options.file, bytes: written.bytes, rows, tables: written.manifest.tables.length };
  } catch (error) {
    // writeBackup removes what it wrote itself; an existing file is never touched.
    if (error instanceof BackupStopped) throw error;
    backupFailures.inc({ kind: 'backup' });
    await options.systemDb
      .recordBackupRun({ kind: 'backup', trigger: options.trigger, outcome: 'failed', startedAt, finishedAt: new Date(), file: options.file, error: failureText(error), node: options.node })
      .catch(() => undefined);
    throw error;
  }
}

const SCHEDULED = /^ringvakt-(\d{8}T\d{6}Z)\.rvbk$/;
/** What a scheduled backup cut short by a crash leaves (writeBackup writes under this name first). */
const SCHEDULED_PARTIAL = /^ringvakt-(\d{8}T\d{6}Z)\.rvbk\.partial$/;

/** The file name of a scheduled backup taken at `at`: sortable, and recognisable by pruning. */
export function scheduledBackupName(at: Date): string {
  return `ringvakt-${at.toISOString().replace(/[-:]/g, '').replace(/\.\d{3}Z$/, 'Z')}.rvbk`;
}

/** Removes all but the newest `keep` scheduled backups in `dir` (other files are left alone). Returns what it removed. */
export function pruneBackups(dir: string, keep: number): string[] {
  const scheduled = readdirSync(dir)
    .filter((name) => SCHEDULED.test(name))
    .sort()
    .reverse();
  const removed = scheduled.slice(keep);
  // Leftovers of scheduled backups a crash cut short: no backup is being written meanwhile (the
  // caller holds the schedule's lock).
  const partials = readdirSync(dir).filter((name) => SCHEDULED_PARTIAL.test(name));
  for (const name of [...removed, ...partials]) rmSync(path.join(dir, name), { force: true });
  return removed;
}

/** How long the schedule waits after a failed backup before it tries again (at most the interval). */
const FAILURE_BACKOFF_MS = 3_600_000;

/** The advisory lock that makes one node at a time the scheduled backup taker. */
const SCHEDULE_LOCK = 'ringvakt:backup-schedule';

/**
 * Takes a backup whenever the newest good one (by any node, or by an operator) is older than the
 * interval. Every node runs this (a tick every 5 s: one small query); a session advisory lock lets
 * one at a time take the backup, and if that node dies mid-way its session ends, the lock with
 * it, and another node takes over on its next tick. A node that stops cuts its backup short
 * (nothing is kept of it) rather than make the shutdown wait for a whole database.
 */
export function startBackupSchedule(options: {
  systemDb: SystemDb;
  pool: pg.Pool;
  ownerUrl: () => string;
  root: () => Promise<RootKeyProvider>;
  backups: { dir: string; intervalHours: number; keep: number; format?: BackupFormat };
  node: string;
  logger: Logger;
  tickMs?: number;
}): { stop(): Promise<void> } {
  const { backups, logger } = options;
  const intervalMs = backups.intervalHours * 3_600_000;
  const tick = async (_stopping: () => boolean, signal: AbortSignal) => {
    const last = await options.systemDb.lastBackup();
    if (last && Date.now() - last.finishedAt.getTime() < intervalMs) return;
    // After a failure, wait before the next attempt (a missing right or a full disk does not mend
    // in seconds; each attempt reads the whole database and leaves a record).
    const failed = await options.systemDb.lastFailedBackup();
    if (failed && (!last || failed > last.finishedAt) && Date.now() - failed.getTime() < Math.min(intervalMs, FAILURE_BACKOFF_MS)) return;
    const client = await options.pool.connect();
    // Checked out for the whole backup: a lost connection must not end the process.
    const onError = () => undefined;
    client.on('error', onError);
    let release: Error | undefined;
    try {
      const locked = await client.query<{ locked: boolean }>('SELECT pg_try_advisory_lock(hashtextextended($1, 0)) AS locked', [SCHEDULE_LOCK]);
      if (!locked.rows[0]?.locked) return;
      try {
        // Another node may have finished one while this one waited for the lock.
        const newest = await options.systemDb.lastBackup();
        if (newest && Date.now() - newest.finishedAt.getTime() < intervalMs) return;
        mkdirSync(backups.dir, { recursive: true, mode: 0o700 });
        const file = path.join(backups.dir, scheduledBackupName(new Date()));
        let taken: BackupTaken;
        try {
          taken = await takeBackup({ systemDb: options.systemDb, ownerUrl: options.ownerUrl(), root: await options.root(), file, trigger: 'schedule', node: options.node, signal, format: backups.format ?? 'ringvakt' });
        } catch (error) {
          // A shutdown does not wait for a backup of the whole database: another node (or this
          // one after its restart) takes the next on its schedule.
          if (!(error instanceof BackupStopped)) throw error;
          logger.info('scheduled backup stopped: the node is shutting down');
          return;
        }
        const removed = pruneBackups(backups.dir, backups.keep);
        logger.info({ backup: taken.backupId, bytes: taken.bytes, rows: taken.rows, pruned: removed.length }, 'scheduled backup written');
      } finally {
        await client.query('SELECT pg_advisory_unlock(hashtextextended($1, 0))', [SCHEDULE_LOCK]);
      }
    } catch (error) {
      // A connection that failed mid-way must not go back to the pool (it may still hold the lock).
      release = error instanceof Error ? error : new Error('backup schedule failed');
      throw error;
    } finally {
      client.off('error', onError);
      client.release(release);
    }
  };
  if (intervalMs === 0) return { stop: async () => undefined };
  return runEvery('backup_schedule', options.tickMs ?? 5_000, tick, (error) => logger.error({ err: { name: (error as Error).name, message: failureText(error) } }, 'scheduled backup failed'));
}
