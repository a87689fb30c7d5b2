import { DETECTION_RULES, type EventField, type Match, type RuleDefinition, type RuleSettings } from './detection-rules.ts';

/**
 * The detector of one tenant: sliding windows over the audit events it is fed, per rule and
 * subject, in memory. Fed in ledger order (sealed leaf order), each event is counted by the rules
 * it matches; a subject at or above its rule's threshold is a hit. Hits of one batch are folded
 * per rule and subject (a wave of thousands is one hit with a count), and the alert store
 * (alerts.ts) deduplicates them against open alerts.
 *
 * The windows are rebuilt after a restart or a takeover by replaying the window's past events
 * (`replay`: counted, no hits), so a node taking over sees the same counts as the one before.
 */

export type LedgerEvent = {
  id: string;
  occurredAt: Date;
  actorType: string;
  actorId: string | null;
  action: string;
  targetType: string | null;
  targetId: string | null;
  outcome: string;
  sourceIp: string | null;
  details: Record<string, unknown>;
};

export type Hit = {
  ruleId: string;
  subject: string;
  /** Events (or distinct values) in the window when the batch ended. */
  windowCount: number;
  /** Matching events of this subject in this batch. */
  newEvents: number;
  firstSeen: Date;
  lastSeen: Date;
  /** Ids of the window's events, newest last (at most 100). */
  evidence: string[];
};

type Entry = { at: number; id: string; distinct: string | undefined };

const hourFormatters = new Map<string, Intl.DateTimeFormat>();
function localHour(at: Date, timeZone: string): number {
  let format = hourFormatters.get(timeZone);
  if (!format) {
    format = new Intl.DateTimeFormat('en-GB', { hour: 'numeric', hourCycle: 'h23', timeZone });
    hourFormatters.set(timeZone, format);
  }
  return Number(format.format(at));
}

function field(event: LedgerEvent, which: EventField): string | undefined {
  switch (which) {
    case 'actor':
      return event.actorId ? `${event.actorType}:${event.actorId}` : undefined;
    case 'target':
      return event.targetId ? `${event.targetType ?? 'unknown'}:${event.targetId}` : undefined;
    case 'source':
      return event.sourceIp ?? undefined;
    case 'tenant':
      return 'tenant';
  }
}

export function matches(match: Match, event: LedgerEvent): boolean {
  if (!(match.actions as readonly string[]).includes(event.action)) return false;
  if (match.outcomes && !(match.outcomes as readonly string[]).includes(event.outcome)) return false;
  if (match.actorTypes && !(match.actorTypes as readonly string[]).includes(event.actorType)) return false;
  for (const [key, values] of Object.entries(match.detailsIn ?? {})) {
    const value = event.details[key];
    if (typeof value !== 'string' || !values.includes(value)) return false;
  }
  for (const [key, values] of Object.entries(match.detailsHasWord ?? {})) {
    const value = event.details[key];
    if (typeof value !== 'string') return false;
    const words = value.split(/\s+/);
    if (!values.some((wanted) => words.includes(wanted))) return false;
  }
  if (match.outsideHours) {
    const hour = localHour(event.occurredAt, match.outsideHours.timeZone);
    if (hour >= match.outsideHours.from && hour < match.outsideHours.to) return false;
  }
  return true;
}

export type TenantDetector = {
  /** Counts the events (ledger order); returns the batch's hits, one per rule and subject. */
  feed(events: readonly LedgerEvent[], settings: ReadonlyMap<string, RuleSettings>, options?: { replay?: boolean }): Hit[];
  /** Subjects tracked (a bound on memory: windows are pruned as they slide). */
  size(): number;
};

export function createTenantDetector(rules: readonly RuleDefinition[] = DETECTION_RULES): TenantDetector {
  const windows = new Map<string, Map<string, Entry[]>>(rules.map((rule) => [rule.id, new Map()]));

  const countOf = (entries: readonly Entry[], rule: RuleDefinition) => (rule.distinct ? new Set(entries.map((entry) => entry.distinct)).size : entries.length);

  return {
    feed(events, settings, options = {}) {
      const hits = new Map<string, Hit>();
      for (const event of events) {
        const at = event.occurredAt.getTime();
        for (const rule of rules) {
          const setting = settings.get(rule.id);
          if (!setting?.enabled || !rule.match.some((match) => matches(match, event))) continue;
          const subject = field(event, rule.subject);
          if (subject === undefined) continue;
          const distinct = rule.distinct ? field(event, rule.distinct) : undefined;
          if (rule.distinct && distinct === undefined) continue;
          const bySubject = windows.get(rule.id) as Map<string, Entry[]>;
          let entries = bySubject.get(subject);
          if (!entries) {
            entries = [];
            bySubject.set(subject, entries);
          }
          entries.push({ at, id: event.id, distinct });
          const from = at - setting.windowSeconds * 1000;
          let drop = 0;
          while (drop < entries.length && (entries[drop] as Entry).at <= from) drop += 1;
          if (drop > 0) entries.splice(0, drop);
          if (options.replay) continue;
          const count = countOf(entries, rule);
          const key = `${rule.id}\u0000${subject}`;
          const earlier = hits.get(key);
          if (count < setting.threshold && !earlier) continue;
          hits.set(key, {
            ruleId: rule.id,
            subject,
            windowCount: Math.max(count, earlier?.windowCount ?? 0),
            newEvents: (earlier?.newEvents ?? 0) + 1,
            firstSeen: new Date((entries[0] as Entry).at),
            lastSeen: event.occurredAt,
            evidence: entries.slice(-100).map((entry) => entry.id),
          });
        }
      }
      // Subjects whose window has emptied are forgotten (memory stays bounded by the windows).
      const now = events.length > 0 ? (events[events.length - 1] as LedgerEvent).occurredAt.getTime() : Date.now();
      for (const rule of rules) {
        const windowMs = (settings.get(rule.id)?.windowSeconds ?? rule.defaults.windowSeconds) * 1000;
        for (const [subject, entries] of windows.get(rule.id) as Map<string, Entry[]>) {
          if (entries.length === 0 || (entries[entries.length - 1] as Entry).at <= now - windowMs) (windows.get(rule.id) as Map<string, Entry[]>).delete(subject);
        }
      }
      return [...hits.values()];
    },
    size: () => [...windows.values()].reduce((sum, bySubject) => sum + bySubject.size, 0),
  };
}
