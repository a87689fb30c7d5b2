import type { ColumnType, Generated, RawBuilder } from './kysely.ts';
import type { BackupRunsTable } from './schema-operations.ts';
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

import type {
  ConsentEventsTable,
  ContactFieldsTable,
  ContactImportChunksTable,
  ContactImportEpochsTable,
  ContactImportRejectsTable,
  ContactImportsTable,
  ContactListMembersTable,
  ContactListsTable,
  ContactPhonesTable,
  ContactsTable,
  RevealCountersTable,
  SuppressionEpochsTable,
  SuppressionMatchesTable,
  SuppressionRegistriesTable,
  SuppressionsTable,
} from './schema-contacts.ts';
import type { PrivacyTables } from './schema-privacy.ts';
import type { SecurityTables } from './schema-security.ts';

export type * from './schema-campaign-engine.ts';
export type * from './schema-privacy.ts';
export type * from './schema-security.ts';
export type * from './schema-contacts.ts';

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
  contact_import_epochs: ContactImportEpochsTable;
  suppression_epochs: SuppressionEpochsTable;
  jurisdiction_profiles: JurisdictionProfilesTable;
  campaign_contacts: CampaignContactsTable;
  dial_attempts: DialAttemptsTable;
  agent_states: AgentStatesTable;
  agent_state_changes: AgentStateChangesTable;
  campaign_pacing: CampaignPacingTable;
  recordings: RecordingsTable;
  queues: QueuesTable;
  inbound_calls: InboundCallsTable;
} & PrivacyTables &
  SecurityTables;

export type Database = TenantTables & { schema_migrations: SchemaMigrationsTable; backup_runs: BackupRunsTable };
