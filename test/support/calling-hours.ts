/**
 * How far to shift the telephony simulator's clock (`RINGVAKT_SIMULATOR_SHIFT_MS`) so that it
 * stands at the next weekday 10:00 UTC (10 or 11 in London): calls obey calling hours wherever
 * and whenever a test or benchmark runs.
 */
export function shiftIntoCallingHours(now = Date.now()): number {
  for (let days = 0; days < 8; days += 1) {
    const day = new Date(now + days * 86_400_000);
    const date = day.toISOString().slice(0, 10);
    const target = Date.parse(`${date}T10:00:00Z`);
    const weekday = new Date(target).getUTCDay();
    if (target > now && weekday >= 1 && weekday <= 5) return target - now;
  }
  throw new Error('no weekday ahead');
}
