import { describe, expect, it } from 'vitest';
import { everOpens, isCallable, localClock, nextCallable, validateWindow } from './calling-window.ts';

const TSR = { start: '08:00', end: '21:00' };

describe('callee-local calling windows', () => {
  it('follows the callee across daylight-saving changes (New York, 8 March 2026)', () => {
    // 12:30 UTC is 07:30 EST the day before the change, 08:30 EDT on the day itself.
    expect(isCallable(new Date('2026-03-07T12:30:00Z'), ['America/New_York'], [TSR])).toBe(false);
    expect(isCallable(new Date('2026-03-08T12:30:00Z'), ['America/New_York'], [TSR])).toBe(true);
    // 01:30 UTC is 20:30 EST on 7 March (open) and 21:30 EDT on 8 March evening (closed).
    expect(isCallable(new Date('2026-03-08T01:30:00Z'), ['America/New_York'], [TSR])).toBe(true);
    expect(isCallable(new Date('2026-03-09T01:30:00Z'), ['America/New_York'], [TSR])).toBe(false);
  });

  it('follows the callee across the European changes (Oslo, 29 March and 25 October 2026)', () => {
    expect(localClock(new Date('2026-03-29T06:30:00Z'), 'Europe/Oslo')).toEqual({ minutes: 8 * 60 + 30, weekday: 0 });
    expect(isCallable(new Date('2026-03-28T06:30:00Z'), ['Europe/Oslo'], [TSR])).toBe(false); // 07:30 CET
    expect(isCallable(new Date('2026-03-29T06:30:00Z'), ['Europe/Oslo'], [TSR])).toBe(true); // 08:30 CEST
    expect(isCallable(new Date('2026-10-24T19:30:00Z'), ['Europe/Oslo'], [TSR])).toBe(false); // 21:30 CEST
    expect(isCallable(new Date('2026-10-25T19:30:00Z'), ['Europe/Oslo'], [TSR])).toBe(true); // 20:30 CET
  });

  it('calls a callee of uncertain zone only when the window is open in every zone', () => {
    // 13:30 UTC on a summer weekday: 09:30 in New York, 06:30 in Los Angeles.
    const at = new Date('2026-06-10T13:30:00Z');
    expect(isCallable(at, ['America/New_York'], [TSR])).toBe(true);
    expect(isCallable(at, ['America/New_York', 'America/Los_Angeles'], [TSR])).toBe(false);
    expect(nextCallable(at, ['America/New_York', 'America/Los_Angeles'], [TSR])?.toISOString()).toBe('2026-06-10T15:00:00.000Z');
    // No zone known: never called.
    expect(isCallable(at, [], [TSR])).toBe(false);
  });

  it('applies campaign hours and weekdays on top of the legal window', () => {
    const weekdays = { start: '09:00', end: '17:00', days: [1, 2, 3, 4, 5] };
    // Saturday 13 June 2026, 12:00 in Oslo: legal, but not a campaign day; the next is Monday 09:00.
    const saturday = new Date('2026-06-13T10:00:00Z');
    expect(isCallable(saturday, ['Europe/Oslo'], [TSR, weekdays])).toBe(false);
    expect(nextCallable(saturday, ['Europe/Oslo'], [TSR, weekdays])?.toISOString()).toBe('2026-06-15T07:00:00.000Z');
  });

  it('refuses windows that can never open, and finds no time for windows that never meet', () => {
    expect(() => validateWindow({ start: '21:00', end: '08:00' })).toThrow(RangeError);
    expect(() => validateWindow({ start: '08:00', end: '08:00' })).toThrow(RangeError);
    expect(() => validateWindow({ start: '8:00', end: '21:00' })).toThrow(RangeError);
    expect(() => validateWindow({ start: '08:00', end: '21:00', days: [] })).toThrow(RangeError);
    expect(() => validateWindow({ start: '08:00', end: '21:00', days: [7] })).toThrow(RangeError);
    expect(() => validateWindow(TSR)).not.toThrow();
    // Open 08–09 and 20–21: never both at once.
    expect(nextCallable(new Date('2026-06-10T00:00:00Z'), ['Europe/Oslo'], [{ start: '08:00', end: '09:00' }, { start: '20:00', end: '21:00' }], 2)).toBeUndefined();
  });

  it('treats a set of windows as alternatives (weekday or Saturday hours), every rule at once', () => {
    const nordic = [{ start: '09:00', end: '20:00', days: [1, 2, 3, 4, 5] }, { start: '10:00', end: '16:00', days: [6] }];
    // Saturday 13 June 2026: 11:00 in Oslo is inside the Saturday hours, 17:00 is not.
    expect(isCallable(new Date('2026-06-13T09:00:00Z'), ['Europe/Oslo'], [nordic])).toBe(true);
    expect(isCallable(new Date('2026-06-13T15:00:00Z'), ['Europe/Oslo'], [nordic])).toBe(false);
    // Sunday: neither.
    expect(isCallable(new Date('2026-06-14T09:00:00Z'), ['Europe/Oslo'], [nordic])).toBe(false);
    expect(everOpens([nordic, TSR])).toBe(true);
    expect(everOpens([TSR, { start: '06:00', end: '08:00' }])).toBe(false);
    expect(everOpens([nordic, { start: '09:00', end: '17:00', days: [0] }])).toBe(false);
  });
});
