import type { SystemDb } from '../../db/system-db.ts';
import type { TenantDb } from '../../db/tenant-db.ts';
import { mintTenantToken, parseTenantToken } from '../api-tokens/api-tokens.service.ts';
import { assertPasswordAcceptable, hashPassword } from '../access/passwords.ts';
import { createUser, findUserById } from '../users/users.repo.ts';
import type { FieldCipher } from '../../crypto/field-cipher.ts';
import { recordAuditEvent } from '../../audit/audit-event.ts';
import { AppError } from '../../server/errors.ts';

/**
 * First-run setup: a tenant, its owner (invited, no password), and a one-time link for the owner to
 * choose a password. There is never a default password. The link puts its secret in the URL
 * fragment (`#token=…`): browsers do not send fragments to servers or in Referer headers, so the
 * secret stays out of access logs and proxies; the page posts it in a request body.
 */

export const SETUP_LINK_HOURS = 24;

export type CreatedTenant = { tenantId: string; ownerId: string; link: string; expiresAt: Date };

export async function createTenantWithOwner(
  database: { systemDb: SystemDb; crypto(): Promise<{ cipher: FieldCipher }> },
  input: { slug: string; name: string; ownerEmail: string; ownerName: string; publicUrl: string; now?: Date },
): Promise<CreatedTenant> {
  const now = input.now ?? new Date();
  const expiresAt = new Date(now.getTime() + SETUP_LINK_HOURS * 3600_000);
  const { cipher } = await database.crypto();
  try {
    return await database.systemDb.createTenantWith(input.slug, input.name, async (trx, tenantId) => {
      const { token, hash } = mintTenantToken('rvs', tenantId);
      const owner = await createUser(trx, cipher, { email: input.ownerEmail, displayName: input.ownerName, role: 'owner' });
      await trx.insertInto('setup_tokens').values({ user_id: owner.id, token_hash: hash, expires_at: expiresAt }).execute();
      await recordAuditEvent(trx, { action: 'tenant.create', outcome: 'success', actor: { type: 'operator' }, target: { type: 'tenant', id: tenantId } });
      await recordAuditEvent(trx, { action: 'user.create', outcome: 'success', actor: { type: 'operator' }, target: { type: 'user', id: owner.id }, details: { role: 'owner' } });
      return { tenantId, ownerId: owner.id, link: `${input.publicUrl}/setup#token=${token}`, expiresAt };
    });
  } catch (error) {
    if ((error as { code?: string }).code === '23505') {
      throw new AppError('conflict', `A tenant with the slug "${input.slug}" exists already.`);
    }
    if ((error as { code?: string }).code === '23514') {
      throw new AppError('bad_request', 'The tenant or owner details are not acceptable (slug: 1–40 lower-case letters, digits or dashes; names: 1–200 characters).');
    }
    throw error;
  }
}

/**
 * Spends a setup link: sets the password (argon2id) and activates the user. The token row is
 * locked, so two concurrent submissions of one link cannot both succeed.
 */
export async function completeOwnerSetup(
  forTenant: (tenantId: string) => TenantDb,
  cipher: FieldCipher,
  input: { token: string; password: string; sourceIp?: string; requestId?: string },
): Promise<{ userId: string }> {
  const parsed = parseTenantToken('rvs', input.token);
  if (!parsed) throw new AppError('setup_link_invalid');
  return forTenant(parsed.tenantId).transaction(async (trx) => {
    const row = await trx
      .selectFrom('setup_tokens')
      .innerJoin('users', (join) =>
        join.onRef('users.tenant_id', '=', 'setup_tokens.tenant_id').onRef('users.id', '=', 'setup_tokens.user_id'),
      )
      .select(['setup_tokens.id as tokenId', 'users.id as userId', 'users.status as status'])
      .where('setup_tokens.token_hash', '=', parsed.hash)
      .where('setup_tokens.used_at', 'is', null)
      .where('setup_tokens.expires_at', '>', new Date())
      .forUpdate('setup_tokens')
      .executeTakeFirst();
    if (!row || row.status === 'disabled') throw new AppError('setup_link_invalid');
    const user = await findUserById(trx, cipher, row.userId);
    assertPasswordAcceptable(input.password, { email: user?.email ?? '' });
    const passwordHash = await hashPassword(input.password);
    await trx
      .updateTable('users')
      .set({ password_hash: passwordHash, status: 'active', updated_at: new Date() })
      .where('id', '=', row.userId)
      .execute();
    await trx.updateTable('setup_tokens').set({ used_at: new Date() }).where('id', '=', row.tokenId).execute();
    await recordAuditEvent(trx, {
      action: 'user.setup_complete',
      outcome: 'success',
      actor: { type: 'user', id: row.userId },
      target: { type: 'user', id: row.userId },
      ...(input.sourceIp ? { sourceIp: input.sourceIp } : {}),
      ...(input.requestId ? { requestId: input.requestId } : {}),
    });
    return { userId: row.userId };
  });
}
