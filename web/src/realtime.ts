/**
 * The realtime feed (GET /api/v1/realtime as a WebSocket): events in JSON arrays. A dropped
 * connection is retried with backoff; after every (re)connection, and whenever the server says
 * "resync", the listener is told to fetch the current state again, so nothing missed while away
 * stays missing.
 */
export type RealtimeEvent =
  | { topic: 'hello'; userId: string }
  | { topic: 'resync' }
  | { topic: 'agent.state'; agentId: string; state: string; reason: string | null; campaignId: string | null; at: string }
  | { topic: 'call'; attemptId: string; campaignId: string; agentId: string | null; state: string; outcome: string | null; at: string }
  | { topic: 'inbound.call'; callId: string; queueId: string; agentId: string | null; state: 'queued' | 'connected' | 'ended'; outcome: string | null; at: string }
  | { topic: 'campaign.pacing'; campaignId: string; lines: number; explanation: string; at: string }
  | { topic: 'campaign.state'; campaignId: string; state: string; at: string };

export type Connection = { close(): void };

export function connectRealtime(handlers: {
  onEvents(events: RealtimeEvent[]): void;
  onResync(): void;
  onStatus(status: 'connecting' | 'open' | 'closed'): void;
}): Connection {
  let socket: WebSocket | undefined;
  let closed = false;
  let attempt = 0;
  let timer: ReturnType<typeof setTimeout> | undefined;

  const open = () => {
    handlers.onStatus('connecting');
    const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/api/v1/realtime`;
    socket = new WebSocket(url);
    socket.onopen = () => {
      attempt = 0;
      handlers.onStatus('open');
      handlers.onResync();
    };
    socket.onmessage = (message) => {
      const events = JSON.parse(String(message.data)) as RealtimeEvent[];
      if (events.some((event) => event.topic === 'resync')) handlers.onResync();
      handlers.onEvents(events);
    };
    socket.onclose = (event) => {
      handlers.onStatus('closed');
      if (closed || event.code === 4403) return;
      attempt += 1;
      // 0.5 s, 1 s, 2 s, 4 s, then every 5 s (an agent must not sit unaware for long), with jitter
      // so a restarted server is not hit by every desk at once.
      const delay = Math.min(5_000, 500 * 2 ** Math.min(attempt - 1, 4)) * (0.75 + Math.random() * 0.5);
      timer = setTimeout(open, delay);
    };
  };
  open();
  return {
    close() {
      closed = true;
      if (timer) clearTimeout(timer);
      socket?.close(1000);
    },
  };
}
