import { describe, expect, it } from 'vitest';
import { uuidSchema } from '../../server/schemas.ts';
import { newContactId } from './contact-record.ts';

describe('new contact ids', () => {
  const ids = Array.from({ length: 2_000 }, () => newContactId());

  it('are version 7 UUIDs that every id parameter of the API accepts', () => {
    for (const id of ids) {
      expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      expect(uuidSchema.safeParse(id).success).toBe(true);
    }
    expect(new Set(ids).size).toBe(ids.length);
  });

  it('carry the millisecond they were made in their first 48 bits, so later ids sort after earlier ones', () => {
    const millisecond = (id: string) => Number.parseInt(id.replace(/-/g, '').slice(0, 12), 16);
    const before = Date.now();
    const id = newContactId();
    expect(millisecond(id)).toBeGreaterThanOrEqual(before);
    expect(millisecond(id)).toBeLessThanOrEqual(Date.now());
    for (let at = 1; at < ids.length; at += 1) expect(millisecond(ids[at]!)).toBeGreaterThanOrEqual(millisecond(ids[at - 1]!));
  });

  it('are not counted up within a millisecond: no id follows from the one made before it', () => {
    // The 74 bits after the time, version and variant; a per-millisecond counter (RFC 9562's
    // method 1) would step their top 32 bits by one from each id to the next.
    const counter = (id: string) => {
      const hex = id.replace(/-/g, '');
      const bits = (BigInt(`0x${hex.slice(13, 16)}`) << 62n) | (BigInt(`0x${hex.slice(16, 32)}`) & ((1n << 62n) - 1n));
      return bits >> 42n;
    };
    let sameMillisecond = 0;
    let stepsOfOne = 0;
    for (let at = 1; at < ids.length; at += 1) {
      if (ids[at]!.slice(0, 13) !== ids[at - 1]!.slice(0, 13)) continue;
      sameMillisecond += 1;
      if (counter(ids[at]!) - counter(ids[at - 1]!) === 1n) stepsOfOne += 1;
    }
    expect(sameMillisecond).toBeGreaterThan(100);
    expect(stepsOfOne).toBe(0);
  });
});
