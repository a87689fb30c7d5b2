import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { open } from './aead.ts';
import { encryptForSubjectKey } from './field-cipher.ts';

describe('field ciphertext', () => {
  it('binds a field to the associated data it always had, byte for byte (ciphertexts stored before still open)', () => {
    // The associated data of a contact's phone under a subject key, as the format has encoded it
    // from the start: label, tenant, table, record, field (each length-prefixed), then the header.
    const expected = Buffer.from(
      '72696e6776616b742f6669656c642f763100000c74656e616e742dc398e282ac0008636f6e7461637473002430313930663661322d316232632d376433652d386634302d313233343536373839616263000770686f6e652e305256010200000000',
      'hex',
    );
    const key = randomBytes(32);
    const where = { table: 'contacts', recordId: '0190f6a2-1b2c-7d3e-8f40-123456789abc', field: 'phone.0' };
    // Twice: the second call takes the tenant's and table's encoded start from the cache.
    for (let round = 0; round < 2; round += 1) {
      const sealed = encryptForSubjectKey('tenant-Ø€', where, '+4741000001', key);
      expect(sealed.subarray(0, 8).toString('hex')).toBe('5256010200000000');
      expect(open(key, sealed, expected, 8).toString('utf8')).toBe('+4741000001');
      expect(() => open(key, sealed, Buffer.concat([expected, Buffer.from([0])]), 8)).toThrow();
    }
  });
});
