/**
 * The canonical form of an audit event: the bytes its leaf hash commits to. Its own module, with
 * no imports, because the worker threads of `audit verify` load it and nothing else of the ledger.
 * Never change it: every sealed leaf of every ledger was hashed over exactly these bytes.
 */

/** Sorted-key JSON of flat details: one byte string per set of values, whatever the key order. */
function canonicalDetails(details: Record<string, unknown>): string {
  return JSON.stringify(Object.keys(details).sort().map((key) => [key, details[key] ?? null]));
}

export type StoredAuditEvent = {
  tenantId: string;
  /** A Date, or its ISO 8601 text in UTC with milliseconds (as verify reads it, unparsed). */
  occurredAt: Date | string;
  actorType: string;
  actorId: string | null;
  action: string;
  targetType: string | null;
  targetId: string | null;
  outcome: string;
  sourceIp: string | null;
  requestId: string | null;
  details: Record<string, unknown>;
};

/** The canonical bytes of an event: what its leaf hash commits to, and what verify recomputes. */
export function canonicalEvent(event: StoredAuditEvent): Buffer {
  return Buffer.from(canonicalEventText(event), 'utf8');
}

/** The canonical event as text; its UTF-8 encoding is canonicalEvent. */
export function canonicalEventText(event: StoredAuditEvent): string {
  return JSON.stringify([
    'ringvakt-audit-event/v1',
    event.tenantId,
    typeof event.occurredAt === 'string' ? event.occurredAt : event.occurredAt.toISOString(),
    event.actorType,
    event.actorId,
    event.action,
    event.targetType,
    event.targetId,
    event.outcome,
    event.sourceIp,
    event.requestId,
    canonicalDetails(event.details),
  ]);
}

/** A timestamptz as PostgreSQL writes it with DateStyle ISO and TimeZone UTC, to at most milliseconds. */
const POSTGRES_UTC_TIME = /^(\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d)(?:\.(\d{1,3}))?\+00$/;

/**
 * The canonical time of an event read back as PostgreSQL's text ('2026-09-21 12:26:40.12+00',
 * trailing zeros of the fraction dropped): '2026-09-21T12:26:40.120Z', as Date.toISOString writes
 * it. Cheaper for the database than formatting each row with to_char. Any other text — finer than
 * a millisecond (never written by Ringvakt), another zone or style — comes back unchanged, never
 * matches a canonical event, and so reads as altered.
 */
export function isoTimeFromPostgres(text: string): string {
  const match = POSTGRES_UTC_TIME.exec(text);
  if (!match) return text;
  return `${match[1]}T${match[2]}.${(match[3] ?? '').padEnd(3, '0')}Z`;
}
