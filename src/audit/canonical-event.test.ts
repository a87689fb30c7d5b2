import { describe, expect, it } from 'vitest';
import { isoTimeFromPostgres } from './canonical-event.ts';

describe('event times read back from PostgreSQL', () => {
  it('are written as Date.toISOString writes them, trailing zeros restored', () => {
    for (const iso of ['2026-09-21T12:26:40.123Z', '2026-09-21T12:26:40.120Z', '2026-09-21T12:26:40.100Z', '2026-09-21T12:26:40.000Z', '1999-01-01T00:00:00.001Z']) {
      // PostgreSQL (DateStyle ISO, TimeZone UTC) drops the fraction's trailing zeros.
      const postgres = `${iso.slice(0, 10)} ${iso.slice(11, 19)}${iso.slice(19, 23).replace(/\.?0+$/, '')}+00`;
      expect(isoTimeFromPostgres(postgres), postgres).toBe(new Date(iso).toISOString());
    }
  });

  it('come back unchanged (and so never match an event) when finer than a millisecond or in another form', () => {
    for (const text of ['2026-09-21 12:26:40.123456+00', '2026-09-21 12:26:40.1234+00', '2026-09-21 14:26:40.123+02', '09/21/2026 12:26:40.123 UTC', '']) {
      expect(isoTimeFromPostgres(text)).toBe(text);
    }
  });
});
