import type { ColumnType, Generated } from './kysely.ts';
import type { TenantColumn, Timestamp, Uuid } from './schema.ts';

/** The privacy tables (migration 0012): retention, legal holds, requests, erasure ledger, exports, processors, breaches. */

type Json<T> = ColumnType<T, string | undefined, string>;

export type RetentionCategory = 'contacts_inactive' | 'interactions' | 'notes' | 'recordings' | 'audit_events' | 'import_rejects' | 'exports';
export type RetentionAction = 'delete' | 'anonymise';
export type PrivacyRequestKind = 'access' | 'portability' | 'rectification' | 'restriction' | 'objection' | 'erasure';
export type PrivacyRequestStatus = 'received' | 'verified' | 'completed' | 'rejected';
export type RequestChannel = 'email' | 'phone' | 'letter' | 'web' | 'in_person' | 'other';
export type VerificationMethod = 'known_channel' | 'document' | 'callback' | 'signed_letter' | 'account_login' | 'other';

export type PrivacyProfilesTable = {
  tenant_id: TenantColumn;
  controller_name: string;
  controller_address: string | null;
  dpo_name: string | null;
  dpo_email: string | null;
  supervisory_authority: string | null;
  updated_at: Timestamp;
};

export type RetentionPoliciesTable = {
  tenant_id: TenantColumn;
  category: RetentionCategory;
  retain_days: number;
  action: RetentionAction;
  updated_at: Timestamp;
  updated_by: string;
};

export type LegalHoldsTable = {
  tenant_id: TenantColumn;
  id: Uuid;
  scope: 'contact' | 'campaign';
  contact_id: string | null;
  campaign_id: string | null;
  reason: string;
  created_by: string;
  created_at: Timestamp;
  released_at: Date | null;
  released_by: string | null;
};

export type RetentionSweepsTable = {
  tenant_id: TenantColumn;
  id: Uuid;
  dry_run: boolean;
  state: ColumnType<'running' | 'done' | 'failed' | 'abandoned', 'running' | undefined, 'done' | 'failed' | 'abandoned'>;
  node: string;
  requested_by: string;
  started_at: Timestamp;
  heartbeat_at: Timestamp;
  finished_at: Date | null;
  report: Json<Record<string, unknown>>;
  error_code: string | null;
};

export type PrivacyRequestsTable = {
  tenant_id: TenantColumn;
  id: Uuid;
  reference: string;
  kind: PrivacyRequestKind;
  status: ColumnType<PrivacyRequestStatus, PrivacyRequestStatus | undefined>;
  channel: RequestChannel;
  requester_ciphertext: Buffer;
  duplicate_key: Buffer;
  subject_ids: ColumnType<string[], string[] | undefined>;
  officer_id: string | null;
  received_at: Date;
  due_at: Date;
  extension_months: ColumnType<number, number | undefined>;
  extension_reason: string | null;
  verified_at: Date | null;
  verified_by: string | null;
  verification_method: VerificationMethod | null;
  verification_note_ciphertext: Buffer | null;
  closed_at: Date | null;
  outcome: string | null;
  created_at: Timestamp;
};

export type PrivacyRequestEventsTable = {
  tenant_id: TenantColumn;
  id: Generated<string>;
  request_id: string;
  at: Timestamp;
  actor: string;
  step: string;
  details: Json<Record<string, unknown>>;
};

export type ErasureLedgerTable = {
  tenant_id: TenantColumn;
  seq: Generated<string>;
  subject_id: string;
  identifier_hashes: ColumnType<Buffer[], Buffer[] | undefined>;
  method: 'crypto_shredding';
  reason: 'request' | 'retention' | 'operator';
  request_id: string | null;
  erased_at: Timestamp;
};

export type PrivacyExportsTable = {
  tenant_id: TenantColumn;
  id: Uuid;
  request_id: string;
  token_sha256: Buffer;
  bundle_sealed: Buffer | null;
  bundle_bytes: number;
  files: number;
  created_by: string;
  created_at: Timestamp;
  expires_at: Date;
  downloaded_at: Date | null;
};

export type ProcessorCertification = { kind: 'soc2' | 'iso27001' | 'other'; reference: string; expiresOn: string | null };

export type ProcessorsTable = {
  tenant_id: TenantColumn;
  id: Uuid;
  name: string;
  service: string;
  data_categories: ColumnType<string[], string[] | undefined>;
  location: string;
  transfer_safeguard: string | null;
  /** SQL dates: node-postgres reads them as local midnight (see `dateText`). */
  dpa_signed_on: ColumnType<Date | null, string | null | undefined, string | null>;
  dpa_expires_on: ColumnType<Date | null, string | null | undefined, string | null>;
  certifications: Json<ProcessorCertification[]>;
  created_at: Timestamp;
  updated_at: Timestamp;
};

export type BreachesTable = {
  tenant_id: TenantColumn;
  id: Uuid;
  reference: string;
  title: string;
  description: string;
  occurred_at: Date | null;
  detected_at: Date;
  aware_at: Date;
  data_categories: ColumnType<string[], string[] | undefined>;
  subject_categories: ColumnType<string[], string[] | undefined>;
  approx_subjects: number | null;
  approx_records: number | null;
  data_encrypted: ColumnType<boolean, boolean | undefined>;
  consequences: string | null;
  measures: string | null;
  authority_decision: 'notify' | 'not_required' | null;
  authority_reason: string | null;
  authority_notified_at: Date | null;
  subjects_decision: 'notify' | 'not_required_low_risk' | 'not_required_encrypted' | 'not_required_mitigated' | 'public_communication' | null;
  subjects_reason: string | null;
  subjects_notified_at: Date | null;
  late_reason: string | null;
  status: ColumnType<'open' | 'closed', 'open' | 'closed' | undefined>;
  closed_at: Date | null;
  created_by: string;
  created_at: Timestamp;
};

export type BreachEventsTable = {
  tenant_id: TenantColumn;
  id: Generated<string>;
  breach_id: string;
  at: Timestamp;
  actor: string;
  entry: string;
};

export type ContactActivityTable = {
  tenant_id: TenantColumn;
  contact_id: string;
  last_at: Date;
};

export type PrivacyRemindersSentTable = {
  tenant_id: TenantColumn;
  kind: string;
  item_id: string;
  due_at: Date;
  sent_at: Timestamp;
};

export type PrivacyTables = {
  contact_activity: ContactActivityTable;
  privacy_reminders_sent: PrivacyRemindersSentTable;
  privacy_profiles: PrivacyProfilesTable;
  retention_policies: RetentionPoliciesTable;
  legal_holds: LegalHoldsTable;
  retention_sweeps: RetentionSweepsTable;
  privacy_requests: PrivacyRequestsTable;
  privacy_request_events: PrivacyRequestEventsTable;
  erasure_ledger: ErasureLedgerTable;
  privacy_exports: PrivacyExportsTable;
  processors: ProcessorsTable;
  breaches: BreachesTable;
  breach_events: BreachEventsTable;
};
