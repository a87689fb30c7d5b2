import { createSocket } from 'node:dgram';
import { hostname } from 'node:os';
import { connect, isIPv6 } from 'node:net';
import type { Logger } from '../logger.ts';
import { appendToWitness, isRetention, type WitnessEntry } from './witness.ts';

/**
 * Outside witnesses of the audit ledger. Each signed checkpoint is published, once committed, to
 * every configured witness: a file (shipped off the host by the operator), a syslog receiver
 * (RFC 5424, to a SIEM), or an HTTP webhook. A witness holding tree heads that the database no
 * longer agrees with is how a rewrite by someone with full database rights is caught
 * (`audit verify --witness`).
 *
 * Network witnesses are at-least-latest, not at-least-once: every tree head commits to all earlier
 * ones (consistency proofs connect any two), so a witness needs the newest head of each tenant,
 * not every head. While a witness is unreachable, its newest undelivered head per tenant waits,
 * a newer head replaces it, and delivery is retried with backoff (1 s doubling to 60 s). A head
 * still waiting when the process stops is superseded by the next one the sealer signs.
 */
export type CheckpointPublisher = {
  readonly name: string;
  /** A signed checkpoint, or a signed retention record (never superseded: each is delivered). */
  publish(entry: WitnessEntry): void;
  /** Resolves once a delivery attempt of everything published so far has finished. */
  flush(): Promise<void>;
  close(): Promise<void>;
};

export type WitnessSettings = {
  file: string | undefined;
  syslog: string | undefined;
  webhook: { url: string; token: string | undefined } | undefined;
};

/** Told of what a witness took (after the file write, or the receiver's answer): the compliance center's evidence that heads leave the database. */
export type DeliveryListener = (witness: string, entries: readonly WitnessEntry[]) => void;

export function createCheckpointPublishers(settings: WitnessSettings, logger: Logger, onDelivered?: DeliveryListener): CheckpointPublisher[] {
  const publishers: CheckpointPublisher[] = [];
  if (settings.file) publishers.push(fileWitness(settings.file, logger, onDelivered));
  if (settings.syslog) publishers.push(networkWitness('syslog', syslogSender(settings.syslog), logger, onDelivered));
  if (settings.webhook) publishers.push(networkWitness('webhook', webhookSender(settings.webhook.url, settings.webhook.token), logger, onDelivered));
  return publishers;
}

/** Delivers what is waiting (one attempt each) and closes every publisher: at shutdown or command end. */
export async function closePublishers(publishers: readonly CheckpointPublisher[]): Promise<void> {
  await Promise.all(publishers.map((publisher) => publisher.flush().then(() => publisher.close())));
}

/** Appends each checkpoint to a file, synchronously and in order: the witness keeps every head. */
export function fileWitness(file: string, logger: Logger, onDelivered?: DeliveryListener): CheckpointPublisher {
  return {
    name: 'file',
    publish(entry) {
      try {
        appendToWitness(file, entry);
        onDelivered?.('file', [entry]);
      } catch (error) {
        logger.error({ err: error, witness: 'file' }, 'could not append an audit checkpoint to the witness file');
      }
    },
    flush: async () => undefined,
    close: async () => undefined,
  };
}

type Sender = (entries: WitnessEntry[]) => Promise<void>;

/** What a syslog line or webhook body carries: the entry with its kind spelled out. */
const message = (entry: WitnessEntry) =>
  isRetention(entry) ? { ...entry, type: 'ringvakt.audit.retention' } : { type: 'ringvakt.audit.checkpoint', ...entry };

const FIRST_RETRY_MS = 1_000;
const LAST_RETRY_MS = 60_000;

/** Newest undelivered head per tenant, delivered in rounds, retried with backoff. */
export function networkWitness(name: string, send: Sender, logger: Logger, onDelivered?: DeliveryListener): CheckpointPublisher {
  // Newest checkpoint per tenant; every retention record under a key of its own.
  const waiting = new Map<string, WitnessEntry>();
  const slot = (entry: WitnessEntry) => (isRetention(entry) ? `retention:${entry.tenantId}:${entry.prunedBeforeLeaf}` : entry.tenantId);
  let round: Promise<void> | undefined;
  let retryTimer: NodeJS.Timeout | undefined;
  let retryMs = FIRST_RETRY_MS;
  let backingOff = false;
  let closed = false;

  const deliver = (): Promise<void> => {
    round ??= (async () => {
      try {
        while (waiting.size > 0 && !closed) {
          const batch = [...waiting.values()];
          await send(batch);
          onDelivered?.(name, batch);
          // Remove what was delivered, unless a newer head arrived meanwhile.
          for (const sent of batch) if (waiting.get(slot(sent)) === sent) waiting.delete(slot(sent));
          retryMs = FIRST_RETRY_MS;
        }
      } catch (error) {
        logger.warn({ err: error, witness: name, retryInMs: retryMs }, 'could not deliver audit checkpoints to a witness; will retry');
        if (!closed) {
          backingOff = true;
          clearTimeout(retryTimer);
          retryTimer = setTimeout(() => {
            backingOff = false;
            void deliver();
          }, retryMs);
          retryTimer.unref();
          retryMs = Math.min(retryMs * 2, LAST_RETRY_MS);
        }
      } finally {
        round = undefined;
      }
    })();
    return round;
  };

  return {
    name,
    publish(entry) {
      const known = waiting.get(slot(entry));
      if (isRetention(entry) || !known || isRetention(known) || known.treeSize <= entry.treeSize) waiting.set(slot(entry), entry);
      // While backing off, the waiting head goes out with the scheduled retry.
      if (!backingOff) void deliver();
    },
    async flush() {
      await round;
      if (waiting.size > 0) await deliver();
    },
    async close() {
      closed = true;
      clearTimeout(retryTimer);
      await round;
    },
  };
}

const SEND_TIMEOUT_MS = 5_000;

/**
 * RFC 5424 messages, facility 13 (log audit), severity 6 (informational); over TCP with
 * octet-counting framing (RFC 6587), over UDP one datagram each.
 */
export function syslogSender(target: string): Sender {
  const send = syslogTransport(target);
  return (entries) => send(entries.map((entry) => syslogLine(110, isRetention(entry) ? 'audit-retention' : 'audit-checkpoint', message(entry))));
}

const origin = () => hostname().replace(/[^!-~]/g, '').slice(0, 255) || '-';

/** One RFC 5424 message: `pri` is facility × 8 + severity; the message is JSON. */
export function syslogLine(pri: number, msgId: string, body: unknown): Buffer {
  return Buffer.from(`<${pri}>1 ${new Date().toISOString()} ${origin()} ringvakt ${process.pid} ${msgId} - ${JSON.stringify(body)}`);
}

/** Sends syslog lines to udp://host:port (a datagram each) or tcp://host:port (octet-counted frames, RFC 6587), bounded by 5 s. */
export function syslogTransport(target: string): (lines: Buffer[]) => Promise<void> {
  const url = new URL(target);
  const host = url.hostname.replace(/^\[|\]$/g, '');
  const port = Number(url.port);
  if (url.protocol === 'udp:') {
    return async (lines) => {
      const socket = createSocket(isIPv6(host) ? 'udp6' : 'udp4');
      try {
        for (const line of lines) {
          await new Promise<void>((resolve, reject) => socket.send(line, port, host, (error) => (error ? reject(error) : resolve())));
        }
      } finally {
        socket.close();
      }
    };
  }
  return (lines) =>
    new Promise<void>((resolve, reject) => {
      const socket = connect({ host, port });
      socket.setTimeout(SEND_TIMEOUT_MS, () => socket.destroy(new Error('syslog receiver timed out')));
      socket.once('error', reject);
      socket.once('connect', () => {
        const frames = lines.map((line) => Buffer.concat([Buffer.from(`${line.length} `), line]));
        socket.end(Buffer.concat(frames), () => resolve());
      });
    });
}

/**
 * One JSON POST per entry. Redirects are refused (the bearer token must not follow them to
 * another host); any answer but 2xx is a failure to be retried. The URL and the token are secrets
 * and never logged.
 */
export function webhookSender(url: string, token: string | undefined): Sender {
  return async (entries) => {
    for (const entry of entries) {
      let response: Response;
      try {
        response = await fetch(url, {
          method: 'POST',
          redirect: 'error',
          signal: AbortSignal.timeout(SEND_TIMEOUT_MS),
          headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
          body: JSON.stringify(message(entry)),
        });
      } catch (error) {
        // Never pass on the fetch error itself: a message or cause could echo the secret URL.
        const code = (error as { cause?: { code?: unknown } }).cause?.code;
        throw new Error(`the checkpoint webhook could not be reached${typeof code === 'string' ? ` (${code})` : ''}`);
      }
      await response.body?.cancel();
      if (!response.ok) throw new Error(`the checkpoint webhook answered HTTP ${response.status}`);
    }
  };
}
