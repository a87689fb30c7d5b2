import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { context, contextPrefix, contextWithSuffix, extendContext, open, seal, DecryptionError, NONCE_BYTES } from './aead.ts';

describe('AES-256-GCM helpers', () => {
  it('never hands out the same nonce twice, across pool refills', () => {
    const key = randomBytes(32);
    const seen = new Set<string>();
    for (let index = 0; index < 5_000; index += 1) {
      seen.add(seal(key, Buffer.from('x'), Buffer.alloc(0)).subarray(0, NONCE_BYTES).toString('hex'));
    }
    expect(seen.size).toBe(5_000);
  });

  it('a prefix is carried in clear and the rest opens from its offset', () => {
    const key = randomBytes(32);
    const prefix = Buffer.from('HEADER!!');
    const sealed = seal(key, Buffer.from('value'), Buffer.from('aad'), prefix);
    expect(sealed.subarray(0, 8)).toEqual(prefix);
    expect(open(key, sealed, Buffer.from('aad'), 8).toString()).toBe('value');
    expect(() => open(key, sealed, Buffer.from('other'), 8)).toThrow(DecryptionError);
  });

  it('seals text as exactly the bytes of its UTF-8 encoding (property-based, lone surrogates included)', () => {
    const key = randomBytes(32);
    const aad = Buffer.from('aad');
    const check = (text: string) => {
      expect(open(key, seal(key, text, aad), aad)).toEqual(Buffer.from(text, 'utf8'));
    };
    for (const text of ['', 'Åse Ødegård', '\ud800 alone', 'emoji \u{1f4de}']) check(text);
    fc.assert(fc.property(fc.string({ unit: 'binary' }), check));
  });

  it('encodes contexts unambiguously (property-based)', () => {
    fc.assert(
      fc.property(fc.array(fc.string(), { maxLength: 4 }), fc.array(fc.string(), { maxLength: 4 }), (left, right) => {
        const same = left.length === right.length && left.every((part, index) => part === right[index]);
        expect(context('label', ...left).equals(context('label', ...right))).toBe(same);
      }),
    );
  });
  it('builds a context from a shared prefix exactly as in one piece (property-based)', () => {
    fc.assert(
      fc.property(fc.string(), fc.array(fc.string(), { maxLength: 3 }), fc.array(fc.string(), { maxLength: 3 }), fc.uint8Array({ maxLength: 12 }), (label, first, rest, suffix) => {
        const whole = contextWithSuffix(Buffer.from(suffix), label, ...first, ...rest);
        expect(extendContext(contextPrefix(label, ...first), Buffer.from(suffix), ...rest).equals(whole)).toBe(true);
      }),
    );
  });
});
