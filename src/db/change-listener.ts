import { randomBytes } from 'node:crypto';
import pg from 'pg';
import type { Logger } from '../logger.ts';

/**
 * One dedicated connection that LISTENs for PostgreSQL notifications, so that every Ringvakt
 * process learns of a change committed by any of them. Subscribers are told whenever the
 * connection may have missed something, so caches that rely on notifications stop trusting
 * themselves:
 * - when the connection ends or fails;
 * - when a heartbeat — a notification this process sends to itself every few seconds — does not
 *   come back in time (a connection silently cut by a firewall, NAT or a transaction-mode pooler
 *   looks alive but delivers nothing);
 * - after every (re)connect, for what was committed while it was down.
 * It reconnects with a backoff of 0.5 s doubling to 30 s.
 */
export type ChangeListener = {
  isUp(): boolean;
  /** Calls `onMessage` for each notification on `channel`, `onDown` whenever one may have been missed. */
  subscribe(channel: string, onMessage: (payload: string) => void, onDown: () => void): void;
  close(): Promise<void>;
};

export type ChangeListenerOptions = { heartbeatMs?: number };

export async function startChangeListener(
  connectionString: string,
  logger: Logger,
  options: ChangeListenerOptions = {},
): Promise<ChangeListener> {
  const heartbeatMs = options.heartbeatMs ?? 5_000;
  const heartbeatChannel = `ringvakt_heartbeat_${randomBytes(6).toString('hex')}`;
  const subscribers = new Map<string, { onMessage: (payload: string) => void; onDown: () => void }[]>();
  let client: pg.Client | undefined;
  let up = false;
  let closing = false;
  let connecting = false;
  let retryDelay = 500;
  let retryTimer: NodeJS.Timeout | undefined;
  let heartbeatTimer: NodeJS.Timeout | undefined;
  let heartbeatSent = 0;
  let heartbeatSeen = 0;

  const tellDown = () => {
    for (const list of subscribers.values()) for (const subscriber of list) subscriber.onDown();
  };

  const drop = (reason: string, which: pg.Client) => {
    if (which !== client) return; // an old connection ending is not news
    const wasUp = up;
    up = false;
    client = undefined;
    if (heartbeatTimer) clearInterval(heartbeatTimer);
    if (wasUp) {
      logger.warn({ reason }, 'change listener lost; caches that rely on it are off until it is back');
      tellDown();
    }
    void which.end().catch(() => undefined);
    scheduleReconnect();
  };

  const beat = (which: pg.Client) => {
    if (heartbeatSeen < heartbeatSent) {
      drop('heartbeat not returned', which);
      return;
    }
    heartbeatSent += 1;
    which.query('SELECT pg_notify($1, $2)', [heartbeatChannel, String(heartbeatSent)]).catch(() => drop('heartbeat failed', which));
  };

  const connect = async (): Promise<void> => {
    if (connecting || client || closing) return;
    connecting = true;
    const next = new pg.Client({
      connectionString,
      application_name: 'ringvakt-listen',
      keepAlive: true,
      keepAliveInitialDelayMillis: 10_000,
    });
    next.on('error', (error) => {
      logger.warn({ err: error }, 'change listener connection failed');
      drop('connection error', next);
    });
    next.on('end', () => drop('connection ended', next));
    next.on('notification', (message) => {
      if (message.channel === heartbeatChannel) {
        heartbeatSeen = Math.max(heartbeatSeen, Number(message.payload));
        return;
      }
      for (const subscriber of subscribers.get(message.channel) ?? []) subscriber.onMessage(message.payload ?? '');
    });
    try {
      await next.connect();
      for (const channel of [heartbeatChannel, ...subscribers.keys()]) await next.query(`LISTEN ${pg.escapeIdentifier(channel)}`);
      if (closing) {
        await next.end();
        return;
      }
      client = next;
      // Anything cached before this moment may have missed a notification: subscribers drop it.
      tellDown();
      heartbeatSent = heartbeatSeen = 0;
      heartbeatTimer = setInterval(() => beat(next), heartbeatMs);
      heartbeatTimer.unref();
      up = true;
      retryDelay = 500;
    } catch (error) {
      await next.end().catch(() => undefined);
      throw error;
    } finally {
      connecting = false;
    }
  };

  const scheduleReconnect = () => {
    if (retryTimer || closing) return;
    retryTimer = setTimeout(() => {
      retryTimer = undefined;
      connect().catch((error: unknown) => {
        logger.warn({ err: error }, 'change listener reconnect failed');
        retryDelay = Math.min(retryDelay * 2, 30_000);
        scheduleReconnect();
      });
    }, retryDelay);
    retryTimer.unref();
  };

  try {
    await connect();
  } catch (error) {
    logger.warn({ err: error }, 'change listener could not connect; retrying');
    scheduleReconnect();
  }

  return {
    isUp: () => up,
    subscribe(channel, onMessage, onDown) {
      const known = subscribers.has(channel);
      subscribers.set(channel, [...(subscribers.get(channel) ?? []), { onMessage, onDown }]);
      const listening = client;
      if (!known && listening) {
        // Until LISTEN is in place nothing relying on this listener may trust its cache.
        up = false;
        listening.query(`LISTEN ${pg.escapeIdentifier(channel)}`).then(
          () => {
            if (client === listening) up = true;
          },
          () => drop('LISTEN failed', listening),
        );
      }
    },
    async close() {
      closing = true;
      if (retryTimer) clearTimeout(retryTimer);
      if (heartbeatTimer) clearInterval(heartbeatTimer);
      const last = client;
      client = undefined;
      if (up) {
        up = false;
        tellDown();
      }
      await last?.end().catch(() => undefined);
    },
  };
}
