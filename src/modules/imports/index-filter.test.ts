import { describe, expect, it } from 'vitest';
import { IndexFilter } from './index-filter.ts';

/** The epochs a lookup trusts when both parts of the filter are in use. */
const inUse = { contacts: 0, suppressions: 0 };
const number = (index: number) => `+4741${String(index).padStart(6, '0')}`;

describe('the import index filter', () => {
  it("holds every value of the import's own, whatever index it falls on", () => {
    const filter = new IndexFilter(100_000);
    for (let index = 0; index < 100_000; index += 1) filter.addOwn(number(index));
    filter.addOwn('kari@example.no');
    let missed = 0;
    for (let index = 0; index < 100_000; index += 1) if (!filter.mayHoldContact('phone', index, number(index), inUse)) missed += 1;
    expect(missed).toBe(0);
    expect(filter.mayHoldContact('email', 0, 'kari@example.no', inUse)).toBe(true);
  });

  it('holds few of the values the import never had, when no index of them was loaded', () => {
    const filter = new IndexFilter(100_000);
    for (let index = 0; index < 100_000; index += 1) filter.addOwn(number(index));
    // Numbers next to the import's own (asked under any index key: none was loaded).
    let held = 0;
    for (let index = 0; index < 100_000; index += 1) if (filter.mayHoldContact('phone', index, number(100_000 + index), inUse)) held += 1;
    // About 0.5 % false positives when the filter holds as many values as it was sized for.
    expect(held).toBeLessThan(1_000);
    expect(filter.mayHoldContact('email', 0, 'ola@example.no', inUse)).toBe(false);
  });

  it('holds every value while a part is out of use, and never a do-not-call entry it was not given', () => {
    const filter = new IndexFilter();
    expect(filter.mayHoldContact('phone', 1, number(1), { contacts: null, suppressions: 0 })).toBe(true);
    expect(filter.mayHoldSuppression(1, { contacts: 0, suppressions: null })).toBe(true);
    expect(filter.mayHoldSuppression(1, inUse)).toBe(false);
    // The import's own values are contacts, not do-not-call entries.
    filter.addOwn(number(1));
    expect(filter.mayHoldSuppression(1, inUse)).toBe(false);
  });
});
