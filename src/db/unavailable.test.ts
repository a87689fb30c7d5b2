import { describe, expect, it } from 'vitest';
import { isDatabaseUnavailable } from './unavailable.ts';

const withCode = (code: string, extra: Record<string, unknown> = {}) => Object.assign(new Error('x'), { code, ...extra });

describe('a database that is away, told from a statement that failed', () => {
  it('counts restarts, crashes, refused and dropped connections and a name server that did not answer', () => {
    for (const error of [
      withCode('57P01'), // admin shutdown
      withCode('57P02'), // crash of another backend
      withCode('57P03'), // starting up
      withCode('08006'), // connection failure
      withCode('ECONNREFUSED', { syscall: 'connect' }),
      withCode('ECONNRESET', { syscall: 'read' }),
      withCode('ENOENT', { syscall: 'connect' }), // the embedded server's socket file, while it is down
      withCode('EAI_AGAIN', { syscall: 'getaddrinfo' }),
      new Error('Connection terminated unexpectedly'),
      // Every address of the host refused, as Node reports it.
      Object.assign(new AggregateError([withCode('ECONNREFUSED', { syscall: 'connect' }), withCode('ECONNREFUSED', { syscall: 'connect' })], ''), { code: 'ECONNREFUSED' }),
    ]) {
      expect(isDatabaseUnavailable(error), String((error as { code?: string }).code ?? error.message)).toBe(true);
    }
  });

  it('does not count what fails the same way every time', () => {
    for (const error of [
      withCode('08P01'), // protocol violation: a malformed message
      withCode('42601'), // syntax
      withCode('23505'), // unique violation
      withCode('ENOENT', { syscall: 'open' }), // a file, not the database
      withCode('ENOTFOUND', { syscall: 'getaddrinfo' }),
      new AggregateError([withCode('ECONNREFUSED', { syscall: 'connect' }), withCode('42601')], ''),
      new AggregateError([], ''),
      new Error('something else'),
    ]) {
      expect(isDatabaseUnavailable(error), String((error as { code?: string }).code ?? error.message)).toBe(false);
    }
  });
});
