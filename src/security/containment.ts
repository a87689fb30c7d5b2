import ipaddr from 'ipaddr.js';
import type { FastifyRequest } from 'fastify';
import { z } from '../zod.ts';
import { sql } from '../db/kysely.ts';
import type { TenantTransaction } from '../db/tenant-db.ts';
import { recordAuditEvent } from '../audit/audit-event.ts';
import { announceAuthChange } from '../modules/access/auth-changes.ts';
import { canonicalCidr, MAX_BLOCKED_NETWORKS } from '../modules/access/security-policy.ts';
import { assertMayManage, endUserAccess, isLastActiveOwner } from '../modules/users/users.service.ts';
import { pauseCampaign } from '../modules/campaigns/campaign-lifecycle.ts';
import { principalOf } from '../server/access-control.ts';
import { AppError } from '../server/errors.ts';
import { actorLabel, requestAudit } from '../server/request-audit.ts';
import { uuidSchema } from '../server/schemas.ts';

/**
 * Containment from an incident case (src/security/incidents.ts): end a user's sessions and
 * tokens, disable an account, block an address range, pause a campaign's dialer — each carried
 * out in the case's transaction, with the checks that keep a security manager from locking out
 * those above them or themselves.
 */

/** A range is refused when it is wider than a /16 (IPv4) or /32 (IPv6): a block that wide locks out whole providers. */
function checkBlockable(network: string, callerIp: string): void {
  const [address, bits] = ipaddr.parseCIDR(network);
  // Requests from IPv4-mapped addresses are matched as IPv4: a mapped block would never match.
  if (address.kind() === 'ipv6' && (address as ipaddr.IPv6).isIPv4MappedAddress()) throw new AppError('validation_failed', 'Give an IPv4 range in its IPv4 form (198.51.100.0/24), not mapped into IPv6.', [{ path: 'body/network', message: 'IPv4-mapped IPv6' }]);
  const least = address.kind() === 'ipv4' ? 16 : 32;
  if (bits < least) throw new AppError('validation_failed', `A block is at most a /${least} for ${address.kind() === 'ipv4' ? 'IPv4' : 'IPv6'}.`, [{ path: 'body/network', message: `prefix at least /${least}` }]);
  let caller: ipaddr.IPv4 | ipaddr.IPv6 | undefined;
  try {
    caller = ipaddr.process(callerIp);
  } catch {
    caller = undefined;
  }
  if (caller && caller.kind() === address.kind() && caller.match([address, bits] as never)) {
    throw new AppError('validation_failed', 'This range holds your own address: blocking it would lock you out.', [{ path: 'body/network', message: 'contains your address' }]);
  }
}

/**
 * A block must not lock out those the caller may not manage (owners, administrators above a
 * custom role): refused when the range holds an address any of them signed in from in the last
 * 30 days. Without this a security manager could block the owners' own networks, sign-in
 * included, and nobody inside could lift it.
 */
async function checkNobodyAboveBlocked(trx: TenantTransaction, caller: ReturnType<typeof principalOf>, network: string): Promise<void> {
  const inside = await trx
    .selectFrom('sessions')
    .innerJoin('users', 'users.id', 'sessions.user_id')
    .select(['users.id', 'users.role'])
    .distinct()
    .where('users.status', '=', 'active')
    .where('sessions.created_at', '>', new Date(Date.now() - 30 * 86_400_000))
    .where(sql<boolean>`sessions.source_ip <<= ${network}::cidr`)
    .limit(200)
    .execute();
  for (const user of inside) {
    if (user.id === caller.userId) throw new AppError('validation_failed', 'This range holds an address you signed in from: blocking it could lock you out.', [{ path: 'body/network', message: 'contains your address' }]);
    try {
      await assertMayManage(trx, caller, user);
    } catch {
      throw new AppError('forbidden', 'This range holds an address from which someone who holds more than you (an owner or administrator) signed in: ask them, or block a narrower range.');
    }
  }
}

export const containmentBody = z.discriminatedUnion('action', [
  z.strictObject({ action: z.literal('revoke_user_access'), userId: uuidSchema, reason: z.string().trim().min(3).max(500) }),
  z.strictObject({ action: z.literal('disable_user'), userId: uuidSchema, reason: z.string().trim().min(3).max(500) }),
  z.strictObject({ action: z.literal('block_network'), network: z.string().min(2).max(50), expiresInHours: z.number().int().min(1).max(24 * 90).optional(), reason: z.string().trim().min(3).max(500) }),
  z.strictObject({ action: z.literal('pause_campaign'), campaignId: uuidSchema, reason: z.string().trim().min(3).max(500) }),
]);
type Containment = z.infer<typeof containmentBody>;

/** Carries out one containment action in the case's transaction; returns what the timeline says and the audit details. */
export async function carryOut(trx: TenantTransaction, request: FastifyRequest, incidentId: string, action: Containment): Promise<{ entry: string; details: Record<string, string | number | boolean | null> }> {
  const caller = principalOf(request);
  switch (action.action) {
    case 'revoke_user_access':
    case 'disable_user': {
      const user = await trx.selectFrom('users').select(['id', 'role', 'status']).where('id', '=', action.userId).forUpdate().executeTakeFirst();
      if (!user) throw new AppError('not_found', 'No such user.');
      if (user.id === caller.userId) throw new AppError('conflict', 'You cannot contain yourself: another security manager must.');
      await assertMayManage(trx, caller, user);
      if (action.action === 'disable_user') {
        if (user.status === 'disabled') throw new AppError('invalid_transition', 'The user is disabled already.');
        if (await isLastActiveOwner(trx, user.id)) throw new AppError('conflict', 'This is the last active owner.');
      }
      const { sessionsEnded, tokensRevoked } = await endUserAccess(trx, user.id, { disable: action.action === 'disable_user', reason: action.action === 'disable_user' ? 'user_disabled' : 'revoked' });
      if (action.action === 'disable_user') {
        await recordAuditEvent(trx, { ...requestAudit(request), action: 'user.disable', outcome: 'success', target: { type: 'user', id: user.id }, details: { sessionsEnded, tokensRevoked, incident: incidentId } });
      } else {
        await recordAuditEvent(trx, { ...requestAudit(request), action: 'session.revoke', outcome: 'success', target: { type: 'user', id: user.id }, details: { user: user.id, ended: sessionsEnded, tokensRevoked, incident: incidentId } });
      }
      const verb = action.action === 'disable_user' ? 'Disabled user' : 'Ended every session and API token of user';
      return { entry: `${verb} ${user.id} (${sessionsEnded} sessions, ${tokensRevoked} tokens): ${action.reason}`, details: { user: user.id, sessionsEnded, tokensRevoked } };
    }
    case 'block_network': {
      const network = canonicalCidr(action.network);
      checkBlockable(network, request.ip);
      await checkNobodyAboveBlocked(trx, caller, network);
      // One block writer per tenant at a time: the cap below holds under concurrent containment.
      await sql`SELECT pg_advisory_xact_lock(hashtext(${`${trx.tenantId}:blocked_networks`}))`.execute(trx);
      const live = await trx.selectFrom('blocked_networks').select((eb) => eb.fn.countAll<string>().as('n')).where('lifted_at', 'is', null).where((eb) => eb.or([eb('expires_at', 'is', null), eb('expires_at', '>', new Date())])).executeTakeFirstOrThrow();
      if (Number(live.n) >= MAX_BLOCKED_NETWORKS) throw new AppError('conflict', `At most ${MAX_BLOCKED_NETWORKS} ranges may be blocked at once: lift some first.`);
      const expiresAt = action.expiresInHours ? new Date(Date.now() + action.expiresInHours * 3_600_000) : null;
      const created = await trx
        .insertInto('blocked_networks')
        .values({ network, reason: action.reason, incident_id: incidentId, created_by: actorLabel(request), expires_at: expiresAt })
        .returning('id')
        .executeTakeFirstOrThrow();
      // Every node's cached credentials re-read the blocks: the range is refused from the next request on.
      announceAuthChange(trx);
      return { entry: `Blocked ${network}${expiresAt ? ` until ${expiresAt.toISOString()}` : ''}: ${action.reason}`, details: { network, blockId: created.id, expiresAt: expiresAt?.toISOString() ?? null } };
    }
    case 'pause_campaign': {
      await pauseCampaign(trx, action.campaignId);
      await recordAuditEvent(trx, { ...requestAudit(request), action: 'campaign.pause', outcome: 'success', target: { type: 'campaign', id: action.campaignId }, details: { incident: incidentId } });
      return { entry: `Paused the dialer of campaign ${action.campaignId}: ${action.reason}`, details: { campaign: action.campaignId } };
    }
  }
}
