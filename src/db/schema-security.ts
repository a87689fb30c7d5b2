import type { ColumnType } from './kysely.ts';
import type { TenantColumn, Timestamp, Uuid } from './schema.ts';

/** The security monitoring tables (migration 0016): rule settings, alerts, the detector's cursor, webhooks and deliveries. */

export type Severity = 'low' | 'medium' | 'high' | 'critical';
export type AlertState = 'open' | 'acknowledged' | 'resolved';

export type DetectionRuleSettingsTable = {
  tenant_id: TenantColumn;
  rule_id: string;
  enabled: boolean;
  threshold: number;
  window_seconds: number;
  severity: Severity;
  updated_by: string;
  updated_at: Timestamp;
};

export type SecurityAlertsTable = {
  tenant_id: TenantColumn;
  id: Uuid;
  rule_id: string;
  severity: Severity;
  subject: string;
  summary: string;
  state: ColumnType<AlertState, AlertState | undefined, AlertState>;
  hits: ColumnType<number, number | undefined, number>;
  first_seen: Date;
  last_seen: Date;
  raised_at: Timestamp;
  /** Audit event ids (bigint: read as text). */
  evidence: ColumnType<string[], string[] | undefined, string[]>;
  acknowledged_by: string | null;
  acknowledged_at: Date | null;
  resolved_at: Date | null;
  /** What the installation's syslog receiver was told of (migration 0017). */
  syslog_hits: ColumnType<number, number | undefined, number>;
  syslog_at: Date | null;
};

export type DetectionCursorsTable = {
  tenant_id: TenantColumn;
  last_leaf: ColumnType<string, number, number>;
  ledger_checked_at: Date | null;
  updated_at: Timestamp;
};

export type AlertWebhooksTable = {
  tenant_id: TenantColumn;
  id: Uuid;
  url: string;
  secret_ciphertext: Buffer;
  min_severity: ColumnType<Severity, Severity | undefined, Severity>;
  enabled: ColumnType<boolean, boolean | undefined, boolean>;
  created_by: string;
  created_at: Timestamp;
};

export type AlertDeliveriesTable = {
  tenant_id: TenantColumn;
  id: Uuid;
  alert_id: string;
  webhook_id: string;
  hits: number;
  state: ColumnType<'pending' | 'delivered' | 'failed', 'pending' | undefined, 'pending' | 'delivered' | 'failed'>;
  attempts: ColumnType<number, number | undefined, number>;
  next_at: Timestamp;
  last_status: number | null;
  last_error: string | null;
  created_at: Timestamp;
  delivered_at: Date | null;
};

/** Incident response and security awareness (migration 0017). */
export type SecurityContactsTable = { tenant_id: TenantColumn; user_id: string; created_by: string; created_at: Timestamp };

export type SecurityOnCallTable = { tenant_id: TenantColumn; id: Uuid; user_id: string; starts_at: Date; ends_at: Date; created_by: string; created_at: Timestamp };

export type IncidentState = 'open' | 'contained' | 'resolved';
export type IncidentsTable = {
  tenant_id: TenantColumn;
  id: Uuid;
  reference: string;
  title: string;
  description: ColumnType<string, string | undefined, string>;
  severity: Severity;
  state: ColumnType<IncidentState, IncidentState | undefined, IncidentState>;
  owner_id: string | null;
  personal_data: ColumnType<boolean, boolean | undefined, boolean>;
  breach_id: string | null;
  detected_at: Date;
  opened_at: Timestamp;
  opened_by: string;
  contained_at: Date | null;
  resolved_at: Date | null;
  resolution: string | null;
};

export type IncidentEventKind = 'opened' | 'note' | 'severity' | 'owner' | 'alert_linked' | 'events_linked' | 'containment' | 'contained' | 'resolved' | 'breach_opened';
export type IncidentEventsTable = {
  tenant_id: TenantColumn;
  id: ColumnType<string, never, never>;
  incident_id: string;
  at: Timestamp;
  actor: string;
  kind: IncidentEventKind;
  entry: string;
  details: ColumnType<Record<string, unknown>, string | undefined, never>;
};

export type IncidentAlertsTable = { tenant_id: TenantColumn; incident_id: string; alert_id: string; linked_at: Timestamp };
export type IncidentAuditEventsTable = { tenant_id: TenantColumn; incident_id: string; audit_event_id: ColumnType<string, string | number, never> };

export type BlockedNetworksTable = {
  tenant_id: TenantColumn;
  id: Uuid;
  network: string;
  reason: string;
  incident_id: string | null;
  created_by: string;
  created_at: Timestamp;
  expires_at: Date | null;
  lifted_at: Date | null;
  lifted_by: string | null;
};

export type SecurityDocumentKind = 'policy' | 'training';
export type SecurityDocumentsTable = {
  tenant_id: TenantColumn;
  id: Uuid;
  kind: SecurityDocumentKind;
  title: string;
  version: string;
  url: string | null;
  content: string | null;
  content_sha256: Buffer;
  published_by: string;
  published_at: Timestamp;
  superseded_at: Date | null;
};

export type SecurityAttestationsTable = { tenant_id: TenantColumn; id: Uuid; user_id: string; document_id: string; acknowledged_at: Timestamp };

/** Alerts of the installation itself (no tenant): error floods, key provider errors, sealing lag. */
export type InstallationAlertsTable = {
  id: Uuid;
  rule_id: string;
  severity: Severity;
  subject: string;
  summary: string;
  state: ColumnType<AlertState, AlertState | undefined, AlertState>;
  hits: number;
  first_seen: Date;
  last_seen: Date;
  raised_at: Timestamp;
  node: string;
  acknowledged_by: string | null;
  acknowledged_at: Date | null;
  resolved_at: Date | null;
  syslog_hits: ColumnType<number, number | undefined, number>;
  syslog_at: Date | null;
};

export type SecurityWorkingHoursTable = { tenant_id: TenantColumn; time_zone: string; work_from: number; work_to: number; work_days: number[]; updated_by: string; updated_at: Timestamp };

/** The compliance center's evidence (migration 0018). */
export type ComplianceRunsTable = { tenant_id: TenantColumn; id: Uuid; started_at: Date; finished_at: Date; trigger: 'schedule' | 'request'; catalogue_version: string; measured_by: string; digest: Buffer; passed: number; failed: number };
export type ComplianceResultsTable = { tenant_id: TenantColumn; run_id: string; check_id: string; status: 'pass' | 'fail' | 'not_applicable'; measured: string; population: number; failures: number; sample: string[] };

/** Manual evidence, certifications and audit reports (migration 0019). */
export type ComplianceDocumentsTable = {
  tenant_id: TenantColumn;
  id: Uuid;
  kind: 'control_evidence' | 'certification' | 'audit_report';
  control_id: string | null;
  title: string;
  issuer: string | null;
  url: string | null;
  file_name: string | null;
  media_type: 'application/pdf' | 'image/png' | 'image/jpeg' | 'text/plain' | null;
  file_ciphertext: Buffer | null;
  file_sha256: Buffer | null;
  file_bytes: number | null;
  evidence_date: ColumnType<Date, string, string>;
  expires_on: ColumnType<Date, string, string>;
  shared_in_report: ColumnType<boolean, boolean | undefined, boolean>;
  added_by: string;
  added_at: Timestamp;
  withdrawn_at: Date | null;
  withdrawn_by: string | null;
};

export type AuditWitnessDeliveriesTable = { tenant_id: TenantColumn; witness: 'file' | 'syslog' | 'webhook'; tree_size: ColumnType<string, number, number>; delivered_at: Date };

export type AccessReviewsTable = { tenant_id: TenantColumn; id: Uuid; title: string; state: ColumnType<'open' | 'completed', 'open' | undefined, 'open' | 'completed'>; due_at: Date; created_by: string; created_at: Timestamp; completed_at: Date | null; completed_by: string | null };
export type AccessReviewItemsTable = { tenant_id: TenantColumn; review_id: string; user_id: string; role: string; permissions: string[]; decision: ColumnType<'pending' | 'keep' | 'revoke', 'pending' | undefined, 'keep' | 'revoke'>; decided_by: string | null; decided_at: Date | null; note: string | null };

export type SecurityTables = {
  access_reviews: AccessReviewsTable;
  access_review_items: AccessReviewItemsTable;
  compliance_runs: ComplianceRunsTable;
  compliance_documents: ComplianceDocumentsTable;
  audit_witness_deliveries: AuditWitnessDeliveriesTable;
  compliance_results: ComplianceResultsTable;
  installation_alerts: InstallationAlertsTable;
  security_working_hours: SecurityWorkingHoursTable;
  security_contacts: SecurityContactsTable;
  security_on_call: SecurityOnCallTable;
  incidents: IncidentsTable;
  incident_events: IncidentEventsTable;
  incident_alerts: IncidentAlertsTable;
  incident_audit_events: IncidentAuditEventsTable;
  blocked_networks: BlockedNetworksTable;
  security_documents: SecurityDocumentsTable;
  security_attestations: SecurityAttestationsTable;
  detection_rule_settings: DetectionRuleSettingsTable;
  security_alerts: SecurityAlertsTable;
  detection_cursors: DetectionCursorsTable;
  alert_webhooks: AlertWebhooksTable;
  alert_deliveries: AlertDeliveriesTable;
};
