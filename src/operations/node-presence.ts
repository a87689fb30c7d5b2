import pg from 'pg';
import { sql, type RawBuilder } from '../db/kysely.ts';
import type { Logger } from '../logger.ts';

/**
 * A node's presence: while a server process lives, one connection of its own holds a session
 * advisory lock named after its node id. PostgreSQL releases that lock the moment the session
 * ends — the process died (SIGKILL, a crash, the machine gone: the kernel closes the socket, or
 * TCP keepalives notice within seconds). So "is that node's lock free?" is a fast and reliable
 * "is it dead?", and singleton work it held (a campaign's dialer) is taken over within seconds
 * instead of waiting out a long grace period. A node that is alive but slow keeps its lock, and
 * its work waits for the old, long grace: never two owners at once because one was slow.
 */

const presenceKey = (nodeId: string) => `ringvakt:node:${nodeId}`;

/** SQL that is true when no live session holds `owner`'s presence lock (taken for this transaction only). */
export function ownerIsGone(owner: RawBuilder<unknown> | string): RawBuilder<boolean> {
  return sql<boolean>`pg_try_advisory_xact_lock(hashtextextended(${sql.lit('ringvakt:node:')} || ${owner}, 0))`;
}

export type NodePresence = {
  held(): boolean;
  /**
   * Whether this node may judge others by their presence locks: its own has been held, without a
   * break, for SETTLE_MS. After a database restart every lock is gone at once; a live node takes
   * its own back within a second or two, so until then a free lock proves nothing.
   */
  settled(): boolean;
  /**
   * Resolves once the lock is first held (a short-lived process, such as the CLI, waits for it
   * before it starts work); rejects after `timeoutMs` without it.
   */
  ready(timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
};

/** How long this node's own lock must have been held before others' free locks count as "gone". */
export const SETTLE_MS = 5_000;

/**
 * Holds this node's presence lock on a connection of its own, and takes it again after the
 * connection is lost (a database restart), retrying with backoff until stopped.
 */
export function startNodePresence(options: { connectionString: string; nodeId: string; logger: Logger }): NodePresence {
  let stopped = false;
  let client: pg.Client | undefined;
  let held = false;
  let heldSince = 0;
  let retry: NodeJS.Timeout | undefined;
  let connecting: pg.Client | undefined;
  // Retried quickly: a live node must hold its lock again well within SETTLE_MS of the database's return.
  let delayMs = 100;
  let becameReady: () => void = () => undefined;
  const ready = new Promise<void>((resolve) => (becameReady = resolve));

  const connect = async () => {
    if (stopped) return;
    const next = new pg.Client({ connectionString: options.connectionString, application_name: 'ringvakt-presence', keepAlive: true, keepAliveInitialDelayMillis: 2_000 });
    next.on('error', (error) => {
      held = false;
      options.logger.warn({ err: { name: error.name } }, 'node presence connection lost; taking it again');
      schedule();
    });
    next.on('end', () => {
      held = false;
      if (!stopped) schedule();
    });
    connecting = next;
    try {
      await next.connect();
      // The server notices a vanished client within seconds too (not the system's two hours).
      await next.query("SET tcp_keepalives_idle = 5; SET tcp_keepalives_interval = 1; SET tcp_keepalives_count = 3");
      await next.query('SELECT pg_advisory_lock(hashtextextended($1, 0))', [presenceKey(options.nodeId)]);
      if (stopped) {
        await next.end();
        return;
      }
      client = next;
      held = true;
      heldSince = Date.now();
      delayMs = 100;
      becameReady();
    } catch (error) {
      if (!stopped) options.logger.warn({ err: { name: (error as Error).name } }, 'node presence lock not taken; retrying');
      await next.end().catch(() => undefined);
      schedule();
    } finally {
      if (connecting === next) connecting = undefined;
    }
  };
  const schedule = () => {
    if (stopped || retry) return;
    retry = setTimeout(() => {
      retry = undefined;
      void connect();
    }, delayMs);
    delayMs = Math.min(delayMs * 2, 1_000);
  };
  void connect();
  return {
    held: () => held,
    settled: () => held && Date.now() - heldSince >= SETTLE_MS,
    ready: (timeoutMs = 10_000) =>
      Promise.race([
        ready,
        new Promise<void>((_, reject) => setTimeout(() => reject(new Error(`the presence lock was not taken within ${timeoutMs} ms`)), timeoutMs).unref()),
      ]),
    async stop() {
      stopped = true;
      if (retry) clearTimeout(retry);
      held = false;
      // Also a connection still waiting for the lock (another process of this node id holds it).
      await Promise.all([client?.end().catch(() => undefined), connecting?.end().catch(() => undefined)]);
    },
  };
}
