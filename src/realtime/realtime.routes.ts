import type { App } from '../server/types.ts';
import { principalOf } from '../server/access-control.ts';
import type { RealtimeHub } from './realtime.ts';

/** Messages a slow client may leave unread before it is cut off (the server never buffers without bound). */
const MAX_BUFFERED_BYTES = 1 << 20;

/**
 * GET /api/v1/realtime, upgraded to a WebSocket: authenticated like every other request (session
 * cookie or API token, checked before the upgrade), refused from another site's page (a browser
 * names its origin on the upgrade; cross-site WebSocket hijacking needs the check, since the
 * upgrade is a GET), and re-checked while open, so a revoked session or a disabled user is cut off.
 */
export async function realtimeRoutes(app: App, options: { hub: RealtimeHub; publicOrigin: string }): Promise<void> {
  app.get(
    '/api/v1/realtime',
    {
      websocket: true,
      config: { access: 'authenticated' },
      schema: { summary: 'Realtime events (WebSocket; each message a JSON array of events): agent states, calls, pacing — the whole floor with agents:monitor, an agent its own', tags: ['realtime'] },
    },
    (socket, request) => {
      const principal = principalOf(request);
      const origin = request.headers.origin;
      if (origin !== undefined && origin !== options.publicOrigin) {
        socket.close(4403, 'origin not allowed');
        return;
      }
      if (!principal.permissions.has('agents:monitor') && !principal.permissions.has('calls:handle')) {
        socket.close(4403, 'no realtime permission');
        return;
      }
      const stillValid = request.credentialStillValid ?? (async () => false);
      const remove = options.hub.add({
        tenantId: principal.tenantId,
        userId: principal.userId,
        permissions: principal.permissions,
        send(message) {
          if (socket.bufferedAmount > MAX_BUFFERED_BYTES) {
            socket.close(4008, 'too slow');
            return;
          }
          // Text frames: the bytes are JSON, encoded once per batch by the hub.
          socket.send(message, { binary: false });
        },
        close: (code, reason) => socket.close(code, reason),
        stillValid,
      });
      socket.on('close', remove);
      // Clients only listen; anything they send is ignored (and bounded by maxPayload).
      socket.send(JSON.stringify([{ topic: 'hello', userId: principal.userId }]));
    },
  );
}
