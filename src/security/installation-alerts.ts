import type { Severity } from '../db/schema-security.ts';

/**
 * Detections of the installation itself — what no tenant's ledger holds:
 *
 * - `installation.route_4xx_flood`: one route answering 4xx far more than any person would cause
 *   (a scanner, a credential-stuffing wave before it reaches an account, a broken integration);
 *   counted per node from every response, unauthenticated ones included;
 * - `installation.key_provider_errors`: the root key provider (key file, environment, Vault
 *   transit) failing to wrap or unwrap — nothing new can be encrypted while it lasts;
 * - `installation.sealing_lag`: audit events waiting too long to be sealed into a signed tree
 *   head (the sealer is stuck, or the signing key cannot be read).
 *
 * Each node counts what it sees in memory (bounded) and raises into `installation_alerts`: one open
 * alert per rule and subject, repeats adding to its count. The operator reads and handles them
 * with `ringvakt security status`, and they are copied to syslog with the tenants' alerts.
 */

export type InstallationRule = { id: string; title: string; severity: Severity; threshold: number; windowMs: number };

export const INSTALLATION_RULES = {
  routeFlood: { id: 'installation.route_4xx_flood', title: 'A route answering client errors in a flood', severity: 'medium', threshold: 300, windowMs: 60_000 },
  keyProvider: { id: 'installation.key_provider_errors', title: 'The root key provider failing', severity: 'critical', threshold: 3, windowMs: 300_000 },
  sealingLag: { id: 'installation.sealing_lag', title: 'Audit events waiting to be sealed', severity: 'critical', threshold: 60, windowMs: 600_000 },
} as const satisfies Record<string, InstallationRule>;

/** Routes counted at once per node: past it, new routes share one key (a scanner's made-up paths never exhaust memory). */
const MAX_ROUTES = 500;
const SECONDS = 60;

type Buckets = { counts: Uint32Array; stamps: Float64Array };
const routes = new Map<string, Buckets>();
const keyErrors: number[] = [];

function bucketsFor(key: string): Buckets {
  let found = routes.get(key) ?? (routes.size >= MAX_ROUTES ? routes.get('(other routes)') : undefined);
  if (!found) {
    found = { counts: new Uint32Array(SECONDS), stamps: new Float64Array(SECONDS) };
    routes.set(routes.size >= MAX_ROUTES ? '(other routes)' : key, found);
  }
  return found;
}

/** Called for every response (the metrics hook): client errors are counted per route in one-second buckets. */
export function noteResponse(method: string, route: string, status: number, now = Date.now()): void {
  if (status < 400 || status >= 500) return;
  const second = Math.floor(now / 1000);
  const buckets = bucketsFor(`${method} ${route}`);
  const slot = second % SECONDS;
  if (buckets.stamps[slot] !== second) {
    buckets.stamps[slot] = second;
    buckets.counts[slot] = 0;
  }
  buckets.counts[slot] = (buckets.counts[slot] ?? 0) + 1;
}

/** Called when the root key provider fails to wrap or unwrap. */
export function noteKeyProviderError(now = Date.now()): void {
  keyErrors.push(now);
  while (keyErrors.length > 1000) keyErrors.shift();
}

export type Signal = {
  rule: InstallationRule;
  subject: string;
  count: number;
  firstSeen: Date;
  lastSeen: Date;
  /** How many of the counted were seen after a moment (what is new since it was last recorded). */
  countAfter(moment: Date): number;
};

/** What this node saw over each rule's window that reaches its threshold. */
export function currentSignals(now = Date.now()): Signal[] {
  const signals: Signal[] = [];
  const second = Math.floor(now / 1000);
  for (const [route, buckets] of routes) {
    let count = 0;
    let first = Number.POSITIVE_INFINITY;
    let last = 0;
    for (let slot = 0; slot < SECONDS; slot += 1) {
      const stamp = buckets.stamps[slot] ?? 0;
      if (stamp > second - SECONDS && stamp <= second) {
        count += buckets.counts[slot] ?? 0;
        first = Math.min(first, stamp);
        last = Math.max(last, stamp);
      }
    }
    if (count === 0 && buckets.stamps.every((stamp) => stamp <= second - SECONDS)) routes.delete(route);
    if (count >= INSTALLATION_RULES.routeFlood.threshold) {
      const counts = Array.from(buckets.counts);
      const stamps = Array.from(buckets.stamps);
      const countAfter = (moment: Date) => stamps.reduce((sum, stamp, slot) => (stamp > second - SECONDS && stamp * 1000 >= moment.getTime() ? sum + (counts[slot] ?? 0) : sum), 0);
      signals.push({ rule: INSTALLATION_RULES.routeFlood, subject: `route:${route}`.slice(0, 200), count, firstSeen: new Date(first * 1000), lastSeen: new Date(last * 1000 + 999), countAfter });
    }
  }
  while (keyErrors.length > 0 && (keyErrors[0] ?? 0) <= now - INSTALLATION_RULES.keyProvider.windowMs) keyErrors.shift();
  if (keyErrors.length >= INSTALLATION_RULES.keyProvider.threshold) {
    const times = [...keyErrors];
    signals.push({ rule: INSTALLATION_RULES.keyProvider, subject: 'key-provider', count: times.length, firstSeen: new Date(times[0] ?? now), lastSeen: new Date(times[times.length - 1] ?? now), countAfter: (moment) => times.filter((time) => time > moment.getTime()).length });
  }
  return signals;
}

/** Forgets what was counted (tests). */
export function resetSignals(): void {
  routes.clear();
  keyErrors.length = 0;
}

export const windowText = (ms: number) => (ms >= 60_000 ? `${Math.round(ms / 60_000)} min` : `${Math.round(ms / 1000)} s`);
