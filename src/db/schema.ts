import type { ColumnType, Generated, RawBuilder } from 'kysely';
import type {
  AgentStateChangesTable,
  AgentStatesTable,
  CampaignContactsTable,
  CampaignPacingTable,
  CampaignsTable,
  DialAttemptsTable,
  InboundCallsTable,
  JurisdictionProfilesTable,
  QueuesTable,
  RecordingsTable,
} from './schema-campaign-engine.ts';

import type { PrivacyTables } from './schema-privacy.ts';

export type * from './schema-campaign-engine.ts';
export type * from './schema-privacy.ts';

/** Kysely's view of the tables. Tenant tables are reached only through a TenantTransaction. */

export type Timestamp = ColumnType<Date, Date | string | undefined, Date | string>;

export type TenantsTable = {
  id: Generated<string>;
  slug: string;
  name: string;
  status: ColumnType<'active' | 'suspended', 'active' | 'suspended' | undefined>;
  created_at: Timestamp;
};

export type BuiltInRole = 'owner' | 'admin' | 'supervisor' | 'agent' | 'auditor' | 'privacy_officer';
/** A built-in role, or 'custom' with users.custom_role_id naming a row of roles. */
export type UserRole = BuiltInRole | 'custom';
export type UserStatus = 'invited' | 'active' | 'disabled';

export type UsersTable = {
  tenant_id: ColumnType<string, string | undefined, never>;
  id: ColumnType<string, string, never>;
  /** Plaintext of rows written before migration 0007; the re-encryption job empties it. */
  email: ColumnType<string | null, never, null>;
  display_name: ColumnType<string | null, never, null>;
  email_ciphertext: Buffer | null;
  email_index: Buffer | null;
  display_name_ciphertext: Buffer | null;
  role: UserRole;
  status: ColumnType<UserStatus, UserStatus | undefined>;
  password_hash: string | null;
  custom_role_id: string | null;
  totp_secret_ciphertext: Buffer | null;
  totp_pending_ciphertext: Buffer | null;
  totp_last_step: ColumnType<string | null, number | null | undefined, number | null>;
  password_changed_at: Date | null;
  second_factor_failures: ColumnType<number, number | undefined, number>;
  second_factor_locked_until: Date | null;
  created_at: Timestamp;
  updated_at: Timestamp;
};

export type RolesTable = {
  tenant_id: ColumnType<string, string | undefined, never>;
  id: Generated<string>;
  name: string;
  description: ColumnType<string, string | undefined, string>;
  permissions: string[];
  requires_mfa: ColumnType<boolean, boolean | undefined, boolean>;
  created_at: Timestamp;
  updated_at: Timestamp;
};

export type RecoveryCodesTable = {
  tenant_id: ColumnType<string, string | undefined, never>;
  id: Generated<string>;
  user_id: string;
  code_hash: Buffer;
  used_at: Date | null;
  created_at: Timestamp;
};

export type TenantSecurityPoliciesTable = {
  tenant_id: ColumnType<string, string | undefined, never>;
  mfa_required_for_all: boolean;
  session_idle_minutes: number;
  session_absolute_hours: number;
  reveals_per_hour: ColumnType<number, number | undefined, number>;
  lookups_per_hour: ColumnType<number, number | undefined, number>;
  /** cidr[]; read it as text[] (`ip_allow_list::text[]`). */
  ip_allow_list: ColumnType<string, string[], string[]>;
  updated_at: Timestamp;
};

export type SessionStage = 'mfa' | 'mfa_enrollment' | 'active';
export type SessionRevokeReason = 'logout' | 'revoked' | 'rotated' | 'idle' | 'user_disabled' | 'role_changed' | 'password_changed' | 'mfa_changed';

export type SessionsTable = {
  tenant_id: ColumnType<string, string | undefined, never>;
  id: Generated<string>;
  user_id: string;
  token_hash: Buffer;
  stage: SessionStage;
  methods: string[];
  created_at: Timestamp;
  authenticated_at: Timestamp;
  last_seen_at: Timestamp;
  expires_at: Timestamp;
  revoked_at: Date | null;
  revoke_reason: SessionRevokeReason | null;
  source_ip: string | null;
  user_agent: string | null;
};

export type TrustedDevicesTable = {
  tenant_id: ColumnType<string, string | undefined, never>;
  id: Generated<string>;
  user_id: string;
  token_hash: Buffer;
  failures: ColumnType<number, number | undefined, number>;
  locked_until: Date | null;
  expires_at: Timestamp;
  created_at: Timestamp;
};

export type AccountThrottleTable = {
  tenant_id: ColumnType<string, string | undefined, never>;
  subject: Buffer;
  window_started_at: Timestamp;
  failures: number;
  consecutive: number;
  locked_until: Date | null;
  lock_notified_at: Date | null;
  updated_at: Timestamp;
};

export type EmailOutboxTable = {
  tenant_id: ColumnType<string, string | undefined, never>;
  id: ColumnType<string, string | undefined, never>;
  template: string;
  recipient_ciphertext: Buffer;
  message_ciphertext: Buffer;
  created_at: Timestamp;
  next_attempt_at: Timestamp;
  attempts: ColumnType<number, number | undefined, number>;
  sent_at: Date | null;
  failed_at: Date | null;
  last_error: string | null;
};

export type SetupTokensTable = {
  tenant_id: ColumnType<string, string | undefined, never>;
  id: Generated<string>;
  user_id: string;
  purpose: ColumnType<'setup' | 'invitation', 'setup' | 'invitation' | undefined, never>;
  token_hash: Buffer;
  expires_at: Timestamp;
  used_at: Date | null;
  created_at: Timestamp;
};

export type ApiTokensTable = {
  tenant_id: ColumnType<string, string | undefined, never>;
  id: Generated<string>;
  user_id: string;
  name: string;
  token_hash: Buffer;
  expires_at: Timestamp;
  revoked_at: Date | null;
  scopes: ColumnType<string[], string[] | undefined, never>;
  last_used_at: Date | null;
  created_at: Timestamp;
};

export type TenantKeysTable = {
  tenant_id: ColumnType<string, string | undefined, never>;
  purpose: 'data' | 'index';
  version: number;
  root_key_id: string;
  wrapped_key: Buffer;
  state: ColumnType<'active' | 'retired', 'active' | 'retired' | undefined>;
  encryptions_reserved: ColumnType<string, number | undefined, number | string>;
  created_at: Timestamp;
};

export type SubjectKeysTable = {
  tenant_id: ColumnType<string, string | undefined, never>;
  subject_id: string;
  tenant_key_version: number | null;
  wrapped_key: Buffer | null;
  created_at: Timestamp;
  destroyed_at: Date | null;
};

export type AuditEventsTable = {
  tenant_id: ColumnType<string, string | undefined, never>;
  id: ColumnType<string, never, never>;
  leaf_index: ColumnType<string | null, never, never>;
  occurred_at: ColumnType<Date, Date, never>;
  actor_type: string;
  actor_id: string | null;
  action: string;
  target_type: string | null;
  target_id: string | null;
  outcome: 'success' | 'denied' | 'failed';
  source_ip: string | null;
  request_id: string | null;
  details: ColumnType<Record<string, unknown>, string, never>;
  leaf_hash: Buffer;
};

export type AuditTreeNodesTable = {
  tenant_id: ColumnType<string, string | undefined, never>;
  level: number;
  index: ColumnType<string, number | string, never>;
  hash: Buffer;
};

export type AuditCheckpointsTable = {
  tenant_id: ColumnType<string, string | undefined, never>;
  tree_size: ColumnType<string, number | string, never>;
  root_hash: Buffer;
  signed_at: Timestamp;
  signing_key_id: string;
  signature: Buffer;
};

export type KeyRotationJobsTable = {
  tenant_id: ColumnType<string, string | undefined, never>;
  id: Generated<string>;
  target_version: number;
  state: ColumnType<'running' | 'done', 'running' | 'done' | undefined>;
  step: ColumnType<number, number | undefined>;
  cursor: ColumnType<string, string | undefined>;
  reencrypted: ColumnType<string, number | undefined, number | string | RawBuilder<unknown>>;
  skipped: ColumnType<string, number | undefined, number | string | RawBuilder<unknown>>;
  created_at: Timestamp;
  updated_at: Timestamp;
  finished_at: Date | null;
};

/** Written only by the owner's retention procedure (migration 0006); read by verify. */
export type AuditRetentionRecordsTable = {
  tenant_id: ColumnType<string, never, never>;
  id: ColumnType<string, never, never>;
  pruned_before_leaf: ColumnType<string, never, never>;
  root_hash: ColumnType<Buffer, never, never>;
  cutoff: ColumnType<Date, never, never>;
  reason: ColumnType<string, never, never>;
  executed_at: ColumnType<Date, never, never>;
  executed_by: ColumnType<string, never, never>;
  signing_key_id: ColumnType<string, never, never>;
  signature: ColumnType<Buffer, never, never>;
};

export type SchemaMigrationsTable = {
  version: number;
  name: string;
  checksum: string;
  applied_at: Date;
  applied_by: string;
};

export type WebauthnCredentialsTable = {
  tenant_id: ColumnType<string, string | undefined, never>;
  id: Generated<string>;
  user_id: string;
  credential_id: string;
  public_key: Buffer;
  counter: ColumnType<string, number | undefined, number>;
  transports: ColumnType<string[], string[] | undefined, string[]>;
  name: string;
  backed_up: ColumnType<boolean, boolean | undefined, boolean>;
  created_at: Timestamp;
  last_used_at: Date | null;
};

export type WebauthnChallengesTable = {
  tenant_id: ColumnType<string, string | undefined, never>;
  challenge: string;
  purpose: 'registration' | 'mfa' | 'login';
  session_id: string | null;
  expires_at: Timestamp;
  created_at: Timestamp;
};

export type RoleMapping = { group: string; role?: string; customRoleId?: string };

export type OidcProvidersTable = {
  tenant_id: ColumnType<string, string | undefined, never>;
  id: Generated<string>;
  issuer: string;
  client_id: string;
  client_secret_ciphertext: Buffer | null;
  scopes: ColumnType<string, string | undefined, string>;
  groups_claim: ColumnType<string, string | undefined, string>;
  role_mappings: ColumnType<RoleMapping[], string, string>;
  default_role: string | null;
  trust_provider_mfa: ColumnType<boolean, boolean | undefined, boolean>;
  enabled: ColumnType<boolean, boolean | undefined, boolean>;
  created_at: Timestamp;
  updated_at: Timestamp;
};

export type OidcLoginStatesTable = {
  tenant_id: ColumnType<string, string | undefined, never>;
  id: ColumnType<string, string | undefined, never>;
  state_hash: Buffer;
  nonce: string;
  code_verifier_ciphertext: Buffer;
  browser_hash: Buffer;
  expires_at: Timestamp;
  created_at: Timestamp;
};

export type SsoIdentitiesTable = {
  tenant_id: ColumnType<string, string | undefined, never>;
  issuer: string;
  subject: string;
  user_id: string;
  created_at: Timestamp;
  last_login_at: Date | null;
};

export type Uuid = ColumnType<string, string | undefined, never>;
export type TenantColumn = ColumnType<string, string | undefined, never>;
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
  number_ciphertext: Buffer;
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
export type TenantTables = {
  tenants: TenantsTable;
  users: UsersTable;
  setup_tokens: SetupTokensTable;
  api_tokens: ApiTokensTable;
  tenant_keys: TenantKeysTable;
  subject_keys: SubjectKeysTable;
  audit_events: AuditEventsTable;
  audit_tree_nodes: AuditTreeNodesTable;
  audit_checkpoints: AuditCheckpointsTable;
  audit_retention_records: AuditRetentionRecordsTable;
  key_rotation_jobs: KeyRotationJobsTable;
  roles: RolesTable;
  recovery_codes: RecoveryCodesTable;
  tenant_security_policies: TenantSecurityPoliciesTable;
  sessions: SessionsTable;
  trusted_devices: TrustedDevicesTable;
  account_throttle: AccountThrottleTable;
  email_outbox: EmailOutboxTable;
  webauthn_credentials: WebauthnCredentialsTable;
  webauthn_challenges: WebauthnChallengesTable;
  oidc_providers: OidcProvidersTable;
  oidc_login_states: OidcLoginStatesTable;
  sso_identities: SsoIdentitiesTable;
  contact_fields: ContactFieldsTable;
  contacts: ContactsTable;
  contact_phones: ContactPhonesTable;
  reveal_counters: RevealCountersTable;
  campaigns: CampaignsTable;
  contact_lists: ContactListsTable;
  contact_list_members: ContactListMembersTable;
  consent_events: ConsentEventsTable;
  suppression_registries: SuppressionRegistriesTable;
  suppressions: SuppressionsTable;
  suppression_matches: SuppressionMatchesTable;
  contact_imports: ContactImportsTable;
  contact_import_chunks: ContactImportChunksTable;
  contact_import_rejects: ContactImportRejectsTable;
  jurisdiction_profiles: JurisdictionProfilesTable;
  campaign_contacts: CampaignContactsTable;
  dial_attempts: DialAttemptsTable;
  agent_states: AgentStatesTable;
  agent_state_changes: AgentStateChangesTable;
  campaign_pacing: CampaignPacingTable;
  recordings: RecordingsTable;
  queues: QueuesTable;
  inbound_calls: InboundCallsTable;
} & PrivacyTables;

export type Database = TenantTables & { schema_migrations: SchemaMigrationsTable };
