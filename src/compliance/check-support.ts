import { sql } from '../db/kysely.ts';
import type { TenantTransaction } from '../db/tenant-db.ts';
import type { ContactsCrypto } from '../modules/contacts/contacts.service.ts';

/**
 * What every automated check of the compliance center shares: its shape, and how it says what
 * it measured — the population looked at, how many failed, and a sample of the failing ids (ids
 * only, never personal data).
 */

export type CheckStatus = 'pass' | 'fail' | 'not_applicable';
export type CheckResult = { status: CheckStatus; measured: string; population: number; failures: number; sample: string[] };
/** What a check may use beyond the snapshot: the tenant's keys, to compare values as the product itself does (never to show them). */
export type CheckContext = { crypto: ContactsCrypto };
export type Check = { id: string; title: string; run(trx: TenantTransaction, now: Date, context: CheckContext): Promise<CheckResult> };

export const SAMPLE = 10;
export const DAY = 86_400_000;

/** The common shape: a population, the failing ids among it, and how to say it. */
export function verdict(population: number, failing: readonly string[], measured: (failures: number) => string): CheckResult {
  return { status: failing.length === 0 ? 'pass' : 'fail', measured: measured(failing.length), population, failures: failing.length, sample: failing.slice(0, SAMPLE) };
}

export function notApplicable(measured: string): CheckResult {
  return { status: 'not_applicable', measured, population: 0, failures: 0, sample: [] };
}

/** The active users with what the identity checks need: role, second factors, last sign-in. */
export async function activeUsers(trx: TenantTransaction) {
  return trx
    .selectFrom('users')
    .leftJoin('roles', (join) => join.onRef('roles.tenant_id', '=', 'users.tenant_id').onRef('roles.id', '=', 'users.custom_role_id'))
    .select([
      'users.id',
      'users.role',
      'users.created_at',
      'roles.requires_mfa',
      'roles.permissions',
      sql<boolean>`users.totp_secret_ciphertext IS NOT NULL`.as('has_totp'),
      sql<boolean>`EXISTS (SELECT 1 FROM webauthn_credentials w WHERE w.tenant_id = users.tenant_id AND w.user_id = users.id)`.as('has_passkey'),
      sql<Date | null>`(SELECT max(s.created_at) FROM sessions s WHERE s.tenant_id = users.tenant_id AND s.user_id = users.id)`.as('last_sign_in'),
    ])
    .where('users.status', '=', 'active')
    .orderBy('users.id')
    .execute();
}
