/**
 * Callee-local calling windows (US TSR 08:00–21:00, campaign hours …), checked at dial time in
 * every time zone the callee may be in: a number whose zone is uncertain (a mobile number, a
 * country with several zones) may be called only when the window is open in all of them.
 * Local time comes from the IANA database through Intl, so daylight-saving changes move the
 * window with the callee's clock.
 */

/** A daily window in local time, `HH:MM`–`HH:MM` (end exclusive), on some weekdays (0 = Sunday). */
export type CallingWindow = { start: string; end: string; days?: readonly number[] };

const HH_MM = /^([01]\d|2[0-3]):([0-5]\d)$/;

function minutesOf(clock: string): number {
  const match = HH_MM.exec(clock);
  if (!match) throw new RangeError(`not a time of day (HH:MM): ${clock}`);
  return Number(match[1]) * 60 + Number(match[2]);
}

/** A window that can never open is a setting error, refused when the campaign is saved. */
export function validateWindow(window: CallingWindow): void {
  if (minutesOf(window.start) >= minutesOf(window.end)) throw new RangeError('a calling window must end after it starts (same day)');
  if (window.days !== undefined && (window.days.length === 0 || window.days.some((day) => !Number.isInteger(day) || day < 0 || day > 6))) {
    throw new RangeError('calling-window days are 0 (Sunday) to 6, at least one');
  }
}

const formatters = new Map<string, Intl.DateTimeFormat>();
const WEEKDAYS: Record<string, number> = { Sun: 0, Mon: 1, Tue: 2, Wed: 3, Thu: 4, Fri: 5, Sat: 6 };

/** Minutes since local midnight and the local weekday at `at` in `zone`. */
export function localClock(at: Date, zone: string): { minutes: number; weekday: number } {
  let format = formatters.get(zone);
  if (!format) {
    format = new Intl.DateTimeFormat('en-US', { timeZone: zone, hourCycle: 'h23', hour: '2-digit', minute: '2-digit', weekday: 'short' });
    formatters.set(zone, format);
  }
  const parts = Object.fromEntries(format.formatToParts(at).map((part) => [part.type, part.value]));
  return { minutes: Number(parts.hour) * 60 + Number(parts.minute), weekday: WEEKDAYS[parts.weekday ?? ''] ?? -1 };
}

/**
 * A rule the callee's local time must satisfy: one window, or a set of windows of which any one
 * will do (weekday hours and Saturday hours). Every rule must hold at once (legal hours and
 * campaign hours).
 */
export type WindowRule = CallingWindow | readonly CallingWindow[];

function opensAt(rule: WindowRule, minutes: number, weekday: number): boolean {
  const windows: readonly CallingWindow[] = Array.isArray(rule) ? rule : [rule as CallingWindow];
  return windows.some((window) => (window.days === undefined || window.days.includes(weekday)) && minutes >= minutesOf(window.start) && minutes < minutesOf(window.end));
}

/** Whether every rule holds at `at` in every one of the callee's zones (no zone: never). */
export function isCallable(at: Date, zones: readonly string[], rules: readonly WindowRule[]): boolean {
  if (zones.length === 0) return false;
  return zones.every((zone) => {
    const { minutes, weekday } = localClock(at, zone);
    return rules.every((rule) => opensAt(rule, minutes, weekday));
  });
}

/**
 * Whether the rules ever hold together in a local week: the test a campaign's settings must pass
 * before it is saved (legal hours 08–21 and campaign hours 06–08 never meet).
 */
export function everOpens(rules: readonly WindowRule[]): boolean {
  for (let weekday = 0; weekday < 7; weekday += 1) {
    for (let minutes = 0; minutes < 24 * 60; minutes += 1) {
      if (rules.every((rule) => opensAt(rule, minutes, weekday))) return true;
    }
  }
  return false;
}

/**
 * The first minute from `at` on at which the callee may be called, within `withinDays`; undefined
 * if the windows never open together in that time (the retry is then dropped, not looped).
 */
export function nextCallable(at: Date, zones: readonly string[], rules: readonly WindowRule[], withinDays = 8): Date | undefined {
  const first = Math.ceil(at.getTime() / 60_000) * 60_000;
  for (let minute = 0; minute <= withinDays * 24 * 60; minute += 1) {
    const candidate = new Date(first + minute * 60_000);
    if (isCallable(candidate, zones, rules)) return candidate;
  }
  return undefined;
}
