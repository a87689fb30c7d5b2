import { describe, expect, it } from 'vitest';
import { auditActions } from './audit-event.ts';

describe('the audit action catalogue', () => {
  it('names every action as the ledger accepts it (a dotted lower-case name), each once', () => {
    // The same pattern as the CHECK on audit_events.action (migrations/0005_audit_ledger.sql): an action outside it fails at commit.
    for (const action of auditActions) expect(action, action).toMatch(/^[a-z][a-z_]*(\.[a-z][a-z_]*)+$/);
    expect(new Set(auditActions).size).toBe(auditActions.length);
  });
});
