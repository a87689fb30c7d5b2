import ipaddr from 'ipaddr.js';
import { sql } from '../../db/kysely.ts';
import type { TenantTransaction } from '../../db/tenant-db.ts';
import { AppError } from '../../server/errors.ts';
import { announceAuthChange } from './auth-changes.ts';

/** A tenant's security policy (table tenant_security_policies; no row means these defaults). */
export type SecurityPolicy = {
  mfaRequiredForAll: boolean;
  sessionIdleMinutes: number;
  sessionAbsoluteHours: number;
  /** CIDR networks, canonical text; empty means any address. */
  ipAllowList: string[];
  /** Full personal values (contacts:reveal) one user may see per hour. */
  revealsPerHour: number;
  /** Lookups by phone or e-mail per user and rolling hour (each tells whether a value is a contact's). */
  lookupsPerHour: number;
};

export const defaultSecurityPolicy: SecurityPolicy = {
  mfaRequiredForAll: false,
  sessionIdleMinutes: 30,
  sessionAbsoluteHours: 12,
  ipAllowList: [],
  revealsPerHour: 50,
  lookupsPerHour: 600,
};

/** An address range blocked by the security team (a containment action), until it expires or is lifted. */
export type BlockedNetwork = { network: string; expiresAt: number | null };

/** The policy with the ranges blocked now: what every sign-in and request is checked against. */
export type EnforcedPolicy = SecurityPolicy & { blockedNetworks: BlockedNetwork[] };

export async function loadSecurityPolicy(trx: TenantTransaction): Promise<EnforcedPolicy> {
  const row = await trx
    .selectFrom('tenant_security_policies')
    .select(['mfa_required_for_all', 'session_idle_minutes', 'session_absolute_hours', 'reveals_per_hour', 'lookups_per_hour', sql<string[]>`ip_allow_list::text[]`.as('allow')])
    .executeTakeFirst();
  const blocked = await trx
    .selectFrom('blocked_networks')
    .select([sql<string>`network::text`.as('network'), 'expires_at'])
    .where('lifted_at', 'is', null)
    .where((eb) => eb.or([eb('expires_at', 'is', null), eb('expires_at', '>', new Date())]))
    .orderBy('created_at', 'desc')
    .limit(MAX_BLOCKED_NETWORKS)
    .execute();
  const blockedNetworks = blocked.map((entry) => ({ network: entry.network, expiresAt: entry.expires_at?.getTime() ?? null }));
  if (!row) return { ...defaultSecurityPolicy, blockedNetworks };
  return {
    blockedNetworks,
    mfaRequiredForAll: row.mfa_required_for_all,
    sessionIdleMinutes: row.session_idle_minutes,
    sessionAbsoluteHours: row.session_absolute_hours,
    ipAllowList: row.allow,
    revealsPerHour: row.reveals_per_hour,
    lookupsPerHour: row.lookups_per_hour,
  };
}

export async function saveSecurityPolicy(trx: TenantTransaction, policy: SecurityPolicy): Promise<void> {
  const values = {
    mfa_required_for_all: policy.mfaRequiredForAll,
    session_idle_minutes: policy.sessionIdleMinutes,
    session_absolute_hours: policy.sessionAbsoluteHours,
    reveals_per_hour: policy.revealsPerHour,
    lookups_per_hour: policy.lookupsPerHour,
    ip_allow_list: sql<string>`${policy.ipAllowList}::cidr[]` as unknown as string[],
    updated_at: new Date(),
  };
  await trx
    .insertInto('tenant_security_policies')
    .values(values)
    .onConflict((conflict) => conflict.column('tenant_id').doUpdateSet(values))
    .execute();
  announceAuthChange(trx);
}

type Range = [ipaddr.IPv4 | ipaddr.IPv6, number];

/** The most ranges a tenant may block at once: every request is checked against them all. */
export const MAX_BLOCKED_NETWORKS = 500;

export type AddressRefusal = 'ip_not_allowed' | 'ip_blocked';

/**
 * The address check of every sign-in and request: outside the allow-list, or inside a blocked
 * range that has not expired yet. Undefined when the tenant restricts nothing.
 */
export function createAddressGate(policy: EnforcedPolicy): ((address: string) => AddressRefusal | undefined) | undefined {
  if (policy.ipAllowList.length === 0 && policy.blockedNetworks.length === 0) return undefined;
  const allowed = createAllowListMatcher(policy.ipAllowList);
  const blocks = policy.blockedNetworks.map((entry) => ({ range: ipaddr.parseCIDR(entry.network) as Range, expiresAt: entry.expiresAt ?? Number.POSITIVE_INFINITY }));
  return (address) => {
    if (!allowed(address)) return 'ip_not_allowed';
    if (blocks.length === 0) return undefined;
    let parsed: ipaddr.IPv4 | ipaddr.IPv6;
    try {
      parsed = ipaddr.process(address);
    } catch {
      return 'ip_blocked';
    }
    const now = Date.now();
    return blocks.some(({ range: [network, bits], expiresAt }) => expiresAt > now && network.kind() === parsed.kind() && parsed.match([network, bits] as never)) ? 'ip_blocked' : undefined;
  };
}

/** The refusal for one address, for a sign-in (which has no cached gate). */
export function addressRefusal(policy: EnforcedPolicy, address: string): AddressRefusal | undefined {
  return createAddressGate(policy)?.(address);
}

/** Parses CIDR text ("10.0.0.0/8", "2001:db8::/32", or a single address) into its canonical form. */
export function canonicalCidr(text: string): string {
  try {
    const [address, prefix] = text.includes('/') ? ipaddr.parseCIDR(text) : [ipaddr.parse(text), undefined];
    const bits = prefix ?? (address.kind() === 'ipv4' ? 32 : 128);
    const network = address.kind() === 'ipv4' ? ipaddr.IPv4.networkAddressFromCIDR(`${address.toString()}/${bits}`) : ipaddr.IPv6.networkAddressFromCIDR(`${address.toString()}/${bits}`);
    return `${network.toString()}/${bits}`;
  } catch {
    throw new AppError('validation_failed', 'Each entry of the IP allow-list is an IPv4 or IPv6 address or CIDR network (e.g. 192.0.2.0/24, 2001:db8::/32).');
  }
}

/**
 * Answers whether an address falls within an allow-list. IPv4-mapped IPv6 addresses
 * (::ffff:192.0.2.1) are matched as the IPv4 address they are. An empty list allows everything.
 */
export function createAllowListMatcher(list: readonly string[]): (address: string) => boolean {
  if (list.length === 0) return () => true;
  const ranges: Range[] = list.map((cidr) => ipaddr.parseCIDR(cidr));
  return (address) => {
    let parsed: ipaddr.IPv4 | ipaddr.IPv6;
    try {
      parsed = ipaddr.process(address);
    } catch {
      return false;
    }
    return ranges.some(([network, bits]) => network.kind() === parsed.kind() && parsed.match([network, bits] as never));
  };
}
