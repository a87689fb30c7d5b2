import { describe, expect, it } from 'vitest';
import { createCredentialCache } from './credential-cache.ts';

type CachedCredential = { tenantId: string; userId: string; expiresAt: number };

function fakeListener() {
  const state = { up: true, onMessage: (payload: string): void => void payload, onDown: (): void => undefined };
  return {
    state,
    listener: {
      isUp: () => state.up,
      subscribe(_channel: string, onMessage: (payload: string) => void, onDown: () => void) {
        state.onMessage = onMessage;
        state.onDown = onDown;
      },
    },
  };
}

const credential = (tenantId: string, expiresAt = Date.now() + 3600_000): CachedCredential => ({
  tenantId,
  userId: 'u',
  expiresAt,
});

describe('credential cache', () => {
  it('serves a stored credential until its tenant is notified of a change', () => {
    const { state, listener } = fakeListener();
    const cache = createCredentialCache<CachedCredential>(listener);
    cache.set('h1', credential('A'), cache.stamp('A'));
    cache.set('h2', credential('B'), cache.stamp('B'));
    expect(cache.get('h1')?.tenantId).toBe('A');
    state.onMessage('A');
    expect(cache.get('h1')).toBeUndefined();
    expect(cache.get('h2')?.tenantId).toBe('B');
  });

  it('ignores an answer looked up before a revocation whose notification already arrived', () => {
    const { state, listener } = fakeListener();
    const cache = createCredentialCache<CachedCredential>(listener);
    const stamp = cache.stamp('A');
    state.onMessage('A'); // the revocation commits while the lookup is in flight
    cache.set('h1', credential('A'), stamp);
    expect(cache.get('h1')).toBeUndefined();
  });

  it('caches nothing and serves nothing while notifications are down, and forgets everything then', () => {
    const { state, listener } = fakeListener();
    const cache = createCredentialCache<CachedCredential>(listener);
    cache.set('h1', credential('A'), cache.stamp('A'));
    state.up = false;
    state.onDown();
    expect(cache.get('h1')).toBeUndefined();
    cache.set('h2', credential('A'), cache.stamp('A'));
    state.up = true;
    expect(cache.get('h1')).toBeUndefined();
    expect(cache.get('h2')).toBeUndefined();
  });

  it('never keeps an entry past 30 s or past the token expiry', () => {
    const { listener } = fakeListener();
    const cache = createCredentialCache<CachedCredential>(listener);
    const now = 1_000_000;
    cache.set('long', credential('A', now + 3600_000), cache.stamp('A'), now);
    cache.set('short', credential('A', now + 5_000), cache.stamp('A'), now);
    expect(cache.get('long', now + 29_999)).toBeDefined();
    expect(cache.get('long', now + 30_000)).toBeUndefined();
    expect(cache.get('short', now + 4_999)).toBeDefined();
    expect(cache.get('short', now + 5_000)).toBeUndefined();
  });
});
