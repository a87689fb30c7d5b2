import { permissions } from '../../src/modules/access/permissions.ts';
import type { UserRole } from '../../src/db/schema.ts';
import type { DatabaseHandles } from '../../src/db/database.ts';
import { issueApiToken } from '../../src/modules/api-tokens/api-tokens.service.ts';
import { createTenantWithOwner } from '../../src/modules/setup/setup.service.ts';
import { createUser } from '../../src/modules/users/users.repo.ts';
import { registerPersonalData } from './canary.ts';

export type SeededUser = { id: string; email: string; token: string };
export type SeededTenant = { tenantId: string; slug: string; owner: SeededUser; agent: SeededUser; setupLink: string };

/** A tenant with an active owner and an active agent, each with an API token. */
export async function seedTenant(handles: DatabaseHandles, slug: string): Promise<SeededTenant> {
  const created = await createTenantWithOwner(handles, {
    slug,
    name: `Tenant ${slug}`,
    ownerEmail: `owner@${slug}.example`,
    ownerName: `Owner of ${slug}`,
    publicUrl: 'http://127.0.0.1:8080',
  });
  const tenantDb = handles.forTenant(created.tenantId);
  const { cipher } = await handles.crypto();
  const expiresAt = new Date(Date.now() + 3600_000);
  const makeActive = async (userId: string, role: UserRole, email: string): Promise<SeededUser> =>
    tenantDb.transaction(async (trx) => {
      await trx.updateTable('users').set({ status: 'active' }).where('id', '=', userId).execute();
      const { token } = await issueApiToken(trx, created.tenantId, { userId, name: `${role} token`, expiresAt, scopes: permissions });
      return { id: userId, email, token };
    });
  const owner = await makeActive(created.ownerId, 'owner', `owner@${slug}.example`);
  const agentRow = await tenantDb.transaction((trx) =>
    createUser(trx, cipher, { email: `agent@${slug}.example`, displayName: `Agent of ${slug}`, role: 'agent' }),
  );
  const agent = await makeActive(agentRow.id, 'agent', agentRow.email);
  registerPersonalData(owner.email, agent.email, `Owner of ${slug}`, `Agent of ${slug}`);
  return { tenantId: created.tenantId, slug, owner, agent, setupLink: created.link };
}
