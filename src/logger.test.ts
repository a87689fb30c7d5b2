import { describe, expect, it } from 'vitest';
import { safeError } from './logger.ts';

describe('log hygiene', () => {
  it('keeps the SQLSTATE and constraint of a database error but never its message or detail', () => {
    const databaseError = Object.assign(new Error('duplicate key value violates unique constraint "users_tenant_id_email_key"'), {
      severity: 'ERROR',
      code: '23505',
      detail: 'Key (tenant_id, email)=(…, kari.nordmann@example.no) already exists.',
      constraint: 'users_tenant_id_email_key',
      table: 'users',
    });
    const logged = JSON.stringify(safeError(databaseError));
    expect(logged).toContain('23505');
    expect(logged).toContain('users_tenant_id_email_key');
    expect(logged).not.toContain('kari.nordmann');
    expect(logged).not.toContain('duplicate key value');
  });
});
