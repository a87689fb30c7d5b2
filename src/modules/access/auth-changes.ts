import { onCommit, type TenantTransaction } from '../../db/tenant-db.ts';

/**
 * Credentials this process has just ended or changed (a session rotated or revoked, a user
 * disabled, a token revoked, a policy changed) leave this process's caches at the commit itself,
 * not a notification round trip later: the next request on this node can never see the old
 * answer. Other nodes learn it from the database notification (credential-cache.ts).
 */
const listeners = new Set<(tenantId: string) => void>();

export function onLocalAuthChange(listener: (tenantId: string) => void): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

/** Call inside the tenant transaction that makes the change. */
export function announceAuthChange(trx: TenantTransaction): void {
  const tenantId = trx.tenantId;
  onCommit(trx, () => {
    for (const listener of listeners) listener(tenantId);
  });
}
