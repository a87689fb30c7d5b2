import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ACCOUNT_LIMITS, afterFailure, afterSuccess, isLocked, sourceNetwork, type ThrottleState } from './throttle.ts';

const HOUR = 3600_000;

/** Plays attempts at the given moments through the throttle as login does; counts checked failures per window. */
function play(offsets: number[], successes: Set<number>): { checkedInAnyHour: number; delaysGrew: boolean } {
  let state: ThrottleState | undefined;
  const checked: number[] = [];
  let lastDelay = 0;
  let delaysGrew = true;
  offsets.forEach((offset, index) => {
    const now = new Date(offset);
    if (isLocked(state, now)) return; // refused without checking a password
    state = afterFailure(state, now, ACCOUNT_LIMITS);
    if (successes.has(index)) {
      state = afterSuccess(state);
      return;
    }
    checked.push(offset);
    if (state.lockedUntil && state.failures < ACCOUNT_LIMITS.perHour) {
      const delay = state.lockedUntil.getTime() - offset;
      if (state.consecutive > ACCOUNT_LIMITS.freeFailures && delay < lastDelay && lastDelay < ACCOUNT_LIMITS.maxDelayMs) delaysGrew = false;
      lastDelay = delay;
    } else if (!state.lockedUntil) {
      lastDelay = 0;
    }
  });
  let most = 0;
  for (const start of checked) most = Math.max(most, checked.filter((time) => time >= start && time < start + HOUR).length);
  return { checkedInAnyHour: most, delaysGrew };
}

describe('login throttle', () => {
  it('never checks more than 100 failed passwords per account in any hour, however the attempts come', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 3 * HOUR }), { minLength: 1, maxLength: 2_000 }), (raw) => {
        const offsets = [...raw].sort((x, y) => x - y);
        // Over any rolling hour, not only the throttle's own windows.
        const { checkedInAnyHour } = play(offsets, new Set());
        return checkedInAnyHour <= ACCOUNT_LIMITS.perHour;
      }),
      { numRuns: 200 },
    );
    // A steady attack, one attempt a second for three hours: at most 100 checked in any rolling hour window.
    const steady = Array.from({ length: 3 * 3600 }, (_, index) => index * 1000);
    expect(play(steady, new Set()).checkedInAnyHour).toBeLessThanOrEqual(ACCOUNT_LIMITS.perHour);
    // A burst of 10,000 in one second: the first five are checked, the rest refused.
    const burst = Array.from({ length: 10_000 }, (_, index) => index / 10);
    expect(play(burst, new Set()).checkedInAnyHour).toBe(ACCOUNT_LIMITS.freeFailures);
  });

  it('grows the delay with consecutive failures, and a success clears it', () => {
    let state: ThrottleState | undefined;
    const delays: number[] = [];
    let now = 0;
    for (let attempt = 0; attempt < 12; attempt += 1) {
      state = afterFailure(state, new Date(now), ACCOUNT_LIMITS);
      delays.push(state.lockedUntil ? state.lockedUntil.getTime() - now : 0);
      now = state.lockedUntil ? state.lockedUntil.getTime() : now + 1;
    }
    expect(delays.slice(0, 4)).toEqual([0, 0, 0, 0]);
    expect(delays.slice(4, 9)).toEqual([1_000, 2_000, 4_000, 8_000, 16_000]);
    expect(delays.every((delay, index) => index === 0 || delay >= delays[index - 1]!)).toBe(true);
    const cleared = afterSuccess(state!);
    expect(cleared).toMatchObject({ consecutive: 0, lockedUntil: null });
    expect(play([0, 1, 2, 3, 4, 5, 6], new Set([3])).delaysGrew).toBe(true);
  });

  it('counts IPv4 addresses alone and IPv6 by /56, IPv4-mapped IPv6 as IPv4', () => {
    expect(sourceNetwork('192.0.2.7')).toBe('192.0.2.7/32');
    expect(sourceNetwork('::ffff:192.0.2.7')).toBe('192.0.2.7/32');
    expect(sourceNetwork('2001:db8:1:2:aaaa:bbbb:cccc:dddd')).toBe('2001:db8:1::/56');
    // Every /64 of one subscriber's /56 shares a budget; the next /56 has its own.
    expect(sourceNetwork('2001:db8:1:ff::1')).toBe(sourceNetwork('2001:db8:1:2:ffff::9'));
    expect(sourceNetwork('2001:db8:1:100::1')).not.toBe(sourceNetwork('2001:db8:1:2::1'));
  });
});
