import type { ChangeListener } from '../../db/change-listener.ts';
import { onLocalAuthChange } from './auth-changes.ts';

/**
 * Verified credentials (API tokens and sessions), kept in memory for at most 30 s so a request does not pay a database round
 * trip to authenticate. Safe because it never outlives the truth:
 * - database triggers NOTIFY `ringvakt_auth` with the tenant id whenever a token or user changes
 *   (revoked, expired early, deleted, disabled, role changed), and every process then drops that
 *   tenant's entries — across nodes, at commit;
 * - while the notification connection is down, nothing is cached or served from the cache, and
 *   everything cached before is dropped when it comes back (notifications may have been missed);
 * - a lookup that read the database before a revocation committed cannot store its answer after
 *   the revocation's notification arrived (the `stamp` check);
 * - an entry never outlives its token's own expiry.
 * Keys are SHA-256 digests of tokens, never the tokens.
 */
export type Cacheable = { tenantId: string; expiresAt: number };

export type CredentialCache<T extends Cacheable> = {
  get(hashHex: string, now?: number): T | undefined;
  /** Taken before the database lookup and handed to `set`, which ignores a stale answer. */
  stamp(tenantId: string): number;
  set(hashHex: string, credential: T, stamp: number, now?: number): void;
  /** Forgets one entry (a cached answer found too old to trust). */
  delete(hashHex: string): void;
  size(): number;
};

export const AUTH_CHANNEL = 'ringvakt_auth';
const MAX_AGE_MS = 30_000;
const MAX_ENTRIES = 10_000;

export function createCredentialCache<T extends Cacheable>(listener: Pick<ChangeListener, 'isUp' | 'subscribe'>): CredentialCache<T> {
  // The value itself is kept (callers may note use on it); `until` caps its age.
  const entries = new Map<string, { value: T; until: number }>();
  let counter = 0;
  let lastClear = 0;
  const lastTenantDrop = new Map<string, number>();

  const clearAll = () => {
    counter += 1;
    lastClear = counter;
    lastTenantDrop.clear();
    entries.clear();
  };
  const dropTenant = (tenantId: string) => {
    counter += 1;
    lastTenantDrop.set(tenantId, counter);
    for (const [key, entry] of entries) if (entry.value.tenantId === tenantId) entries.delete(key);
  };
  const stamp = (tenantId: string) => Math.max(lastClear, lastTenantDrop.get(tenantId) ?? 0);
  listener.subscribe(AUTH_CHANNEL, dropTenant, clearAll);
  onLocalAuthChange(dropTenant);

  return {
    get(hashHex, now = Date.now()) {
      if (!listener.isUp()) return undefined;
      const entry = entries.get(hashHex);
      if (entry && entry.until > now) return entry.value;
      entries.delete(hashHex);
      return undefined;
    },
    stamp,
    set(hashHex, credential, startedUnder, now = Date.now()) {
      if (!listener.isUp() || stamp(credential.tenantId) !== startedUnder) return;
      entries.delete(hashHex);
      entries.set(hashHex, { value: credential, until: Math.min(credential.expiresAt, now + MAX_AGE_MS) });
      if (entries.size > MAX_ENTRIES) {
        const oldest = entries.keys().next().value;
        if (oldest !== undefined) entries.delete(oldest);
      }
    },
    delete: (hashHex) => void entries.delete(hashHex),
    size: () => entries.size,
  };
}
