import ipaddr from 'ipaddr.js';
import type { StoredAuditEvent } from '../audit/canonical-event.ts';
import { DETECTION_RULES, type EventField, type Match, type RuleDefinition, type RuleSettings, type WorkingHours } from './detection-rules.ts';

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

/** A sealed audit event as the detector sees it: the stored event, with its id and a parsed time. */
export type LedgerEvent = Omit<StoredAuditEvent, 'tenantId' | 'requestId' | 'occurredAt'> & { id: string; occurredAt: Date };

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

const localFormatters = new Map<string, Intl.DateTimeFormat>();
const WEEKDAYS: Record<string, number> = { Mon: 1, Tue: 2, Wed: 3, Thu: 4, Fri: 5, Sat: 6, Sun: 7 };
/** The local hour (0–23) and ISO weekday (1–7) of a moment in a time zone. */
export function localTime(at: Date, timeZone: string): { hour: number; day: number } {
  let format = localFormatters.get(timeZone);
  if (!format) {
    format = new Intl.DateTimeFormat('en-GB', { hour: 'numeric', hourCycle: 'h23', weekday: 'short', timeZone });
    localFormatters.set(timeZone, format);
  }
  let hour = 0;
  let day = 1;
  for (const part of format.formatToParts(at)) {
    if (part.type === 'hour') hour = Number(part.value);
    if (part.type === 'weekday') day = WEEKDAYS[part.value] ?? 1;
  }
  return { hour, day };
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

export function matches(match: Match, event: LedgerEvent, hours?: WorkingHours): boolean {
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
    const working = hours ?? match.outsideHours;
    const local = localTime(event.occurredAt, working.timeZone);
    if (working.days.includes(local.day) && local.hour >= working.from && local.hour < working.to) return false;
  }
  return true;
}

/** The network an address belongs to, as the novelty rules know networks: IPv4 /24, IPv6 /48. */
export function networkOf(address: string | null): string | undefined {
  if (!address || !ipaddr.isValid(address)) return undefined;
  const parsed = ipaddr.process(address);
  if (parsed.kind() === 'ipv4') return `${parsed.toByteArray().slice(0, 3).join('.')}.0/24`;
  return `${ipaddr.IPv6.networkAddressFromCIDR(`${parsed.toString()}/48`).toString()}/48`;
}

export type TenantDetector = {
  /** Networks the novelty rules already know (learned from the ledger's past, after a takeover). */
  learn(ruleId: string, networks: readonly { network: string; events: number }[]): void;
  /** Counts the events (ledger order); returns the batch's hits, one per rule and subject. */
  feed(events: readonly LedgerEvent[], settings: ReadonlyMap<string, RuleSettings>, options?: { replay?: boolean; hours?: WorkingHours }): Hit[];
};

/** Subjects tracked per rule at most: a flood of new accounts or actors cannot grow memory without bound (the oldest window goes first). */
const MAX_SUBJECTS = 50_000;

type Window = { entries: Entry[]; head: number; distinct: Map<string, number> };

export function createTenantDetector(rules: readonly RuleDefinition[] = DETECTION_RULES): TenantDetector {
  const windows = new Map<string, Map<string, Window>>(rules.map((rule) => [rule.id, new Map()]));
  /** Per novelty rule: the networks known, and how many events they were learned from. */
  const known = new Map<string, { networks: Set<string>; events: number }>(rules.filter((rule) => rule.novelty).map((rule) => [rule.id, { networks: new Set(), events: 0 }]));

  /** Drops entries at or before `from`; the distinct values they carried are counted down. */
  const slide = (window: Window, from: number) => {
    while (window.head < window.entries.length && (window.entries[window.head] as Entry).at <= from) {
      const gone = window.entries[window.head] as Entry;
      if (gone.distinct !== undefined) {
        const left = (window.distinct.get(gone.distinct) ?? 1) - 1;
        if (left === 0) window.distinct.delete(gone.distinct);
        else window.distinct.set(gone.distinct, left);
      }
      window.head += 1;
    }
    // Compacted now and then, not on every event.
    if (window.head > 1_024 && window.head * 2 > window.entries.length) {
      window.entries = window.entries.slice(window.head);
      window.head = 0;
    }
  };
  const live = (window: Window) => window.entries.length - window.head;

  return {
    learn(ruleId, networks) {
      const learned = known.get(ruleId);
      if (!learned) return;
      for (const entry of networks) {
        learned.networks.add(entry.network);
        learned.events += entry.events;
      }
    },
    feed(events, settings, options = {}) {
      const hits = new Map<string, Hit>();
      for (const event of events) {
        const at = event.occurredAt.getTime();
        for (const rule of rules) {
          const setting = settings.get(rule.id);
          if (!setting?.enabled || !rule.match.some((match) => matches(match, event, options.hours))) continue;
          const learned = known.get(rule.id);
          if (rule.novelty && learned) {
            const network = networkOf(event.sourceIp);
            if (network === undefined) continue;
            const isNew = !learned.networks.has(network);
            learned.networks.add(network);
            learned.events += 1;
            if (options.replay || !isNew || learned.events <= rule.novelty.minHistory) continue;
            hits.set(`${rule.id}\u0000${network}`, { ruleId: rule.id, subject: `network:${network}`, windowCount: 1, newEvents: 1, firstSeen: event.occurredAt, lastSeen: event.occurredAt, evidence: [event.id] });
            continue;
          }
          const subject = field(event, rule.subject);
          if (subject === undefined) continue;
          const distinct = rule.distinct ? field(event, rule.distinct) : undefined;
          if (rule.distinct && distinct === undefined) continue;
          const bySubject = windows.get(rule.id) as Map<string, Window>;
          let window = bySubject.get(subject);
          if (!window) {
            if (bySubject.size >= MAX_SUBJECTS) bySubject.delete(bySubject.keys().next().value as string);
            window = { entries: [], head: 0, distinct: new Map() };
            bySubject.set(subject, window);
          }
          window.entries.push({ at, id: event.id, distinct });
          if (distinct !== undefined) window.distinct.set(distinct, (window.distinct.get(distinct) ?? 0) + 1);
          slide(window, at - setting.windowSeconds * 1000);
          if (options.replay) continue;
          const count = rule.distinct ? window.distinct.size : live(window);
          const key = `${rule.id}\u0000${subject}`;
          const earlier = hits.get(key);
          if (count < setting.threshold && !earlier) continue;
          hits.set(key, {
            ruleId: rule.id,
            subject,
            windowCount: Math.max(count, earlier?.windowCount ?? 0),
            newEvents: (earlier?.newEvents ?? 0) + 1,
            firstSeen: new Date((window.entries[window.head] as Entry).at),
            lastSeen: event.occurredAt,
            evidence: window.entries.slice(Math.max(window.head, window.entries.length - 100)).map((entry) => entry.id),
          });
        }
      }
      // Subjects whose window has emptied are forgotten (memory stays bounded by the windows).
      const now = events.length > 0 ? (events[events.length - 1] as LedgerEvent).occurredAt.getTime() : Date.now();
      for (const rule of rules) {
        const windowMs = (settings.get(rule.id)?.windowSeconds ?? rule.defaults.windowSeconds) * 1000;
        const bySubject = windows.get(rule.id) as Map<string, Window>;
        for (const [subject, window] of bySubject) {
          if (live(window) === 0 || (window.entries[window.entries.length - 1] as Entry).at <= now - windowMs) bySubject.delete(subject);
        }
      }
      return [...hits.values()];
    },
  };
}
