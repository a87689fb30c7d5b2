/**
 * The database could not be reached or dropped the connection (it is restarting, failing over, or
 * gone): PostgreSQL's connection-exception and operator-intervention classes, and the socket
 * errors and messages of the pg driver. The request may be repeated once it is back.
 */
export function isDatabaseUnavailable(error: unknown): boolean {
  const { code, message, syscall } = error as { code?: unknown; message?: unknown; syscall?: unknown };
  // Not 08P01 (protocol violation): a malformed message fails the same way every time.
  if (typeof code === 'string' && ((/^08/.test(code) && code !== '08P01') || /^57P0[1-3]$/.test(code))) return true;
  // Every address of the host refused (Node tries each of them): the errors of each attempt.
  if (error instanceof AggregateError) return error.errors.length > 0 && error.errors.every(isDatabaseUnavailable);
  // Socket errors of a connection (to a TCP port, or to the embedded server's socket file: ENOENT
  // while it is down) — not a file a request failed to open — and a name server that did not
  // answer (a failover that moves a host name).
  if (typeof code === 'string' && ['ECONNREFUSED', 'ECONNRESET', 'ENOENT', 'EPIPE', 'ETIMEDOUT'].includes(code) && (syscall === 'connect' || (code !== 'ENOENT' && (syscall === 'read' || syscall === 'write')))) return true;
  if (code === 'EAI_AGAIN' && syscall === 'getaddrinfo') return true;
  return typeof message === 'string' && /^(Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error)/.test(message);
}
