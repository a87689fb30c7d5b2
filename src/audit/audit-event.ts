import { CompiledQuery } from '../db/kysely.ts';
import { deferWrite, onCommit, type TenantDb, type TenantTransaction } from '../db/tenant-db.ts';
import { auditEvents } from '../operations/telemetry.ts';
import { canonicalEventText, type StoredAuditEvent } from './canonical-event.ts';
import { leafHashOfText } from './merkle.ts';

/**
 * The typed catalogue of audited actions. Add to it; never reuse a name for another meaning.
 * Details carry identifiers and digests, never personal data.
 */
export const auditActions = [
  'tenant.create',
  'user.create',
  'user.setup_complete',
  'api_token.issue',
  'api_token.revoke',
  'auth.denied',
  'subject.erase',
  'keys.rotate_root',
  'keys.rotate_tenant',
  'audit.export',
  'audit.verify',
  'audit.search',
  'call.hangup',
  'call.preview_dial',
  'call.preview_skip',
  'call.preview_cancel',
  'audit.retention',
  'auth.login',
  'auth.logout',
  'auth.lockout',
  'auth.mfa_verify',
  'auth.mfa_enroll',
  'auth.mfa_remove',
  'auth.recovery_codes_replace',
  'auth.reauthenticate',
  'session.revoke',
  'user.invite',
  'user.update',
  'user.disable',
  'user.enable',
  'role.create',
  'role.update',
  'role.delete',
  'security_policy.update',
  'contact.create',
  'contact.update',
  'contact.status',
  'contact.erase',
  'contact.reveal',
  'contact.lookup',
  'contact.consent',
  'contact_field.create',
  'contact_list.create',
  'contact_list.update',
  'contact_list.delete',
  'contact_list.members',
  'contact_list.export',
  'campaign.create',
  'campaign.update',
  'campaign.start',
  'campaign.pause',
  'campaign.dialer_takeover',
  'call.compliance',
  'call.disposition',
  'agent.state',
  'agent.skills',
  'queue.create',
  'recording.pause',
  'recording.resume',
  'recording.play',
  'suppression.add',
  'suppression.remove',
  'suppression.check',
  'suppression.registry_import',
  'contact_import.create',
  'contact_import.upload',
  'contact_import.finish',
  'contact_import.cancel',
  'contact.objection',
  'privacy.request.received',
  'privacy.request.verified',
  'privacy.request.extended',
  'privacy.request.assigned',
  'privacy.request.completed',
  'privacy.request.rejected',
  'privacy.export.created',
  'security.alert_raised',
  'security.alert_acknowledged',
  'security.alert_resolved',
  'security.rule_update',
  'security.webhook_create',
  'security.webhook_delete',
  'security.document_publish',
  'security.attestation',
  'security.incident',
  'security.containment',
  'security.network_unblock',
  'security.contacts',
  'security.on_call',
  'compliance.run',
  'compliance.access_review',
  'compliance.trust_report',
  'compliance.document_add',
  'compliance.document_upload',
  'compliance.document_download',
  'compliance.document_share',
  'compliance.document_withdraw',
  'compliance.questionnaire',
  'privacy.export.downloaded',
  'privacy.retention_policy',
  'privacy.retention_sweep',
  'privacy.legal_hold',
  'privacy.processor',
  'privacy.breach',
  'privacy.profile',
] as const;
export type AuditAction = (typeof auditActions)[number];

export type AuditEvent = {
  action: AuditAction;
  outcome: 'success' | 'denied' | 'failed';
  actor: { type: 'user' | 'api_token' | 'system' | 'operator' | 'anonymous'; id?: string };
  target?: { type: string; id: string };
  sourceIp?: string;
  requestId?: string;
  details?: Record<string, string | number | boolean | null>;
  occurredAt?: Date;
};

function toStored(tenantId: string, event: AuditEvent): StoredAuditEvent {
  // Milliseconds: what both JavaScript and the database round-trip exactly.
  const occurredAt = new Date(Math.floor((event.occurredAt ?? new Date()).getTime()));
  return {
    tenantId,
    occurredAt,
    actorType: event.actor.type,
    actorId: event.actor.id ?? null,
    action: event.action,
    targetType: event.target?.type ?? null,
    targetId: event.target?.id ?? null,
    outcome: event.outcome,
    sourceIp: event.sourceIp ?? null,
    requestId: event.requestId ?? null,
    details: event.details ?? {},
  };
}

/** The column values of an event as stored, its leaf hash included. */
export function auditEventRow(tenantId: string, event: AuditEvent) {
  const stored = toStored(tenantId, event);
  return {
    occurred_at: stored.occurredAt as Date,
    actor_type: stored.actorType,
    actor_id: stored.actorId,
    action: stored.action,
    target_type: stored.targetType,
    target_id: stored.targetId,
    outcome: stored.outcome as AuditEvent['outcome'],
    source_ip: stored.sourceIp,
    request_id: stored.requestId,
    details: JSON.stringify(stored.details),
    leaf_hash: leafHashOfText(canonicalEventText(stored)),
  };
}

/**
 * Appends an event in the caller's transaction: it commits, or rolls back, with the change it
 * records. The INSERT travels with the transaction's next statement or its COMMIT (deferWrite),
 * so an audited change costs no extra round trip; should it fail, the transaction fails with it.
 */
export async function recordAuditEvent(trx: TenantTransaction, event: AuditEvent): Promise<void> {
  const row = auditEventRow(trx.tenantId, event);
  // The one statement every audited change runs: compiled once, not per event.
  await deferWrite(
    trx,
    CompiledQuery.raw(INSERT_EVENT, [
      row.occurred_at,
      row.actor_type,
      row.actor_id,
      row.action,
      row.target_type,
      row.target_id,
      row.outcome,
      row.source_ip,
      row.request_id,
      row.details,
      row.leaf_hash,
    ]),
  );
  // Counted once committed (ringvakt_audit_events_total): sign-ins, denials and failures by action.
  onCommit(trx, () => auditEvents.inc({ action: event.action, outcome: event.outcome }));
}

const INSERT_EVENT =
  'insert into "audit_events" ("occurred_at", "actor_type", "actor_id", "action", "target_type", "target_id", "outcome", "source_ip", "request_id", "details", "leaf_hash") ' +
  'values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)';

/** A denial or failure is recorded in a transaction of its own: the attempt itself rolled back. */
export function recordAuditEventAlone(tenantDb: TenantDb, event: AuditEvent): Promise<void> {
  return tenantDb.transaction((trx) => recordAuditEvent(trx, event));
}
