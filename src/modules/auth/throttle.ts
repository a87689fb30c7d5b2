import ipaddr from 'ipaddr.js';
import { sql } from '../../db/kysely.ts';
import type { TenantTransaction } from '../../db/tenant-db.ts';

/**
 * Login throttling. Every attempt is counted as a failure *before* its password is checked and
 * forgiven after a success, so parallel attempts cannot slip past a limit while their hashes run.
 * A counter allows a few consecutive failures, then imposes growing delays (1 s, 2 s, 4 s, … up to
 * a ceiling); attempts during a delay are refused without checking any password. Independently,
 * failures per rolling hour are capped: at the cap the subject is locked until the hour is over.
 *
 * Three subjects, each with its own limits:
 * - an account (per tenant, by keyed hash of the e-mail address: unknown addresses count alike);
 * - a source network (across tenants: an IPv4 address, or an IPv6 /56);
 * - a trusted device (a browser that has signed in as that user before: it is exempt from the two
 *   above, so an attack cannot lock real users out of their own browsers).
 */
export type ThrottleLimits = { freeFailures: number; baseDelayMs: number; maxDelayMs: number; perHour: number };

/** At most 100 checked failures per account per hour (issue 4, design brief). */
export const ACCOUNT_LIMITS: ThrottleLimits = { freeFailures: 5, baseDelayMs: 1_000, maxDelayMs: 15 * 60_000, perHour: 100 };
/** A call-centre office shares one address among hundreds of agents: higher, but still bounded. */
export const SOURCE_LIMITS: ThrottleLimits = { freeFailures: 50, baseDelayMs: 1_000, maxDelayMs: 60 * 60_000, perHour: 1_000 };
export const DEVICE_LIMITS: ThrottleLimits = { freeFailures: 5, baseDelayMs: 1_000, maxDelayMs: 15 * 60_000, perHour: 100 };

const HOUR_MS = 3600_000;

export type ThrottleState = { windowStartedAt: Date; failures: number; consecutive: number; lockedUntil: Date | null };

/** The state after one more (provisional) failure at `now`. */
export function afterFailure(state: ThrottleState | undefined, now: Date, limits: ThrottleLimits): ThrottleState {
  const fresh = !state || now.getTime() - state.windowStartedAt.getTime() >= HOUR_MS;
  const windowStartedAt = fresh ? now : state.windowStartedAt;
  const failures = (fresh ? 0 : state.failures) + 1;
  const consecutive = (state?.consecutive ?? 0) + 1;
  let lockedUntil: Date | null = null;
  if (failures >= limits.perHour) {
    lockedUntil = new Date(windowStartedAt.getTime() + HOUR_MS);
  } else if (consecutive >= limits.freeFailures) {
    const delay = Math.min(limits.maxDelayMs, limits.baseDelayMs * 2 ** Math.min(30, consecutive - limits.freeFailures));
    lockedUntil = new Date(now.getTime() + delay);
  }
  return { windowStartedAt, failures, consecutive, lockedUntil };
}

/** The state after the provisional failure turned out a success. */
export function afterSuccess(state: ThrottleState): ThrottleState {
  return { ...state, failures: Math.max(0, state.failures - 1), consecutive: 0, lockedUntil: null };
}

export const isLocked = (state: ThrottleState | undefined, now: Date): boolean =>
  Boolean(state?.lockedUntil && state.lockedUntil.getTime() > now.getTime());

/**
 * The network a source address is counted under: IPv4 alone; IPv6 by /56, since one subscriber is
 * commonly given a /56 (or a /48): counting by /64 would hand such an attacker 256 budgets or more.
 */
export function sourceNetwork(address: string): string {
  try {
    const parsed = ipaddr.process(address);
    if (parsed.kind() === 'ipv4') return `${parsed.toString()}/32`;
    return `${ipaddr.IPv6.networkAddressFromCIDR(`${parsed.toString()}/56`).toString()}/56`;
  } catch {
    return '0.0.0.0/32';
  }
}

export type StateRow = { window_started_at: Date; failures: number; consecutive: number; locked_until: Date | null };
export const toState = (row: StateRow): ThrottleState => ({
  windowStartedAt: row.window_started_at,
  failures: row.failures,
  consecutive: row.consecutive,
  lockedUntil: row.locked_until,
});

export type AccountCheck = { state: ThrottleState; blocked: boolean; justLocked: boolean; notifiedAt: Date | null };

/**
 * Takes an attempt against an account: refused (blocked) while locked; otherwise counted as a
 * provisional failure. Runs in the login's first transaction, which holds the row lock.
 */
export async function takeAccountAttempt(trx: TenantTransaction, subject: Buffer, now: Date): Promise<AccountCheck> {
  // Counters of addresses nobody has tried for a day are forgotten (a sweep every hundredth attempt).
  if (now.getTime() % 100 === 0) {
    await trx.deleteFrom('account_throttle').where('updated_at', '<', new Date(now.getTime() - 86_400_000)).where((eb) => eb.or([eb('locked_until', 'is', null), eb('locked_until', '<', now)])).execute();
  }
  await sql`INSERT INTO account_throttle (subject, window_started_at, failures, consecutive) VALUES (${subject}, ${now}, 0, 0)
            ON CONFLICT (tenant_id, subject) DO NOTHING`.execute(trx);
  const row = await trx
    .selectFrom('account_throttle')
    .select(['window_started_at', 'failures', 'consecutive', 'locked_until', 'lock_notified_at'])
    .where('subject', '=', subject)
    .forUpdate()
    .executeTakeFirstOrThrow();
  const before = toState(row);
  if (isLocked(before, now)) return { state: before, blocked: true, justLocked: false, notifiedAt: row.lock_notified_at };
  const state = afterFailure(before, now, ACCOUNT_LIMITS);
  await trx
    .updateTable('account_throttle')
    .set({ window_started_at: state.windowStartedAt, failures: state.failures, consecutive: state.consecutive, locked_until: state.lockedUntil, updated_at: now })
    .where('subject', '=', subject)
    .execute();
  return { state, blocked: false, justLocked: isLocked(state, now), notifiedAt: row.lock_notified_at };
}

export async function forgiveAccountAttempt(trx: TenantTransaction, subject: Buffer, now: Date): Promise<void> {
  const row = await trx
    .selectFrom('account_throttle')
    .select(['window_started_at', 'failures', 'consecutive', 'locked_until'])
    .where('subject', '=', subject)
    .forUpdate()
    .executeTakeFirst();
  if (!row) return;
  const state = afterSuccess(toState(row));
  await trx
    .updateTable('account_throttle')
    .set({ failures: state.failures, consecutive: state.consecutive, locked_until: null, updated_at: now })
    .where('subject', '=', subject)
    .execute();
}

