import { describe, expect, it } from 'vitest';
import { columnOf, planColumns, rowToInput, type ColumnPlan } from './import-mapping.ts';

const headers = ['Kundenr', 'Navn', 'Mobil', 'Hjem', 'Jobb', 'Gate', 'By', 'Land', 'Segment'];
const plan = planColumns(headers, {
  Kundenr: 'externalId',
  Navn: 'name',
  Mobil: 'phone',
  Hjem: 'phone:home',
  Jobb: 'phone:work',
  Gate: 'address.line1',
  By: 'address.city',
  Land: 'address.country',
  Segment: 'field:segment',
}) as ColumnPlan;

describe('import column mapping', () => {
  it('turns a record into contact input, empty cells absent, phones in column order', () => {
    expect(rowToInput(['K1', ' Kari ', '', '22 33 44 55', '23 45 67 89', 'Storgata 1', 'Oslo', '', 'gold'], plan)).toEqual({
      externalId: 'K1',
      name: 'Kari',
      phones: [
        { kind: 'home', number: '22 33 44 55' },
        { kind: 'work', number: '23 45 67 89' },
      ],
      address: { line1: 'Storgata 1', city: 'Oslo' },
      fields: { segment: 'gold' },
    });
    // Nothing but empty cells: no phones, address or fields at all.
    expect(rowToInput(['K2', '', '', '', '', '', '', '', ''], plan)).toEqual({ externalId: 'K2' });
  });

  it('names the header of the column a problem is about, counting only the phones this record has', () => {
    const record = ['K1', 'Kari', '', '22 33 44 55', 'not a number', 'Storgata 1', 'Oslo', 'no', 'gold'];
    // phones[1] is the second phone with a value: Jobb, since Mobil is empty in this record.
    expect(columnOf(record, plan, 'phones[1]')).toBe('Jobb');
    expect(columnOf(record, plan, 'phones[0]')).toBe('Hjem');
    expect(columnOf(record, plan, 'phones[2]')).toBeNull();
    expect(columnOf(record, plan, 'name')).toBe('Navn');
    expect(columnOf(record, plan, 'address.country')).toBe('Land');
    expect(columnOf(record, plan, 'fields.segment')).toBe('Segment');
    // The address as a whole, or a part without a column of its own: the last address column with a value.
    expect(columnOf(['K1', '', '', '', '', 'Storgata 1', 'Oslo', '', ''], plan, 'address.country')).toBe('By');
    expect(columnOf(record, plan, 'email')).toBeNull();
  });
});
