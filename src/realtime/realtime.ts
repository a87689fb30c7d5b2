import { CompiledQuery } from '../db/kysely.ts';
import type { ChangeListener } from '../db/change-listener.ts';
import { deferWrite, type TenantTransaction } from '../db/tenant-db.ts';
import type { Logger } from '../logger.ts';
import type { Permission } from '../modules/access/permissions.ts';

/**
 * Realtime events: what changed on the floor (an agent's state, a call, a campaign's pacing),
 * published with NOTIFY inside the transaction that makes the change — so it is delivered only if
 * the change commits, and to every server process, each of which LISTENs on one connection
 * (change-listener.ts) and fans the event out to its own WebSocket clients of that tenant, as far
 * as each client's permissions allow. Events carry ids, states and figures; never personal data.
 */
export const REALTIME_CHANNEL = 'ringvakt_realtime';

export type RealtimeEvent =
  | { topic: 'agent.state'; agentId: string; state: string; reason: string | null; campaignId: string | null; at: string }
  | { topic: 'call'; attemptId: string; campaignId: string; agentId: string | null; state: string; outcome: string | null; at: string }
  | { topic: 'inbound.call'; callId: string; queueId: string; agentId: string | null; state: 'queued' | 'connected' | 'ended'; outcome: string | null; at: string }
  | { topic: 'campaign.pacing'; campaignId: string; lines: number; explanation: string; at: string }
  | { topic: 'campaign.state'; campaignId: string; state: string; at: string }
  | { topic: 'security.alert'; alertId: string; ruleId: string; severity: string; at: string }
  | { topic: 'security.incident'; incidentId: string; severity: string; at: string };

/** NOTIFY's payload limit is 8000 bytes; events are far smaller, and an explanation is clipped. */
const MAX_PAYLOAD = 7_900;

/** Publishes `event` to the tenant's realtime clients once `trx` commits. */
export async function publish(trx: TenantTransaction, event: RealtimeEvent): Promise<void> {
  let payload = JSON.stringify({ tenantId: trx.tenantId, event });
  if (Buffer.byteLength(payload) > MAX_PAYLOAD && event.topic === 'campaign.pacing') {
    payload = JSON.stringify({ tenantId: trx.tenantId, event: { ...event, explanation: event.explanation.slice(0, 1000) } });
  }
  await deferWrite(trx, CompiledQuery.raw('SELECT pg_notify($1, $2)', [REALTIME_CHANNEL, payload]));
}

export type RealtimeClient = {
  tenantId: string;
  userId: string;
  permissions: ReadonlySet<Permission>;
  /** One message: a JSON array of events, as UTF-8 text (encoded once for every client that gets it). */
  send(message: Buffer): void;
  close(code: number, reason: string): void;
  /** Whether the client's credential still holds. */
  stillValid(): Promise<boolean>;
};

/** What a client may see: supervisors the whole floor, agents their own state and calls, security managers the alerts. */
export function mayReceive(client: RealtimeClient, event: RealtimeEvent): boolean {
  // Security alerts: to those who handle security only (a supervisor does not see them).
  if (event.topic === 'security.alert' || event.topic === 'security.incident') return client.permissions.has('security:manage');
  if (client.permissions.has('agents:monitor')) return true;
  if (!client.permissions.has('calls:handle')) return false;
  if (event.topic === 'agent.state') return event.agentId === client.userId;
  if (event.topic === 'call' || event.topic === 'inbound.call') return event.agentId === client.userId;
  return false;
}

export type RealtimeHub = {
  add(client: RealtimeClient): () => void;
  /** Re-checks every client's credential (all, or one tenant's); closes those that lapsed. */
  recheck(tenantId?: string): Promise<void>;
  clients(): number;
  stop(): void;
};

/**
 * Events are sent in batches: every message is a JSON array of the events of the last `batchMs`
 * (40 ms) — under load a client gets one frame for several events, so the fan-out to hundreds of
 * clients costs frames per batch, not per event; when quiet, an event waits at most `batchMs`.
 */
export function createRealtimeHub(options: { changes: ChangeListener; logger: Logger; recheckMs?: number; batchMs?: number }): RealtimeHub {
  const byTenant = new Map<string, Set<RealtimeClient>>();
  const { logger } = options;
  const batchMs = options.batchMs ?? 40;
  const pending = new Map<string, RealtimeEvent[]>();
  let flushTimer: NodeJS.Timeout | undefined;

  const flush = () => {
    flushTimer = undefined;
    for (const [tenantId, events] of pending) {
      const clients = byTenant.get(tenantId);
      if (!clients) continue;
      let whole: Buffer | undefined;
      for (const client of clients) {
        if (client.permissions.has('agents:monitor')) {
          whole ??= Buffer.from(JSON.stringify(events));
          client.send(whole);
          continue;
        }
        const own = events.filter((event) => mayReceive(client, event));
        if (own.length > 0) client.send(Buffer.from(JSON.stringify(own)));
      }
    }
    pending.clear();
  };

  const deliver = (payload: string) => {
    let parsed: { tenantId: string; event: RealtimeEvent };
    try {
      parsed = JSON.parse(payload) as { tenantId: string; event: RealtimeEvent };
    } catch {
      logger.warn('realtime: a notification that is not JSON was ignored');
      return;
    }
    if (!byTenant.has(parsed.tenantId)) return;
    const events = pending.get(parsed.tenantId) ?? [];
    events.push(parsed.event);
    pending.set(parsed.tenantId, events);
    flushTimer ??= setTimeout(flush, batchMs);
  };
  // The listener lost its connection: events may have been missed; clients re-read what they show.
  const resync = () => {
    const message = Buffer.from(JSON.stringify([{ topic: 'resync' }]));
    for (const clients of byTenant.values()) for (const client of clients) client.send(message);
  };
  options.changes.subscribe(REALTIME_CHANNEL, deliver, resync);

  const recheck = async (tenantId?: string) => {
    const groups = tenantId ? [byTenant.get(tenantId) ?? new Set<RealtimeClient>()] : [...byTenant.values()];
    for (const clients of groups) {
      for (const client of [...clients]) {
        const valid = await client.stillValid().catch(() => false);
        if (!valid) client.close(4401, 'credential ended');
      }
    }
  };
  const timer = setInterval(() => void recheck(), options.recheckMs ?? 15_000);
  timer.unref();

  return {
    add(client) {
      let clients = byTenant.get(client.tenantId);
      if (!clients) {
        clients = new Set();
        byTenant.set(client.tenantId, clients);
      }
      clients.add(client);
      return () => {
        clients.delete(client);
        if (clients.size === 0) byTenant.delete(client.tenantId);
      };
    },
    recheck,
    clients: () => [...byTenant.values()].reduce((sum, clients) => sum + clients.size, 0),
    stop() {
      clearInterval(timer);
      if (flushTimer) clearTimeout(flushTimer);
      for (const clients of byTenant.values()) for (const client of clients) client.close(1001, 'server stopping');
      byTenant.clear();
    },
  };
}
