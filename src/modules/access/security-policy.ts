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

export async function loadSecurityPolicy(trx: TenantTransaction): Promise<SecurityPolicy> {
  const row = await trx
    .selectFrom('tenant_security_policies')
    .select(['mfa_required_for_all', 'session_idle_minutes', 'session_absolute_hours', 'reveals_per_hour', 'lookups_per_hour', sql<string[]>`ip_allow_list::text[]`.as('allow')])
    .executeTakeFirst();
  if (!row) return defaultSecurityPolicy;
  return {
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
