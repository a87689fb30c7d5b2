import type { ColumnType, Generated } from './kysely.ts';
import type { Uuid, TenantColumn, Timestamp } from './schema.ts';

/** The contacts tables (migration 0010): contacts, phones, lists, consent, suppression, imports. */

type Json<T> = ColumnType<T, string | undefined, string>;

export type ContactStatus = 'active' | 'do_not_contact' | 'restricted' | 'erased';
export type TimeZoneSource = 'override' | 'address' | 'number' | 'region' | 'unknown';
export type PhoneKind = 'mobile' | 'home' | 'work' | 'other';
export type ContactPurpose = 'sales' | 'survey' | 'service';
export type LawfulBasis = 'consent' | 'legitimate_interest' | 'contract';

export type ContactFieldsTable = {
  tenant_id: TenantColumn;
  key: string;
  label: string;
  type: 'text' | 'number' | 'date' | 'boolean';
  personal: boolean;
  created_at: Timestamp;
};

export type ContactsTable = {
  tenant_id: TenantColumn;
  id: ColumnType<string, string, never>;
  external_id: string | null;
  status: ColumnType<ContactStatus, ContactStatus | undefined>;
  name_ciphertext: Buffer | null;
  email_ciphertext: Buffer | null;
  email_index: Buffer | null;
  address_ciphertext: Buffer | null;
  birth_date_ciphertext: Buffer | null;
  notes_ciphertext: Buffer | null;
  personal_fields_ciphertext: Buffer | null;
  /** Every personal value sealed as one (migration 0028); the per-value columns above hold those of contacts written before. */
  record_ciphertext: Buffer | null;
  fields: Json<Record<string, unknown>>;
  time_zones: ColumnType<string[], string[] | undefined, string[]>;
  time_zone_source: ColumnType<TimeZoneSource, TimeZoneSource | undefined>;
  import_id: string | null;
  import_row: ColumnType<number | null, number | undefined, never>;
  created_at: Timestamp;
  updated_at: Timestamp;
  erased_at: Date | null;
};

export type ContactPhonesTable = {
  tenant_id: TenantColumn;
  contact_id: string;
  position: number;
  kind: PhoneKind;
  /** Null when the number is in the contact's record_ciphertext (migration 0028). */
  number_ciphertext: Buffer | null;
  number_index: Buffer;
};

export type RevealCountersTable = {
  tenant_id: TenantColumn;
  user_id: string;
  kind: ColumnType<'reveal' | 'lookup', 'reveal' | 'lookup' | undefined, never>;
  minute: Date;
  uses: number;
};

export type ContactListsTable = {
  tenant_id: TenantColumn;
  id: Uuid;
  name: string;
  default_region: string;
  campaign_id: string | null;
  created_at: Timestamp;
  updated_at: Timestamp;
};

export type ContactListMembersTable = {
  tenant_id: TenantColumn;
  list_id: string;
  contact_id: string;
  added_at: Timestamp;
};

export type ConsentEventsTable = {
  tenant_id: TenantColumn;
  id: Uuid;
  contact_id: string;
  purpose: ContactPurpose;
  action: 'grant' | 'withdraw' | 'object';
  basis: LawfulBasis | null;
  source: string;
  evidence_ref: string | null;
  occurred_at: Date;
  recorded_at: Timestamp;
  recorded_by: string;
};

export type RegistryFormat = 'no_reservasjon' | 'uk_tps' | 'us_dnc' | 'e164_list';

export type SuppressionRegistriesTable = {
  tenant_id: TenantColumn;
  id: Uuid;
  format: RegistryFormat;
  name: string;
  entries: ColumnType<string, number | undefined, number>;
  rejected: ColumnType<string, number | undefined, number>;
  file_sha256: Buffer | null;
  valid_until: Date | null;
  imported_at: Timestamp;
};

export type SuppressionScope = 'tenant' | 'campaign' | 'registry';
export type SuppressionReason = 'request' | 'objection' | 'withdrawal' | 'complaint' | 'registry' | 'abandoned' | 'other';

export type SuppressionsTable = {
  tenant_id: TenantColumn;
  id: Uuid;
  scope: SuppressionScope;
  campaign_id: string | null;
  registry_id: string | null;
  channel: ColumnType<'phone' | 'email', 'phone' | 'email' | undefined>;
  value_index: Buffer;
  value_ciphertext: Buffer;
  reason: SuppressionReason;
  source: string;
  contact_id: string | null;
  expires_at: Date | null;
  created_at: Timestamp;
  created_by: string;
  lifted_at: ColumnType<Date | null, never, Date>;
  lifted_by: ColumnType<string | null, never, string>;
};

export type SuppressionMatchesTable = {
  tenant_id: TenantColumn;
  id: Generated<string>;
  suppression_id: string;
  context: 'check' | 'import' | 'dial' | 'contact';
  contact_id: string | null;
  import_id: string | null;
  campaign_id: string | null;
  matched_at: Timestamp;
};

export type ImportState = 'awaiting_file' | 'queued' | 'running' | 'done' | 'failed' | 'cancelled';

export type ContactImportsTable = {
  tenant_id: TenantColumn;
  id: Uuid;
  list_id: string;
  state: ColumnType<ImportState, ImportState | undefined>;
  mapping: Json<Record<string, unknown>>;
  options: Json<Record<string, unknown>>;
  file_bytes: ColumnType<string, number | undefined, number>;
  file_rows: ColumnType<string, number | undefined, number>;
  file_sha256: Buffer | null;
  delimiter: ',' | ';' | null;
  rows_done: ColumnType<string, number | undefined, number>;
  rows_created: ColumnType<string, number | undefined, number>;
  rows_linked: ColumnType<string, number | undefined, number>;
  rows_rejected: ColumnType<string, number | undefined, number>;
  rows_suppressed: ColumnType<string, number | undefined, number>;
  error_code: string | null;
  error_detail: string | null;
  lease_owner: string | null;
  lease_until: Date | null;
  created_by: string;
  created_at: Timestamp;
  started_at: Date | null;
  finished_at: Date | null;
  updated_at: Timestamp;
};

/** The tenant's import epoch: moved by every import batch (migration 0026). */
export type ContactImportEpochsTable = {
  tenant_id: TenantColumn;
  epoch: ColumnType<string, number, number>;
  import_id: string;
  lease_owner: string;
  /** The epoch before the first of the last mover's consecutive moves (migration 0029). */
  run_start: ColumnType<string, number | undefined, number>;
};

/** Moved by every statement that adds do-not-call entries (migration 0029). */
export type SuppressionEpochsTable = {
  tenant_id: TenantColumn;
  epoch: ColumnType<string, number, number>;
};

export type ContactImportChunksTable = {
  tenant_id: TenantColumn;
  import_id: string;
  seq: number;
  ciphertext: Buffer;
};

export type ContactImportRejectsTable = {
  tenant_id: TenantColumn;
  import_id: string;
  row_number: ColumnType<string, number, never>;
  reason: string;
  column_name: string | null;
  detail: string | null;
};

/** Tables that belong to one tenant (row-level security on tenant_id). */
