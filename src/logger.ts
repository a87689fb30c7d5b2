import { pino, type Logger, type LoggerOptions } from 'pino';

export type { Logger };

/**
 * Paths pino blanks out wherever they appear. Personal data and secrets must never reach a log:
 * request bodies are never logged, requests are logged by route template rather than URL (a
 * search may carry a phone number), and these keys are censored even if a caller passes them.
 */
export const redactedPaths = [
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["x-api-key"]',
  'res.headers["set-cookie"]',
  '*.password',
  '*.newPassword',
  '*.token',
  '*.secret',
  '*.connectionString',
  '*.databaseUrl',
  '*.databaseAppUrl',
  '*.rootKey',
  '*.rootKeyPrevious',
  '*.vaultToken',
  '*.metricsToken',
  'password',
  'token',
  'secret',
];

/**
 * Logs an error without the parts that can carry row values. PostgreSQL's messages and DETAIL
 * lines quote the offending input ("Key (email)=(…) already exists", "invalid input syntax for
 * type uuid: …"), so for database errors only the SQLSTATE and the names of the constraint,
 * table and column are kept.
 */
export function safeError(error: unknown): Record<string, unknown> {
  if (!(error instanceof Error)) return { type: typeof error };
  const record = error as Error & Record<string, unknown>;
  const frames = (error.stack ?? '').split('\n').slice(1).join('\n');
  const fromDatabase = typeof record.severity === 'string' && typeof record.code === 'string';
  if (fromDatabase) {
    return {
      type: 'DatabaseError',
      code: record.code,
      constraint: record.constraint,
      table: record.table,
      column: record.column,
      routine: record.routine,
      stack: frames,
    };
  }
  return {
    type: error.name,
    message: error.message.slice(0, 500),
    ...(typeof record.code === 'string' ? { code: record.code } : {}),
    stack: frames,
  };
}

export function loggerOptions(level: string): LoggerOptions {
  return {
    level,
    redact: { paths: redactedPaths, censor: '[redacted]' },
    base: { service: 'ringvakt' },
    timestamp: pino.stdTimeFunctions.isoTime,
    serializers: {
      // The route template, never the concrete path: a client may put personal data into a URL
      // by mistake, and a template tells an operator everything an id would.
      req(request: { id?: string; method?: string; ip?: string; routeOptions?: { url?: string } }) {
        return { id: request.id, method: request.method, route: request.routeOptions?.url ?? '(unmatched)', ip: request.ip };
      },
      res(reply: { statusCode?: number }) {
        return { statusCode: reply.statusCode };
      },
      err: safeError,
    },
  };
}

export function createLogger(level: string, destination?: pino.DestinationStream): Logger {
  return destination ? pino(loggerOptions(level), destination) : pino(loggerOptions(level));
}
