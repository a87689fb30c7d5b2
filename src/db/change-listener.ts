import pg from 'pg';
import type { Logger } from '../logger.ts';

/**
 * One dedicated connection that LISTENs for PostgreSQL notifications, so that every Ringvakt
 * process learns of a change committed by any of them. While the connection is down, `isUp()` is
 * false and subscribers are told, so caches that rely on notifications stop trusting themselves.
 * It reconnects with a backoff of 0.5 s doubling to 30 s.
 */
export type ChangeListener = {
  isUp(): boolean;
  /** Calls `onMessage` for each notification on `channel`, `onDown` whenever the connection is lost. */
  subscribe(channel: string, onMessage: (payload: string) => void, onDown: () => void): void;
  close(): Promise<void>;
};

export async function startChangeListener(connectionString: string, logger: Logger): Promise<ChangeListener> {
  const subscribers = new Map<string, { onMessage: (payload: string) => void; onDown: () => void }[]>();
  let client: pg.Client | undefined;
  let up = false;
  let closing = false;
  let retryDelay = 500;
  let retryTimer: NodeJS.Timeout | undefined;

  const markDown = () => {
    if (!up) return;
    up = false;
    for (const list of subscribers.values()) for (const subscriber of list) subscriber.onDown();
  };

  const connect = async (): Promise<void> => {
    const next = new pg.Client({ connectionString, application_name: 'ringvakt-listen' });
    next.on('error', (error) => logger.warn({ err: error }, 'change listener connection failed'));
    next.on('end', () => {
      markDown();
      if (!closing) scheduleReconnect();
    });
    next.on('notification', (message) => {
      const list = subscribers.get(message.channel) ?? [];
      for (const subscriber of list) subscriber.onMessage(message.payload ?? '');
    });
    await next.connect();
    for (const channel of subscribers.keys()) await next.query(`LISTEN ${pg.escapeIdentifier(channel)}`);
    client = next;
    // Anything cached before this moment may have missed a notification: subscribers drop it.
    for (const list of subscribers.values()) for (const subscriber of list) subscriber.onDown();
    up = true;
    retryDelay = 500;
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
      if (!known && client && up) {
        // Until LISTEN is in place this channel's subscribers must not trust what they cache.
        const listening = client;
        up = false;
        listening.query(`LISTEN ${pg.escapeIdentifier(channel)}`).then(
          () => {
            up = true;
          },
          () => void listening.end(),
        );
      }
    },
    async close() {
      closing = true;
      if (retryTimer) clearTimeout(retryTimer);
      markDown();
      await client?.end().catch(() => undefined);
    },
  };
}
