import { describe, expect, it } from 'vitest';
import { packRows, unpackRows } from './packed-rows.ts';

describe('a batch of rows packed for a sealing thread', () => {
  it('unpacks every row as it was, in order, whatever its cells hold', () => {
    const rows = [
      { rowNumber: 2, record: ['K1', 'Kari Nordmann', '41234567', ''] },
      { rowNumber: 4, record: ['', '😀😀😀-03', 'a"b,c\nd\u0001e', 'æøå'] },
      { rowNumber: 5, record: ['only one cell'] },
      { rowNumber: 6, record: [] },
    ];
    const unpacked = unpackRows(packRows(rows));
    expect(unpacked.count).toBe(4);
    expect(Array.from({ length: unpacked.count }, () => unpacked.next())).toEqual(rows);
    expect(() => unpacked.next()).toThrow(RangeError);
  });
});
