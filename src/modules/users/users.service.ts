import { sql } from '../../db/kysely.ts';
import type { TenantTransaction } from '../../db/tenant-db.ts';
import { loadSecurityPolicy } from '../access/security-policy.ts';
import { loadUserAccess, revokeSessions } from '../auth/sessions.ts';
import { announceAuthChange } from '../access/auth-changes.ts';
import type { SessionRevokeReason } from '../../db/schema.ts';
import type { BuiltInRole, UserRole } from '../../db/schema.ts';
import type { FieldCipher } from '../../crypto/field-cipher.ts';
import { AppError } from '../../server/errors.ts';
import type { Principal } from '../../server/access-control.ts';
import { assertGrantable, builtInRoles, normalisePermissions, type Permission } from '../access/permissions.ts';
import { mintTenantToken } from '../api-tokens/api-tokens.service.ts';
import type { Mailer } from '../mail/mailer.ts';
import { createUser, type UserView } from './users.repo.ts';

export const INVITATION_HOURS = 72;

export type RoleChoice = { role: UserRole; customRoleId: string | null; permissions: Permission[] };

/**
 * Resolves the role a manager wants to give, and refuses escalation: nobody gives a role holding a
 * permission they lack, and only an owner makes another owner.
 */
export async function resolveRoleChoice(
  trx: TenantTransaction,
  actor: Principal,
  wanted: { role?: BuiltInRole | undefined; customRoleId?: string | undefined },
): Promise<RoleChoice> {
  if ((wanted.role === undefined) === (wanted.customRoleId === undefined)) {
    throw new AppError('validation_failed', 'Give either a built-in role or a custom role id.');
  }
  let choice: RoleChoice;
  if (wanted.role !== undefined) {
    choice = { role: wanted.role, customRoleId: null, permissions: [...builtInRoles[wanted.role]] };
  } else {
    const custom = await trx.selectFrom('roles').select(['id', 'permissions']).where('id', '=', wanted.customRoleId ?? '').executeTakeFirst();
    if (!custom) throw new AppError('not_found', 'No such custom role.');
    choice = { role: 'custom', customRoleId: custom.id, permissions: normalisePermissions(custom.permissions) };
  }
  if (choice.role === 'owner' && actor.role !== 'owner') throw new AppError('forbidden', 'Only an owner can make another owner.');
  assertGrantable(actor.permissions, choice.permissions);
  return choice;
}

/** Invites a user: created as 'invited', with a one-time link (72 h) sent by e-mail only. */
export async function inviteUser(
  trx: TenantTransaction,
  deps: { cipher: FieldCipher; mailer: Mailer; publicUrl: string },
  input: { email: string; displayName: string; choice: RoleChoice; tenantName: string },
): Promise<UserView> {
  const user = await createUser(trx, deps.cipher, { email: input.email, displayName: input.displayName, role: input.choice.role, customRoleId: input.choice.customRoleId });
  const { token, hash } = mintTenantToken('rvs', trx.tenantId);
  const expiresAt = new Date(Date.now() + INVITATION_HOURS * 3600_000);
  await trx.insertInto('setup_tokens').values({ user_id: user.id, token_hash: hash, expires_at: expiresAt, purpose: 'invitation' }).execute();
  await deps.mailer.queue(trx, 'invitation', {
    to: user.email,
    subject: `You are invited to ${input.tenantName} on Ringvakt`,
    text:
      `Hello ${input.displayName},\n\nyou have been invited to ${input.tenantName}. Choose your password here ` +
      `(the link works once, until ${expiresAt.toISOString()} UTC):\n\n${deps.publicUrl}/setup#token=${token}\n\n` +
      'If you did not expect this, ignore this message.\n',
  });
  return user;
}

/**
 * A manager acts only on users who hold no more than they do: the target's permissions must be a
 * subset of the actor's, and only an owner acts on an owner. (Otherwise a custom role holding
 * users:manage could demote or lock out every administrator.)
 */
export async function assertMayManage(trx: TenantTransaction, actor: Principal, target: { id: string; role: UserRole }): Promise<void> {
  if (target.role === 'owner' && actor.role !== 'owner') throw new AppError('forbidden', 'Only an owner can act on an owner.');
  const access = await loadUserAccess(trx, target.id, await loadSecurityPolicy(trx));
  const beyond = (access?.permissions ?? []).filter((permission) => !actor.permissions.has(permission));
  if (beyond.length > 0) throw new AppError('forbidden', `This user holds permissions you do not: ${beyond.join(', ')}.`);
}

/** True when the tenant would have no active owner left without this user (owners serialised). */
export async function isLastActiveOwner(trx: TenantTransaction, userId: string): Promise<boolean> {
  await sql`SELECT pg_advisory_xact_lock(hashtextextended(${`ringvakt:owners:${trx.tenantId}`}, 0))`.execute(trx);
  const owners = await trx.selectFrom('users').select('id').where('role', '=', 'owner').where('status', '=', 'active').forUpdate().execute();
  return owners.length === 1 && owners[0]?.id === userId;
}

/**
 * Ends everything a user can do, at once and in the caller's transaction: optionally the account
 * itself (disabled), every session and every API token — and, through the notification at commit,
 * every cached credential on every node. The one way users are disabled (users, incident
 * containment, access reviews).
 */
export async function endUserAccess(trx: TenantTransaction, userId: string, options: { disable: boolean; reason: SessionRevokeReason }): Promise<{ sessionsEnded: number; tokensRevoked: number }> {
  if (options.disable) await trx.updateTable('users').set({ status: 'disabled', updated_at: new Date() }).where('id', '=', userId).execute();
  const sessionsEnded = await revokeSessions(trx, { userId }, options.reason);
  const revoked = await trx.updateTable('api_tokens').set({ revoked_at: new Date() }).where('user_id', '=', userId).where('revoked_at', 'is', null).executeTakeFirst();
  announceAuthChange(trx);
  return { sessionsEnded, tokensRevoked: Number(revoked.numUpdatedRows) };
}
