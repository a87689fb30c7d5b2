import { describe, expect, it } from 'vitest';
import { timeZonesOfNumber } from './phone.ts';

describe('time zones of a number', () => {
  it('takes the longest known prefix: a New York number is in New York, not in every zone of +1', () => {
    expect(timeZonesOfNumber('+12125550123')).toEqual(['America/New_York']);
    expect(timeZonesOfNumber('+16502530000')).toEqual(['America/Los_Angeles']);
    expect(timeZonesOfNumber('+4791234567')).toEqual(['Europe/Oslo']);
  });

  it('names every zone a number may be in, and none for a code no plan uses', () => {
    expect(timeZonesOfNumber('+358401234567')).toEqual(['Europe/Helsinki', 'Europe/Mariehamn']);
    expect(timeZonesOfNumber('+1').length).toBeGreaterThan(30);
    expect(timeZonesOfNumber('+999')).toEqual([]);
  });

  it('gives each caller a list of its own', () => {
    const first = timeZonesOfNumber('+4791234567');
    first.push('Mars/Olympus');
    expect(timeZonesOfNumber('+4791234567')).toEqual(['Europe/Oslo']);
  });
});
