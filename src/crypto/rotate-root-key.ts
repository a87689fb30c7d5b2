import { recordAuditEvent } from '../audit/audit-event.ts';
import { createSigningKey } from '../audit/signing-key.ts';
import type { SystemDb } from '../db/system-db.ts';
import type { Logger } from '../logger.ts';
import { tenantKeyContext } from './keyring.ts';
import { verifyRootKey } from './root-key-check.ts';
import type { RootKeyProvider } from './root-keys/root-key-provider.ts';

/**
 * `ringvakt keys rotate-root`: makes a new root key version current (unless the provider rotates
 * outside Ringvakt, as `env` does) and rewraps every tenant key under it, tenant by tenant, each
 * in its own transaction — online: a key being rewrapped is unwrapped and wrapped again, its
 * material unchanged, so readers and writers carry on. Safe to run again after an interruption:
 * keys already under the current root key are skipped.
 */
export async function rotateRootKey(
  systemDb: SystemDb,
  provider: RootKeyProvider,
  logger: Logger,
  options: { rotateProvider: boolean },
): Promise<{ rootKeyId: string; rewrapped: number }> {
  if (options.rotateProvider) await provider.rotate();
  const current = provider.currentKeyId();
  await verifyRootKey(systemDb, provider); // stores the check value of the new version
  let rewrapped = 0;
  for (const tenant of await systemDb.listTenants()) {
    const count = await systemDb.inTenant(tenant.id).transaction(async (trx) => {
      const stale = await trx
        .selectFrom('tenant_keys')
        .select(['purpose', 'version', 'root_key_id', 'wrapped_key'])
        .where('root_key_id', '<>', current)
        .forUpdate()
        .execute();
      for (const key of stale) {
        const where = tenantKeyContext(tenant.id, key.purpose, key.version);
        const material = await provider.unwrap({ keyId: key.root_key_id, wrapped: key.wrapped_key }, where);
        const wrapped = await provider.wrap(material, where);
        material.fill(0);
        await trx
          .updateTable('tenant_keys')
          .set({ root_key_id: wrapped.keyId, wrapped_key: wrapped.wrapped })
          .where('purpose', '=', key.purpose)
          .where('version', '=', key.version)
          .execute();
      }
      if (stale.length > 0) {
        await recordAuditEvent(trx, {
          action: 'keys.rotate_root',
          outcome: 'success',
          actor: { type: 'operator' },
          details: { rootKeyId: current, rewrapped: stale.length },
        });
      }
      return stale.length;
    });
    rewrapped += count;
    if (count > 0) logger.info({ tenant: tenant.slug, rewrapped: count }, 'tenant keys rewrapped under the new root key');
  }
  // The audit signing key's private half is append-only and stays under the old root key: a new
  // signing key under the new one takes over, so the old root key can be retired.
  const [newestSigningKey] = await systemDb.auditSigningKeys();
  if (newestSigningKey && newestSigningKey.rootKeyId !== current) await createSigningKey(systemDb, provider);
  return { rootKeyId: current, rewrapped };
}
