import { describe, expect, it } from 'vitest';
import { capturingLogger } from './support/app.ts';
import { assertNoPersonalDataLeaked, registerPersonalData } from './support/canary.ts';

// The canary itself: it must see lines logged after a logger was made, and problem bodies.
describe('the personal-data canary', () => {
  it('fails on a registered value logged after the logger was created, and only then', () => {
    const capture = capturingLogger('info');
    registerPersonalData('self.test@canary.example');
    expect(() => assertNoPersonalDataLeaked()).not.toThrow();
    capture.logger.info({ user: 'someone else' }, 'harmless');
    expect(() => assertNoPersonalDataLeaked()).not.toThrow();
    capture.logger.info({ email: 'Self.Test@Canary.example' }, 'a leak');
    expect(() => assertNoPersonalDataLeaked()).toThrow(/Personal data \(self\.test@canary\.example\) reached a log line/);
    capture.lines.length = 0; // this file's deliberate leak must not fail its own teardown
  });
});
