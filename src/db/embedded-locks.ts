import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from '../logger.ts';

/**
 * Locks around the embedded server: Ringvakt's own one-process-per-data-directory lock, and
 * recovery of PostgreSQL's `postmaster.pid` after a crash.
 */

/** Every embedded-server failure the operator can act on; the message says what to do. */
export class EmbeddedPostgresError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'EmbeddedPostgresError';
  }
}

export function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function commandLineOf(pid: number): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
  } catch {
    return undefined;
  }
}

async function waitForExit(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!isProcessAlive(pid)) return true;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return !isProcessAlive(pid);
}

/**
 * A crash can leave `postmaster.pid` behind. If the pid in it is a postgres serving this very
 * cluster, it is an orphan of a Ringvakt that died: shut it down cleanly and start our own. If
 * the pid now belongs to some other process, the lock is stale: remove it.
 */
export async function recoverStaleLock(clusterDir: string, logger: Logger): Promise<void> {
  const lockFile = path.join(clusterDir, 'postmaster.pid');
  if (!existsSync(lockFile)) return;
  const pid = Number(readFileSync(lockFile, 'utf8').split('\n')[0]);
  if (!Number.isInteger(pid) || pid <= 0 || !isProcessAlive(pid)) {
    logger.warn('removing a stale PostgreSQL lock file left by a crash');
    rmSync(lockFile, { force: true });
    return;
  }
  const commandLine = commandLineOf(pid);
  if (commandLine !== undefined && commandLine.includes('postgres') && commandLine.includes(clusterDir)) {
    logger.warn({ pid }, 'an embedded PostgreSQL from an earlier run is still running; shutting it down');
    process.kill(pid, 'SIGINT');
    if (!(await waitForExit(pid, 30_000))) {
      throw new EmbeddedPostgresError(
        `The embedded PostgreSQL from an earlier run (pid ${pid}) did not stop within 30 s; stop it and start again.`,
      );
    }
    return;
  }
  if (commandLine !== undefined) {
    logger.warn({ pid }, 'removing a stale PostgreSQL lock file whose pid now belongs to another program');
    rmSync(lockFile, { force: true });
    return;
  }
  throw new EmbeddedPostgresError(
    `${lockFile} names a running process (pid ${pid}) that could not be inspected; stop it or remove the file.`,
  );
}

/** The pid of a live Ringvakt process that runs this data directory's embedded server, if any. */
export function liveInstance(dataDir: string): number | undefined {
  const lockFile = path.join(dataDir, 'ringvakt.pid');
  if (!existsSync(lockFile)) return undefined;
  const pid = Number(readFileSync(lockFile, 'utf8').trim());
  if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid || !isProcessAlive(pid)) return undefined;
  const commandLine = commandLineOf(pid) ?? '';
  return commandLine === '' || /node|ringvakt|tsx/.test(commandLine) ? pid : undefined;
}

/** Ringvakt's own lock: one process per embedded data directory starts and stops the server. */
export function takeInstanceLock(dataDir: string): () => void {
  const pid = liveInstance(dataDir);
  if (pid !== undefined) {
    throw new EmbeddedPostgresError(
      `Another Ringvakt process (pid ${pid}) is running the embedded database in ${dataDir}. ` +
        'Stop it first, or give this one its own RINGVAKT_DATA_DIR.',
    );
  }
  const lockFile = path.join(dataDir, 'ringvakt.pid');
  // Exclusive create: of two processes starting at the same moment, exactly one gets the lock.
  // A lock whose process is gone (liveInstance said so above) is removed first.
  rmSync(lockFile, { force: true });
  try {
    writeFileSync(lockFile, `${process.pid}\n`, { mode: 0o600, flag: 'wx' });
  } catch {
    throw new EmbeddedPostgresError(`Another Ringvakt process is starting on the embedded database in ${dataDir} right now.`);
  }
  return () => rmSync(lockFile, { force: true });
}
