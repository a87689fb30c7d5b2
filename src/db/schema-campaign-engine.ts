import type { ColumnType } from './kysely.ts';
import type { ContactPurpose, TenantColumn, Timestamp, Uuid } from './schema.ts';

/** The campaign engine's tables (migration 0011): campaigns, the hopper, attempts, agents, queues, recordings. */

export type CampaignsTable = {
  tenant_id: TenantColumn;
  id: Uuid;
  name: string;
  state: ColumnType<CampaignState, CampaignState | undefined>;
  purpose: ColumnType<ContactPurpose, ContactPurpose | undefined>;
  mode: ColumnType<DialMode, DialMode | undefined>;
  jurisdiction: string | null;
  caller_id: string | null;
  script: string | null;
  hours: ColumnType<unknown, string | undefined, string>;
  retry_rules: ColumnType<unknown, string | undefined, string>;
  max_attempts: ColumnType<number, number | undefined>;
  ring_timeout_ms: ColumnType<number, number | undefined>;
  wrap_up_ms: ColumnType<number, number | undefined>;
  amd: ColumnType<boolean, boolean | undefined>;
  record_calls: ColumnType<boolean, boolean | undefined>;
  dispositions: ColumnType<unknown, string | undefined, string>;
  started_at: Date | null;
  dialer_owner: string | null;
  dialer_lease_until: Date | null;
  created_at: Timestamp;
  updated_at: Timestamp;
};

export type CampaignPacingTable = {
  tenant_id: TenantColumn;
  campaign_id: string;
  decided_at: Date;
  dialer: string;
  pacer: string;
  lines: number;
  explanation: string;
};

export type RecordingsTable = {
  tenant_id: TenantColumn;
  attempt_id: string;
  campaign_id: string;
  contact_id: string;
  state: ColumnType<'recording' | 'paused' | 'saved' | 'failed', 'recording' | 'paused' | 'saved' | 'failed' | undefined>;
  pauses: ColumnType<number, number | undefined>;
  started_at: Date;
  saved_at: Date | null;
  duration_ms: number | null;
  audio_bytes: number | null;
  audio_ciphertext: Buffer | null;
};

export type CampaignState = 'draft' | 'active' | 'paused' | 'finished';
export type DialMode = 'preview' | 'progressive' | 'predictive';

export type JurisdictionProfilesTable = {
  code: string;
  name: string;
  abandon_cap: string;
  abandon_window: { days?: number; hours?: number; minutes?: number };
  abandon_measure: 'live_answers' | 'live_answers_with_amd_estimate';
  connect_limit_ms: number;
  min_ring_ms: number;
  calling_windows: unknown;
  abandon_lockout: { days?: number; hours?: number; minutes?: number } | null;
  information_message_required: boolean;
  required_registries: string[];
  registry_max_age: { days?: number; hours?: number; minutes?: number } | null;
  requires_lawful_basis: boolean;
  source: string;
};

export type HopperState = 'ready' | 'reserved' | 'done';

export type CampaignContactsTable = {
  tenant_id: TenantColumn;
  campaign_id: string;
  contact_id: string;
  state: ColumnType<HopperState, HopperState | undefined>;
  attempts: ColumnType<number, number | undefined>;
  dials: ColumnType<number, number | undefined>;
  next_at: Timestamp;
  last_outcome: string | null;
  callback_agent_id: string | null;
  /** Preview: the agent the contact is shown to, until preview_until; dial_requested_at once they chose to call. */
  preview_agent_id: ColumnType<string | null, string | null | undefined>;
  preview_until: ColumnType<Date | null, Date | null | undefined>;
  dial_requested_at: ColumnType<Date | null, Date | null | undefined>;
  updated_at: Timestamp;
};

export type AttemptState = 'reserved' | 'dialing' | 'answered' | 'connected' | 'ended' | 'skipped';
export type AttemptOutcome = 'live' | 'machine' | 'busy' | 'no_answer' | 'failed' | 'abandoned' | 'cancelled' | 'skipped';

export type DialAttemptsTable = {
  tenant_id: TenantColumn;
  id: string;
  campaign_id: string;
  /** Null once the interaction is anonymised by its retention policy. */
  contact_id: string | null;
  attempt: number;
  state: ColumnType<AttemptState, AttemptState | undefined>;
  dialer: string;
  reserved_at: Timestamp;
  checks: ColumnType<string[], string[] | undefined>;
  skip_reason: string | null;
  phone_position: number | null;
  dialed_at: Date | null;
  answered_at: Date | null;
  ring_ms: number | null;
  amd_result: 'human' | 'machine' | 'unknown' | null;
  agent_id: string | null;
  connect_ms: number | null;
  information_message: ColumnType<boolean, boolean | undefined>;
  outcome: AttemptOutcome | null;
  raw_cause: ColumnType<unknown, string | null | undefined, string | null>;
  ended_at: Date | null;
  talk_ms: number | null;
  disposition: string | null;
  notes_ciphertext: Buffer | null;
  disposed_at: Date | null;
  anonymised_at: Date | null;
  /** Preview: the agent who chose to dial. */
  requested_by: ColumnType<string | null, string | null | undefined>;
};

export type AgentState = 'offline' | 'available' | 'reserved' | 'on_call' | 'wrap_up' | 'paused';

export type AgentStatesTable = {
  tenant_id: TenantColumn;
  user_id: string;
  state: ColumnType<AgentState, AgentState | undefined>;
  reason: string | null;
  campaign_id: string | null;
  attempt_id: string | null;
  since: Timestamp;
  wrap_up_until: Date | null;
  skills: ColumnType<string[], string[] | undefined>;
  takes_inbound: ColumnType<boolean, boolean | undefined>;
  inbound_call_id: string | null;
};

export type QueuesTable = {
  tenant_id: TenantColumn;
  id: Uuid;
  name: string;
  number: string;
  skills: ColumnType<string[], string[] | undefined>;
  priority: ColumnType<number, number | undefined>;
  service_level_seconds: ColumnType<number, number | undefined>;
  short_abandon_seconds: ColumnType<number, number | undefined>;
  max_wait_seconds: ColumnType<number, number | undefined>;
  overflow_queue_id: string | null;
  hours: ColumnType<unknown, string | undefined, string>;
  time_zone: ColumnType<string, string | undefined>;
  created_at: Timestamp;
};

export type InboundCallsTable = {
  tenant_id: TenantColumn;
  id: string;
  queue_id: string;
  first_queue_id: string;
  caller_index: Buffer | null;
  state: ColumnType<'queued' | 'connected' | 'ended', 'queued' | 'connected' | 'ended' | undefined>;
  outcome: 'answered' | 'abandoned' | 'closed' | 'failed' | null;
  offered_at: Date;
  answered_at: Date | null;
  agent_id: string | null;
  wait_ms: number | null;
  talk_ms: number | null;
  ended_at: Date | null;
  anonymised_at: Date | null;
};

export type AgentStateChangesTable = {
  tenant_id: TenantColumn;
  id: ColumnType<string, never, never>;
  user_id: string;
  state: AgentState;
  reason: string | null;
  at: Timestamp;
};
