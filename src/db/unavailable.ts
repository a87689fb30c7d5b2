/**
 * The database could not be reached or dropped the connection (it is restarting, failing over, or
 * gone): PostgreSQL's connection-exception and operator-intervention classes, and the socket
 * errors and messages of the pg driver. The request may be repeated once it is back.
 */
export function isDatabaseUnavailable(error: unknown): boolean {
  const { code, message, syscall } = error as { code?: unknown; message?: unknown; syscall?: unknown };
  if (typeof code === 'string' && (/^08/.test(code) || /^57P0[1-3]$/.test(code))) return true;
  // Socket errors of a connection (to a TCP port, or to the embedded server's socket file: ENOENT
  // while it is down) — not a file a request failed to open.
  if (typeof code === 'string' && ['ECONNREFUSED', 'ECONNRESET', 'ENOENT', 'EPIPE', 'ETIMEDOUT'].includes(code) && (syscall === 'connect' || (code !== 'ENOENT' && (syscall === 'read' || syscall === 'write')))) return true;
  return typeof message === 'string' && /^(Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error)/.test(message);
}
